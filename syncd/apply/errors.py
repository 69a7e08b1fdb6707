"""Errors of staging and applying; each message names the path or blob concerned."""

from __future__ import annotations

import errno
from pathlib import Path

from syncd.errors import SyncdError


class StagingError(SyncdError):
    """The staging area cannot be used: wrong file system, unwritable, or corrupt."""


def stage_failed(digest: bytes, path: Path, exc: OSError) -> StagingError:
    """A write into staging failed; on a full disk, say what was kept and what to do."""
    why = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        why += (
            " (the file system is full: what arrived is kept and the live tree is "
            "unchanged; free space there and run the same command again)"
        )
    return StagingError(f"cannot stage {digest.hex()} in {path}: {why}")


class ApplyError(SyncdError):
    """An apply could not start or finish; the live tree is as the last completed step left it."""


class MissingPieces(ApplyError):
    """Some pieces of the target are neither staged nor in a live file: nothing was changed."""


class UnsafePath(ApplyError):
    """A symlink or file stands where a directory is expected: nothing is written through it."""


class TreeChanged(ApplyError):
    """The tree after the apply is not the target: something else changed it meanwhile."""


class DiskFull(ApplyError):
    """The file system ran out of space; the apply resumes once space is freed."""


class NoRoom(ApplyError):
    """The apply would not fit the free space or the staging quota: refused up front,
    naming the shortfall, before anything was staged or changed."""


class ResumeAbandoned(ApplyError):
    """An interrupted apply failed again the same way and was given up: the live tree is
    as its last completed step left it (consistent), and its staged data is kept."""
