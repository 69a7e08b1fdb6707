"""A volume's stream: its files, in order, as one run of bytes read or written by block.

Reading gives each block of `block_size` bytes at its offset, zero-padded past the end
of the stream (a stripe spans the longest stream; shorter ones count as zeros there).
Writing cuts one stream into files of at most `max_file_size` bytes, each hashed as it is
written, and fsynced.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import blake3

from protocol.media import PackFile

_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class Extent:
    """Where one file lies in the stream."""

    path: Path
    start: int
    size: int


class StreamReader:
    """Blocks of the stream made of `files` (paths and sizes, in order)."""

    def __init__(self, files: list[tuple[Path, int]], block_size: int) -> None:
        self.block_size = block_size
        self.extents: list[Extent] = []
        at = 0
        for path, size in files:
            self.extents.append(Extent(path, at, size))
            at += size
        self.size = at
        self._fds: dict[Path, int] = {}

    def block(self, number: int) -> bytes:
        """Block `number`, zero-padded; raises OSError when a file cannot be read or is
        shorter than its listed size (the caller counts the block as lost)."""
        start = number * self.block_size
        end = min(start + self.block_size, self.size)
        out = bytearray(self.block_size)
        for extent in self.extents:
            lo, hi = max(start, extent.start), min(end, extent.start + extent.size)
            if lo >= hi:
                continue
            data = os.pread(self._fd(extent.path), hi - lo, lo - extent.start)
            if len(data) != hi - lo:
                raise OSError(f"{extent.path.name} is shorter than its listed size")
            out[lo - start : hi - start] = data
        return bytes(out)

    def _fd(self, path: Path) -> int:
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = os.open(path, _READ)
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


class StreamWriter:
    """Writes one stream into `folder` as files named by `name(n)`, none over `limit`."""

    def __init__(self, folder: Path, names: list[str], sizes: list[int]) -> None:
        self._folder = folder
        self._plan = list(zip(names, sizes, strict=True))
        self._next = 0
        self._fd = -1
        self._left = 0
        self._hasher = blake3.blake3()
        self.files: list[PackFile] = []

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._left == 0:
                self._open_next()
            part = view[: self._left]
            written = 0
            while written < len(part):
                written += os.write(self._fd, part[written:])
            self._hasher.update(part)
            self._left -= len(part)
            view = view[len(part) :]
            if self._left == 0:
                self._close_current()

    def _open_next(self) -> None:
        name, size = self._plan[self._next]
        self._fd = os.open(self._folder / name, _CREATE, 0o644)
        self._left = size
        self._hasher = blake3.blake3()

    def _close_current(self) -> None:
        name, size = self._plan[self._next]
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        self.files.append(PackFile(name, size, self._hasher.digest()))
        self._next += 1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def split_sizes(total: int, limit: int) -> list[int]:
    """Sizes of the files one stream of `total` bytes is cut into, none over `limit`."""
    sizes = [limit] * (total // limit)
    if total % limit:
        sizes.append(total % limit)
    return sizes
