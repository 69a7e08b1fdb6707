"""The shape of a parity set: block size, stripes, and the room a parity volume needs.

A parity volume holds one block per stripe, so its parity files are as long as the
longest data volume's stream, rounded up to a block, and its index carries what every
data volume's index carries apart from the shared parts, plus block checksums. The data
volumes are planned with that room left, so a parity volume fits the same volume size.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from protocol.media import INDEX_PER_BLOB_MAX, INDEX_PER_FILE_MAX
from protocol.parity import (
    MAX_BLOCK,
    MAX_WIDTH,
    MEMBER_FIXED_MAX,
    MIN_BLOCK,
    PARITY_FIXED_MAX,
    PER_BLOCK_MAX,
    blocks_of,
)
from syncd.media.plan import MediaLimits, PlanError, VolumePlan, plan_volumes

STRIPES_WANTED = 1024  # damage is located to a block: aim for this many per volume
MAX_PARITY = 32
_PLAN_ROUNDS = 8


def block_size(longest: int) -> int:
    """A power of two between MIN_BLOCK and MAX_BLOCK giving about STRIPES_WANTED
    stripes over the longest stream: small enough to locate damage, large enough to
    keep the index and the per-block work small."""
    size = MIN_BLOCK
    while size < MAX_BLOCK and size * STRIPES_WANTED < longest:
        size *= 2
    return size


@dataclass(frozen=True, slots=True)
class Geometry:
    data: int  # K
    parity: int  # N
    block_size: int
    stripes: int

    @property
    def stream_bytes(self) -> int:
        """The length of each parity volume's stream."""
        return self.stripes * self.block_size

    @classmethod
    def of(cls, streams: Iterable[int], parity: int) -> Geometry:
        sizes = list(streams)
        block = block_size(max(sizes, default=0))
        stripes = max((blocks_of(s, block) for s in sizes), default=0)
        return cls(len(sizes), parity, block, stripes)


def check_parity(parity: int) -> None:
    if not 1 <= parity <= MAX_PARITY:
        raise PlanError(f"--parity {parity}: give 1 to {MAX_PARITY} parity volumes")


def parity_index_max(
    plans: list[VolumePlan], shared: int, geometry: Geometry, max_file_size: int
) -> int:
    """An upper bound of a parity volume's index: `shared` is the manifest and trees."""
    members = sum(
        MEMBER_FIXED_MAX
        + len(p.packs) * INDEX_PER_FILE_MAX
        + p.blob_count * INDEX_PER_BLOB_MAX
        + blocks_of(p.pack_bytes, geometry.block_size) * PER_BLOCK_MAX
        for p in plans
    )
    own = (
        geometry.stripes * PER_BLOCK_MAX
        + parity_files(geometry, max_file_size) * INDEX_PER_FILE_MAX
    )
    return PARITY_FIXED_MAX + shared + members + own


def parity_files(geometry: Geometry, max_file_size: int) -> int:
    return blocks_of(geometry.stream_bytes, max_file_size)


def plan_with_parity(
    blobs: list[tuple[bytes, int]], fixed: int, shared: int, limits: MediaLimits, parity: int
) -> tuple[list[VolumePlan], Geometry]:
    """Data volumes planned so that each of `parity` parity volumes fits the volume size
    too: a parity volume holds as many bytes as the longest data volume's packs (to a
    block) and an index listing every data volume, so the data volumes' packs are capped
    to what leaves room for that index, and planned again while the cap still moves."""
    check_parity(parity)
    size = limits.volume_size
    capped = limits
    for _ in range(_PLAN_ROUNDS):
        plans = plan_volumes(blobs, fixed, capped)
        geometry = Geometry.of((p.pack_bytes for p in plans), parity)
        _check_width(len(plans), parity)
        index = parity_index_max(plans, shared, geometry, limits.max_file_size)
        if index > limits.max_file_size:
            raise PlanError(
                f"a parity volume's index (up to {index} bytes) exceeds the file size limit: "
                "raise --max-file-size or --volume-size"
            )
        if size is None or geometry.stream_bytes + index <= size:
            return plans, geometry
        cap = size - index - geometry.block_size  # stream_bytes < longest pack + block
        if capped.pack_limit is not None:
            cap = min(cap, capped.pack_limit - geometry.block_size)
        if cap < max((length for _, length in blobs), default=0):
            break
        capped = replace(limits, pack_limit=cap)
    raise PlanError(
        f"a volume of {limits.volume_size} bytes cannot hold a parity volume of this export "
        "(its index lists every data volume's blobs, besides the longest data volume's "
        "bytes): raise --volume-size"
    )


def _check_width(data: int, parity: int) -> None:
    if data + parity > MAX_WIDTH:
        raise PlanError(
            f"{data} data volumes and {parity} parity volumes: a parity set holds at most "
            f"{MAX_WIDTH} volumes; raise --volume-size"
        )
