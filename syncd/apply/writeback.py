"""Start writing staged bytes to disk while more are being written, not all at the fsync.

Linux keeps written pages dirty in memory until a tenth of the available memory is
dirty (`vm.dirty_background_ratio`): on a machine with 24 GiB that is a couple of GB, so
a whole import or push can be written into the page cache before the disk is asked to
do anything, and then the fsync that makes it durable waits for all of it at once, the
CPU idle. Asking the kernel to start writeback of what was just written, every few MiB
per file (sync_file_range(2) with SYNC_FILE_RANGE_WRITE: start it, do not wait for it),
lets the disk work while the next pieces are received, verified and written.

Only whole pages are asked for: the page a write ended in is usually written again by
the next append, and on file systems that keep pages stable during writeback (btrfs,
integrity devices) that next write would wait for the disk.

This changes when bytes reach the disk, never what is durable when: the fsyncs that
make staged bytes durable are exactly where they were, and nothing here is relied on for
durability (its errors are ignored: the fsync after it reports them, since a write
started this way does not consume the file's error state). `os` has no binding for
sync_file_range; where libc lacks it, this does nothing.
"""

from __future__ import annotations

import ctypes
import mmap
from collections.abc import Callable, Hashable

from syncd.apply.durable import libc_function

START_BYTES = 8 << 20  # written to one file before its writeback is started
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of dirty pages, do not wait
_PAGE = mmap.PAGESIZE


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    function = libc_function("sync_file_range")
    if function is None:
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int
    typed: Callable[[int, int, int, int], int] = function
    return typed


_SYNC_FILE_RANGE = _sync_file_range()


def start_writeback(fd: int, start: int, end: int) -> None:
    """Ask the kernel to start writing the dirty whole pages of `fd` between `start` and
    `end` (the partial page at the end is left for later); pages already on their way
    are left alone."""
    first, last = start - start % _PAGE, end - end % _PAGE
    if _SYNC_FILE_RANGE is not None and last > first:
        _SYNC_FILE_RANGE(fd, first, last - first, _SYNC_FILE_RANGE_WRITE)


class Writeback:
    """What was written to each file since its writeback was last started (the span and
    the byte count); a file's is started once the count reaches `every`. Files are named
    by the caller's key, not by descriptor, since a descriptor may be closed and its
    number reused."""

    def __init__(self, every: int = START_BYTES) -> None:
        self.every = every
        self._written: dict[Hashable, tuple[int, int, int]] = {}  # key -> (start, end, bytes)

    def wrote(self, key: Hashable, fd: int, offset: int, length: int) -> None:
        start, end, count = self._written.get(key, (offset, offset, 0))
        start, end, count = min(start, offset), max(end, offset + length), count + length
        if count < self.every:
            self._written[key] = (start, end, count)
            return
        self._written.pop(key, None)
        start_writeback(fd, start, end)

    def clear(self) -> None:
        """Forget what was written (the files were just made durable, or closed)."""
        self._written.clear()
