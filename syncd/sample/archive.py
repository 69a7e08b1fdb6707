"""mirror_NNNNNN.tar archive sets, split like oc-mirror's permissive adder.

Sizes count member data only. A file that would push the current archive past the limit
closes it and starts the next one; a file larger than the limit goes alone into an
archive of its own, numbered next, while the current archive stays open for the files
after it (so numbers need not follow the order in which files were added).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from syncd.sample import tarformat

ARCHIVE_FORMAT = "mirror_{:06d}.tar"


class _Archive:
    def __init__(self, path: Path, owner: tarformat.Owner) -> None:
        self.path = path
        self.owner = owner
        self.file: BinaryIO = path.open("wb")
        self.data_bytes = 0

    def add(self, name: str, source: Path | bytes, mode: int, mtime: int) -> None:
        size = len(source) if isinstance(source, bytes) else source.stat().st_size
        self.file.write(tarformat.member_header(name, size, mode, mtime, self.owner))
        if isinstance(source, bytes):
            self.file.write(source)
        else:
            _copy_into(self.file, source, size)
        self.file.write(tarformat.padding(size))
        self.data_bytes += size

    def close(self) -> None:
        self.file.write(tarformat.END_OF_ARCHIVE)
        self.file.close()


class ArchiveSet:
    def __init__(
        self, destination: Path, max_size: int, owner: tarformat.Owner = tarformat.ROOT
    ) -> None:
        self.destination = destination
        self.owner = owner
        self.max_size = max_size
        self.number = 1
        self.paths: list[Path] = []
        self._current = self._open(self.number)

    def add_file(self, path: Path, name: str) -> None:
        info = path.stat()
        self._add(name, path, info.st_size, info.st_mode & 0o7777, int(info.st_mtime))

    def add_bytes(self, name: str, data: bytes, mode: int, mtime: int) -> None:
        self._add(name, data, len(data), mode, mtime)

    def _add(self, name: str, source: Path | bytes, size: int, mode: int, mtime: int) -> None:
        if size > self.max_size:
            self.number += 1
            alone = self._open(self.number)
            alone.add(name, source, mode, mtime)
            alone.close()
            return
        if self._current.data_bytes + size > self.max_size:
            self._current.close()
            self.number += 1
            self._current = self._open(self.number)
        self._current.add(name, source, mode, mtime)

    def _open(self, number: int) -> _Archive:
        archive = _Archive(self.destination / ARCHIVE_FORMAT.format(number), self.owner)
        self.paths.append(archive.path)
        return archive

    def close(self) -> list[Path]:
        self._current.close()
        return sorted(self.paths)

    def __enter__(self) -> ArchiveSet:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if not self._current.file.closed:
            self._current.close()


def _copy_into(out: BinaryIO, source: Path, size: int) -> None:
    out.flush()
    with source.open("rb") as src:
        offset = 0
        while offset < size:
            sent = os.sendfile(out.fileno(), src.fileno(), offset, size - offset)
            if sent == 0:
                raise OSError(f"{source}: shorter than its {size} bytes while archiving")
            offset += sent
    out.seek(0, os.SEEK_END)
