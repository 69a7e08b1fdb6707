"""Reaching entries of the live tree without ever following a symlink.

Every path is opened from the root's descriptor one component at a time with
O_DIRECTORY | O_NOFOLLOW, and entries are then named relative to their parent's
descriptor. A symlink (or a file) where a directory is expected fails the open, so
nothing is ever written, renamed or read through it, wherever it points.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from protocol.paths import join
from syncd.apply.errors import ApplyError, DiskFull, UnsafePath

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class LiveTree:
    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            self.fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise ApplyError(f"{root}: cannot open the root: {exc.strerror}") from exc

    def describe(self, path: str) -> str:
        return f"{self.root}/{path}" if path else str(self.root)

    def open_dir(self, path: str) -> int:
        """A new descriptor of the directory at `path` ('' is the root); the caller closes it."""
        fd = os.dup(self.fd)
        walked = ""
        for name in path.split("/") if path else ():
            walked = join(walked, name)
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                os.close(fd)
                raise self._dir_error(walked, exc) from exc
            os.close(fd)
            fd = child
        return fd

    @contextlib.contextmanager
    def parent(self, path: str) -> Iterator[tuple[int, str]]:
        """(descriptor of the parent directory, name) of the entry at `path`."""
        head, _, name = path.rpartition("/")
        fd = self.open_dir(head)
        try:
            yield fd, name
        finally:
            os.close(fd)

    def sync_dir(self, path: str) -> None:
        """fsync the directory at `path`; one that is gone has nothing left to sync."""
        try:
            fd = self.open_dir(path)
        except _Vanished:
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def open_entry(self, path: str, *, directory: bool) -> int:
        """Open the file or directory at `path` itself (never a symlink) for reading."""
        with self.parent(path) as (parent, name):
            try:
                fd = os.open(name, _DIR_FLAGS if directory else _FILE_FLAGS, dir_fd=parent)
            except OSError as exc:
                raise self.error(path, exc, "opening") from exc
        kind = stat.S_IFMT(os.fstat(fd).st_mode)
        if kind != (stat.S_IFDIR if directory else stat.S_IFREG):
            os.close(fd)
            raise ApplyError(f"{self.describe(path)}: not a {'directory' if directory else 'file'}")
        return fd

    def _dir_error(self, walked: str, exc: OSError) -> ApplyError:
        where = self.describe(walked)
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return UnsafePath(
                f"{where}: a symlink or file stands where a directory is expected; "
                "nothing was written through it"
            )
        if exc.errno == errno.ENOENT:
            return _Vanished(f"{where}: directory vanished (the tree changed during the apply)")
        return ApplyError(f"{where}: cannot open directory: {exc.strerror}")

    def error(self, path: str, exc: OSError, doing: str) -> ApplyError:
        return os_error(self.describe(path), exc, doing)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Vanished(ApplyError):
    """A directory on the way to an entry is not there."""


def os_error(where: str, exc: OSError, doing: str) -> ApplyError:
    """An OSError as an apply error naming `where`; a full disk gets its own type."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(
            f"{where}: no space left while {doing}; the live tree is as the last completed "
            "step left it, and the apply resumes once space is freed"
        )
    if exc.errno == errno.ELOOP:
        return UnsafePath(f"{where}: is a symlink; nothing was written through it")
    return ApplyError(f"{where}: {doing} failed: {exc.strerror}")
