"""Which blobs go into which volume and pack file: pure, from sizes alone.

Blobs keep the order they are wanted in (the target's tree order, so a large file's
pieces lie back to back and are written in place in order on import). A pack file
holds whole blobs and never exceeds `max_file_size`; a volume (its index included, at
the index's upper bound) never exceeds `volume_size`. Every volume carries the
target's tree records, so `fixed_bytes` (the index without blob and file entries) is
paid once per volume.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from protocol.media import INDEX_PER_BLOB_MAX, INDEX_PER_FILE_MAX, MAX_FILES, MAX_VOLUMES
from syncd.errors import UsageError
from syncd.units import format_bytes

FAT32_MAX_FILE = 2**32 - 1  # 4 GiB - 1: the largest file FAT32 holds


class PlanError(UsageError):
    """The limits asked for cannot be met (a piece or the index does not fit)."""


@dataclass(slots=True)
class PackPlan:
    blobs: list[tuple[bytes, int]] = field(default_factory=list)
    size: int = 0


@dataclass(slots=True)
class VolumePlan:
    packs: list[PackPlan] = field(default_factory=list)
    index_max: int = 0  # the index's upper bound, given what the volume holds

    @property
    def blob_count(self) -> int:
        return sum(len(p.blobs) for p in self.packs)

    @property
    def pack_bytes(self) -> int:
        return sum(p.size for p in self.packs)

    @property
    def total_max(self) -> int:
        return self.index_max + self.pack_bytes


@dataclass(frozen=True, slots=True)
class MediaLimits:
    volume_size: int | None  # None: one volume, however large
    max_file_size: int = FAT32_MAX_FILE
    pack_limit: int | None = None  # pack bytes per volume (parity volumes hold the longest)


def plan_volumes(
    blobs: Iterable[tuple[bytes, int]], fixed_bytes: int, limits: MediaLimits
) -> list[VolumePlan]:
    """Volumes for `blobs` (digest, length), in order; at least one (an export with no
    blob still carries the target)."""
    _check_fixed(fixed_bytes, limits)
    volumes = [VolumePlan(index_max=fixed_bytes)]
    for digest, length in blobs:
        _check_blob(length, fixed_bytes, limits)
        volume = volumes[-1]
        if not _fits_volume(volume, length, limits):
            if len(volumes) == MAX_VOLUMES:
                raise PlanError(f"more than {MAX_VOLUMES} volumes: choose a larger volume size")
            volume = VolumePlan(index_max=fixed_bytes)
            volumes.append(volume)
        _add(volume, digest, length, limits)
    return volumes


def _check_fixed(fixed_bytes: int, limits: MediaLimits) -> None:
    least = fixed_bytes + INDEX_PER_FILE_MAX + INDEX_PER_BLOB_MAX
    if least > limits.max_file_size:
        raise PlanError(
            f"the index of a volume (at least {format_bytes(least)}, with the target's tree "
            f"records) exceeds the file size limit of {format_bytes(limits.max_file_size)}: "
            "raise --max-file-size"
        )
    if limits.volume_size is not None and least > limits.volume_size:
        raise PlanError(
            f"a volume of {format_bytes(limits.volume_size)} cannot hold its index (at least "
            f"{format_bytes(least)}: every volume carries the target's tree records): "
            "raise --volume-size"
        )


def _check_blob(length: int, fixed_bytes: int, limits: MediaLimits) -> None:
    if length > limits.max_file_size:
        raise PlanError(
            f"a piece of {length} bytes exceeds the file size limit of "
            f"{limits.max_file_size} bytes: raise --max-file-size (pieces are at most 16 MiB)"
        )
    alone = fixed_bytes + INDEX_PER_FILE_MAX + INDEX_PER_BLOB_MAX + length
    if limits.volume_size is not None and alone > limits.volume_size:
        raise PlanError(
            f"a volume of {limits.volume_size} bytes cannot hold a piece of {length} bytes "
            f"with its index ({alone} bytes): raise --volume-size"
        )


def _fits_volume(volume: VolumePlan, length: int, limits: MediaLimits) -> bool:
    new_pack = _needs_new_pack(volume, length, limits)
    if new_pack and len(volume.packs) == MAX_FILES:
        return False
    index = volume.index_max + INDEX_PER_BLOB_MAX + (INDEX_PER_FILE_MAX if new_pack else 0)
    if index > limits.max_file_size:
        return False
    if limits.pack_limit is not None and volume.pack_bytes + length > limits.pack_limit:
        return False
    return limits.volume_size is None or index + volume.pack_bytes + length <= limits.volume_size


def _needs_new_pack(volume: VolumePlan, length: int, limits: MediaLimits) -> bool:
    return not volume.packs or volume.packs[-1].size + length > limits.max_file_size


def _add(volume: VolumePlan, digest: bytes, length: int, limits: MediaLimits) -> None:
    if _needs_new_pack(volume, length, limits):
        volume.packs.append(PackPlan())
        volume.index_max += INDEX_PER_FILE_MAX
    pack = volume.packs[-1]
    pack.blobs.append((digest, length))
    pack.size += length
    volume.index_max += INDEX_PER_BLOB_MAX
