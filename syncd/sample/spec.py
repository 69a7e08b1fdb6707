"""What a sample tree looks like: counts, sizes and the seed, with named presets."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from syncd.errors import UsageError

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
MIN_IMAGES = 10  # the fixed images (release, graph, catalog, operators, additional) need room
_MIN_LAYER = 4 * KIB


@dataclass(frozen=True, slots=True)
class SampleSpec:
    """Sizes are approximate uncompressed bytes; each layer varies by +-30% around them."""

    seed: int = 1
    images: int = 12  # repo:tags in month 1
    base_layers: int = 3  # shared by most amd64 images, like RHEL base layers
    base_layer_size: int = 48 * KIB
    app_layer_size: int = 12 * KIB
    graph_layer_size: int = 16 * KIB
    archive_size: int = 256 * KIB  # split size of mirror_NNNNNN.tar, in bytes
    change_fraction: float = 0.15  # share of release components given a new layer each month
    file_size: int = 256 * KIB  # largest file inside a layer
    # Who mirror-to-disk ran as: archive headers record it (a large id or a long name,
    # as SSSD/AD accounts have, makes every member a PAX one).
    owner_uid: int = 0
    owner_name: str = "root"

    def __post_init__(self) -> None:
        problems = [
            f"images must be at least {MIN_IMAGES}" if self.images < MIN_IMAGES else "",
            "base_layers must be at least 2" if self.base_layers < 2 else "",
            "archive_size must be positive" if self.archive_size < 1 else "",
            "file_size must be positive" if self.file_size < 1 else "",
            "change_fraction must be in [0, 1]" if not 0 <= self.change_fraction <= 1 else "",
        ]
        sizes = (self.base_layer_size, self.app_layer_size, self.graph_layer_size)
        if min(sizes) < 1:
            problems.append("layer sizes must be positive")
        if any(problems):
            raise UsageError("bad sample spec: " + "; ".join(p for p in problems if p))

    def with_seed(self, seed: int) -> SampleSpec:
        return replace(self, seed=seed)

    @classmethod
    def scaled(cls, total_bytes: int, *, seed: int = 1) -> SampleSpec:
        """The large preset's shape resized so month 1's cache holds about `total_bytes`."""
        if total_bytes < MIB:
            raise UsageError(f"sample size {total_bytes} is below the 1 MiB minimum")
        from syncd.sample.plan import estimated_cache_bytes  # noqa: PLC0415 - plan imports spec

        ratio = total_bytes / estimated_cache_bytes(LARGE)
        images = max(MIN_IMAGES + 2, min(LARGE.images, round(LARGE.images * math.sqrt(ratio))))
        spec = replace(LARGE, seed=seed, images=images, archive_size=max(MIB, total_bytes // 2))
        for _ in range(3):  # sizes are clamped at a minimum, so converge in a few steps
            spec = spec.resized(total_bytes / estimated_cache_bytes(spec))
        return spec

    def resized(self, factor: float) -> SampleSpec:
        """Every layer size times `factor` (at least 4 KiB)."""

        def size(value: int) -> int:
            return max(_MIN_LAYER, round(value * factor))

        return replace(
            self,
            base_layer_size=size(self.base_layer_size),
            app_layer_size=size(self.app_layer_size),
            graph_layer_size=size(self.graph_layer_size),
            file_size=min(LARGE.file_size, size(self.file_size)),
        )


TINY = SampleSpec()
SMALL = SampleSpec(
    images=40,
    base_layers=3,
    base_layer_size=1536 * KIB,
    app_layer_size=160 * KIB,
    graph_layer_size=512 * KIB,
    archive_size=8 * MIB,
    file_size=512 * KIB,
)
LARGE = SampleSpec(
    images=240,
    base_layers=4,
    base_layer_size=64 * MIB,
    app_layer_size=2816 * KIB,
    graph_layer_size=8 * MIB,
    archive_size=512 * MIB,
    change_fraction=0.25,
    file_size=1 * MIB,
)
PRESETS = {"tiny": TINY, "small": SMALL, "large": LARGE}


def preset(name: str) -> SampleSpec:
    try:
        return PRESETS[name]
    except KeyError:
        choices = ", ".join(PRESETS)
        raise UsageError(f"unknown sample preset {name!r} (choose {choices})") from None
