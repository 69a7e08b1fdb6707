"""Start writing staged bytes to disk while more are being written, not all at the fsync.

Linux keeps written pages dirty in memory until a tenth of the available memory is
dirty (`vm.dirty_background_ratio`): on a machine with 24 GiB that is a couple of GB, so
a whole import or push can be written into the page cache before the disk is asked to
do anything, and then the fsync that makes it durable waits for all of it at once, the
CPU idle. Asking the kernel to start writeback of each file every few MiB
(sync_file_range(2) with SYNC_FILE_RANGE_WRITE: start it, do not wait for it) lets the
disk work while the next pieces are received, verified and written.

This changes when bytes reach the disk, never what is durable when: the fsyncs that
make staged bytes durable are exactly where they were, and nothing here is relied on for
durability (its errors are ignored: the fsync after it reports them, since a write
started this way does not consume the file's error state). `os` has no binding for
sync_file_range; where libc lacks it, this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable, Hashable

START_BYTES = 8 << 20  # written to one file before its writeback is started
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of dirty pages, do not wait


def _libc_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        function = ctypes.CDLL(name, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int
    typed: Callable[[int, int, int, int], int] = function
    return typed


_SYNC_FILE_RANGE = _libc_sync_file_range()


def start_writeback(fd: int) -> None:
    """Ask the kernel to start writing every dirty page of `fd` (offset 0, length 0: to
    the end of the file); pages already on their way are left alone."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)


class Writeback:
    """Bytes written to each file since its writeback was last started; a file's is
    started once they reach `every`. Files are named by the caller's key, not by
    descriptor, since a descriptor may be closed and its number reused."""

    def __init__(self, every: int = START_BYTES) -> None:
        self.every = every
        self._written: dict[Hashable, int] = {}

    def wrote(self, key: Hashable, fd: int, length: int) -> None:
        written = self._written.get(key, 0) + length
        if written < self.every:
            self._written[key] = written
            return
        self._written.pop(key, None)
        start_writeback(fd)

    def clear(self) -> None:
        """Forget the counts (the files were just made durable, or closed)."""
        self._written.clear()
