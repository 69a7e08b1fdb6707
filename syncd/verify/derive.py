"""The images disk-to-mirror will copy, derived as oc-mirror v2's collectors derive them.

Modelled on oc-mirror's collectors in disk-to-mirror mode (openshift/oc-mirror, commit
855b64a3; read, not copied): internal/pkg/cli/executor.go `CollectAll` (release errors
stop at once, other collectors' errors are gathered, and any error fails the run; then
blocked images are dropped with `excludeImages`), internal/pkg/release (see
`derive_release`), internal/pkg/operator (see `derive_operator`),
internal/pkg/additional/local_stored_collector.go and internal/pkg/helm/
local_stored_collector.go. Each image is named by its source in the cache
(`<path>:<tag>` on oc-mirror's local registry), with the platform filter that limits
which instances of an index are copied (None: every instance, as oc-mirror copies
with MultiArch "all").

Every working-dir file a collector opens is opened by name through a `WorkingDir`; one
that is missing or unreadable is recorded with what disk-to-mirror would do instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

from syncd.verify.imageref import DOCKER, ImageRef, RefError, parse_ref
from syncd.verify.imageset import ImageSetConfig
from syncd.verify.store import StoreError
from syncd.verify.wdview import WorkingDir

FILE_LIMIT = 64 << 20  # graph data and declarative configs can be large; bounded all the same


@dataclass(frozen=True, slots=True)
class Derived:
    image: str  # "<path>:<tag>" in the cache
    kind: str  # release, release-component, graph, catalog, operator, additional, helm
    origin: str  # the reference the config or working-dir gave
    platforms: frozenset[str] | None = None  # "os/arch" instances to copy; None: all


class Resolver(Protocol):
    def resolve(self, repo: str, tag: str) -> str | None:
        """The digest the cache's tag names, when its manifest can be read."""


@dataclass(slots=True)
class Opened:
    path: str  # relative to working-dir
    present: bool
    why: str  # what disk-to-mirror reads it for


@dataclass(slots=True)
class Derivation:
    images: list[Derived] = field(default_factory=list)
    blocked: list[Derived] = field(default_factory=list)
    opened: list[Opened] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the collection fails: nothing is copied
    notes: list[str] = field(default_factory=list)  # where verify's model is approximate


class Collect:
    """What the collectors share: the working-dir, the cache, and the findings."""

    def __init__(self, config: ImageSetConfig, wd: WorkingDir, cache: Resolver) -> None:
        self.config = config
        self.wd = wd
        self.cache = cache
        self.out = Derivation()

    def open(self, rel: str, why: str) -> bytes | None:
        try:
            data = self.wd.read(rel, FILE_LIMIT)
        except StoreError as exc:
            self.out.errors.append(f"cannot read working-dir/{rel}: {exc}")
            data = None
        self.out.opened.append(Opened(rel, data is not None, why))
        return data

    def need(self, rel: str, why: str, missing: str) -> bytes | None:
        """`open`, with the collection failing as `missing` says when the file is absent."""
        data = self.open(rel, why)
        if data is None:
            self.out.errors.append(f"working-dir/{rel} is missing: {missing}")
        return data

    def parse(self, reference: str, where: str) -> ImageRef | None:
        """The reference split, or None with the collection failing on it."""
        try:
            return parse_ref(reference)
        except RefError as exc:
            self.out.errors.append(f"{where}: {exc}")
            return None

    def add(self, image: str, kind: str, origin: str, platforms: tuple[str, ...] = ()) -> None:
        chosen = frozenset(platforms) if platforms else None
        self.out.images.append(Derived(image, kind, origin, chosen))


def derive(config: ImageSetConfig, wd: WorkingDir, cache: Resolver) -> Derivation:
    """Every image disk-to-mirror copies for `config`, in oc-mirror's collector order."""
    # Imported here: each collector imports `Collect` from this module.
    from syncd.verify.derive_operator import collect_operators  # noqa: PLC0415
    from syncd.verify.derive_release import collect_releases  # noqa: PLC0415

    run = Collect(config, wd, cache)
    collect_releases(run)
    if run.out.errors:
        return run.out  # release errors are fatal at once (CollectAll)
    collect_operators(run)
    _additional(run)
    _helm(run)
    _exclude_blocked(run)
    _deduplicate(run)
    if not run.out.images and not run.out.errors:
        run.out.errors.append("no images to copy (disk-to-mirror: `No images to mirror`)")
    return run.out


def cache_name(path: str, tag: str) -> str:
    return f"{path.strip('/')}:{tag}"


def _additional(run: Collect) -> None:
    """additional/local_stored_collector.go, `buildDiskToMirrorPaths`."""
    for image in run.config.additional:
        ref = run.parse(image.name, "additionalImages")
        if ref is None:
            continue
        repo = image.target_repo or ref.path
        if ref.transport != DOCKER:
            name = cache_name(repo, image.target_tag or "latest")
        elif ref.by_digest_only and not image.target_tag:
            name = cache_name(repo, f"{ref.algorithm}-{ref.digest}")
        else:
            name = cache_name(repo, image.target_tag or ref.tag)
        run.add(name, "additional", image.name, image.platforms)


def _helm(run: Collect) -> None:
    """helm/local_stored_collector.go, `collectHelmImagesD2M`: each chart's tarball by
    name (`<name>-<version>.tgz`, or with a `v` before the version)."""
    for chart in run.config.charts:
        if not chart.version:
            run.out.notes.append(
                f"helm chart {chart.name} names no version: disk-to-mirror takes the versions "
                "from the saved repository index; verify does not read it"
            )
            continue
        version = chart.version.removeprefix("v")
        plain = f"helm/charts/{chart.name}-{version}.tgz"
        prefixed = f"helm/charts/{chart.name}-v{version}.tgz"
        why = f"the helm chart {chart.name} {chart.version}"
        if run.open(plain, why) is None and run.open(prefixed, why) is None:
            run.out.errors.append(
                f"chart file not found for {chart.name} version {chart.version}: "
                f"working-dir/{plain} and working-dir/{prefixed} are both missing"
            )
    if run.config.charts or run.config.local_charts:
        run.out.notes.append(
            "images inside helm charts are not derived: verify does not render chart "
            "templates; charts are checked by file name only"
        )


def _exclude_blocked(run: Collect) -> None:
    """cli/executor.go `excludeImages`: a blocked pattern searched (unanchored) in the
    origin and in the destination; the destination's registry is not known here, so its
    `<path>:<tag>` is searched."""
    if not run.config.blocked:
        return
    patterns = []
    for text in run.config.blocked:
        try:
            patterns.append(re.compile(text))
        except re.error:
            run.out.notes.append(f"blockedImages pattern {text!r} is not a valid expression")
    kept = []
    for image in run.out.images:
        origin = image.origin.split("://", 1)[-1]
        if image.origin and any(p.search(origin) or p.search(image.image) for p in patterns):
            run.out.blocked.append(image)
        else:
            kept.append(image)
    run.out.images = kept


def _deduplicate(run: Collect) -> None:
    """The same cache image asked twice is copied once, with the union of its filters."""
    merged: dict[str, Derived] = {}
    for image in run.out.images:
        known = merged.get(image.image)
        if known is None:
            merged[image.image] = image
        elif known.platforms is not None:
            both = None if image.platforms is None else known.platforms | image.platforms
            merged[image.image] = Derived(known.image, known.kind, known.origin, both)
    run.out.images = list(merged.values())
