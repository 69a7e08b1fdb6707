"""The far side's safe apply: staging received blobs, and turning the live tree into a
target snapshot in an order that keeps every listed registry tag resolvable."""

from syncd.apply.blobindex import BlobIndex, Location
from syncd.apply.engine import ApplyHooks, ApplyResult, apply_target, resume_pending
from syncd.apply.errors import (
    ApplyError,
    DiskFull,
    MissingPieces,
    StagingError,
    TreeChanged,
    UnsafePath,
)
from syncd.apply.staging import Recovery, Staging

__all__ = [
    "ApplyError",
    "ApplyHooks",
    "ApplyResult",
    "BlobIndex",
    "DiskFull",
    "Location",
    "MissingPieces",
    "Recovery",
    "Staging",
    "StagingError",
    "TreeChanged",
    "UnsafePath",
    "apply_target",
    "resume_pending",
]
