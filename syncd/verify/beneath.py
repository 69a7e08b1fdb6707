"""Reads below a root directory's descriptor that never follow a symlink.

verify runs on the far side of an air gap (`serve` checks parity after an apply), where
the tree came from the connected side: a `current/link` or a blob's `data` may be a
symlink to `/etc/shadow`. Every path verify opens under a root therefore resolves
beneath the root's directory descriptor with no symlink anywhere on the way: Linux's
openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS does that in one call; where the
kernel lacks it (before 5.6), the path is walked one component at a time with
O_NOFOLLOW. A symlink met on the way is ELOOP, reported as such, never followed.

The root itself is the operator's choice and is followed once, when it is opened.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import stat
from pathlib import Path
from types import TracebackType

_O = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
_RESOLVE_NO_MAGICLINKS, _RESOLVE_NO_SYMLINKS, _RESOLVE_BENEATH = 0x02, 0x04, 0x08
_RESOLVE = _RESOLVE_NO_MAGICLINKS | _RESOLVE_NO_SYMLINKS | _RESOLVE_BENEATH
_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437, "ppc64le": 437, "s390x": 437}.get(platform.machine())
SYMLINK = "is a symbolic link: not followed"


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


_libc = ctypes.CDLL(None, use_errno=True)
_openat2_works = _SYS_OPENAT2 is not None


def _openat2(dir_fd: int, rel: str, flags: int) -> int:
    how = _OpenHow(flags, 0, _RESOLVE)
    fd = int(
        _libc.syscall(_SYS_OPENAT2, dir_fd, rel.encode(), ctypes.byref(how), ctypes.sizeof(how))
    )
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), rel)
    return fd


def _walk_open(dir_fd: int, rel: str, flags: int) -> int:
    """openat2's guarantee by hand: each component opened with O_NOFOLLOW."""
    parts = rel.split("/")
    if rel.startswith("/") or ".." in parts:
        raise OSError(errno.EXDEV, "leads outside the root", rel)
    current = dir_fd
    try:
        for part in [p for p in parts[:-1] if p not in ("", ".")]:
            following = os.open(part, _O | os.O_DIRECTORY, dir_fd=current)
            if current != dir_fd:
                os.close(current)
            current = following
        return os.open(parts[-1] or ".", flags, dir_fd=current)
    finally:
        if current != dir_fd:
            os.close(current)


def open_beneath(dir_fd: int, rel: str, flags: int = _O) -> int:
    """A descriptor for `rel` below `dir_fd`; ELOOP if a symlink is on the way."""
    global _openat2_works  # noqa: PLW0603 - learnt once per process
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC
    if _openat2_works:
        try:
            return _openat2(dir_fd, rel, flags)
        except OSError as exc:
            if exc.errno not in (errno.ENOSYS, errno.EPERM):  # EPERM: a seccomp filter
                raise
            _openat2_works = False
    return _walk_open(dir_fd, rel, flags)


def why(exc: OSError) -> str:
    """Words for a failed open beneath a root: a symlink is named as one."""
    if exc.errno == errno.ELOOP:
        return SYMLINK
    if exc.errno == errno.EXDEV:
        return "leads outside the root: not followed"
    return exc.strerror or str(exc)


class Beneath:
    """A directory opened once; every read below it is a `open_beneath`."""

    def __init__(self, fd: int, shown: str) -> None:
        self.fd = fd
        self.shown = shown.rstrip("/") + "/"  # for messages only

    @classmethod
    def open(cls, path: Path) -> Beneath:
        return cls(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), str(path))

    def sub(self, rel: str) -> Beneath:
        """The directory `rel` below, itself opened beneath (raises OSError)."""
        fd = open_beneath(self.fd, rel, os.O_RDONLY | os.O_DIRECTORY)
        return Beneath(fd, self.shown + rel)

    def open_file(self, rel: str) -> int:
        """O_NONBLOCK: opening a FIFO planted in the tree does not wait for a writer."""
        return open_beneath(self.fd, rel, _O | os.O_NONBLOCK)

    def read(self, rel: str, limit: int) -> bytes:
        """At most `limit` bytes. O_NONBLOCK: a FIFO planted in the tree reads as empty
        rather than hanging verify; a directory fails the read (EISDIR)."""
        fd = self.open_file(rel)
        try:
            return os.read(fd, limit)
        finally:
            os.close(fd)

    def stat(self, rel: str) -> os.stat_result:
        fd = open_beneath(self.fd, rel, os.O_PATH)
        try:
            info = os.fstat(fd)
        finally:
            os.close(fd)
        if stat.S_ISLNK(info.st_mode):  # O_PATH | O_NOFOLLOW opens the link itself
            raise OSError(errno.ELOOP, SYMLINK, rel)
        return info

    def entries(self, rel: str) -> list[tuple[str, bool]]:
        """Names in the directory `rel` ("" for this one), each with whether it is a
        directory (not following symlinks)."""
        fd = self.fd if rel == "" else open_beneath(self.fd, rel, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with os.scandir(fd) as scan:
                return [(e.name, e.is_dir(follow_symlinks=False)) for e in scan]
        finally:
            if fd != self.fd:
                os.close(fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Beneath:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
