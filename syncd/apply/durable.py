"""Small state files replaced atomically, directory fsyncs, and whole-file-system syncs."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write all of `data` at `offset` (pwrite may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def copy_range(source: int, target: int, length: int, offset: int, at: int) -> int:
    """Copy `length` bytes of `source` from `offset` to `target` at `at` in the kernel
    (copy_file_range: no trip through user memory); how many were copied, fewer only
    when `source` ends first. OSError as copy_file_range raises it."""
    copied = 0
    while copied < length:
        done = os.copy_file_range(source, target, length - copied, offset + copied, at + copied)
        if done == 0:
            break
        copied += done
    return copied


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: temp file, fsync, rename, directory fsync."""
    write_chunks_atomically(path, (data,))


def write_chunks_atomically(path: Path, chunks: Iterable[bytes]) -> None:
    """write_atomically of the bytes `chunks` yields, never all held at once. A write
    that fails (a full disk) leaves `path` as it was and no temp file behind."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        try:
            for data in chunks:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    fsync_dir(path.parent)


def libc_function(name: str) -> Any:
    """libc's function `name` (the interpreter is linked against libc, so the process
    itself provides it: no search, which would run ldconfig at every start), or None."""
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None


_SYNCFS: Callable[[int], int] | None = libc_function("syncfs")


def syncfs(fd: int) -> None:
    """Make everything on the file system holding `fd` durable: every file's data and
    metadata, every directory's entries (syncfs(2); `os` has no binding for it). One call
    replaces an fsync of each of many small files, each of which would cost a journal
    commit. Where libc lacks it, sync(2) does the same for every file system.

    Callers use it as `durable.syncfs`, so that the power-loss model
    (reliability/fsmodel.py) can watch it as it watches os.fsync.
    """
    if _SYNCFS is None:
        os.sync()
        return
    if _SYNCFS(fd) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
