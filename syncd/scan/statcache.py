"""The stat cache: what the last scan saw in each directory, to avoid reading it again.

Per directory it keeps the directory's own (inode, mtime, ctime), whether that listing
can be trusted, and per child its kind and stat; for files also the recipe, for
symlinks the target.

- A file whose (inode, size, mtime, ctime) is unchanged keeps its recipe, the way borg's
  files cache and git's index work. ctime cannot be set by users, so restoring an old
  mtime after a write does not fool it.
- A directory whose (inode, mtime, ctime) is unchanged has the same names: creating,
  removing or renaming an entry moves both. A rescan then stats the known names and
  skips opening and listing the directory, which is most of the cost of a walk.
- Either is trusted only if its ctime was older than hashing.SETTLE_NS when it was read,
  so that any later change is sure to move the ctime.

Records are keyed by a 64-bit hash of the directory path and hold the path itself, so a
hash collision is a cache miss, never a wrong answer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import blake3

from protocol.codec import pack, unpack
from protocol.errors import ProtocolError
from protocol.limits import CHUNK_SIZE
from protocol.tree import KIND_DIR, KIND_FILE, KIND_SYMLINK, Recipe
from syncd.errors import SnapshotFileError
from syncd.store.recordfile import RecordFileReader, RecordFileWriter

MAGIC = b"SYNCDSTC"
FORMAT = 4

# A child row as stored: [name, KIND_FILE, ino, size, mtime_ns, ctime_ns, recipe, warning],
# [name, KIND_DIR] or [name, KIND_SYMLINK, ino, mtime_ns, ctime_ns, target, warning].
# The warning (or None) is said again on every scan that reuses the row, so a truncated
# archive is pointed out until it is fixed, not only by the scan that first read it.
Row = list[Any]


def dir_key(path: str) -> bytes:
    return blake3.blake3(path.encode()).digest(length=16)


def file_row(name: str, st: os.stat_result, recipe: Recipe, warning: str | None) -> Row:
    stat_part = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    return [name, KIND_FILE, *stat_part, recipe, warning]


def link_row(name: str, st: os.stat_result, target: str, warning: str | None) -> Row:
    return [name, KIND_SYMLINK, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, target, warning]


def dir_row(name: str) -> Row:
    return [name, KIND_DIR]


def same_dir(st: os.stat_result, cached: CachedDir) -> bool:
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns) == cached.stat


@dataclass(frozen=True, slots=True)
class CachedDir:
    stat: tuple[int, int, int]  # the directory's (ino, mtime_ns, ctime_ns)
    trusted: bool
    rows: dict[str, Row]

    def unchanged_file(self, name: str, st: os.stat_result) -> tuple[Recipe, str | None] | None:
        """(recipe, warning) if the file's stat is what the last scan saw."""
        row = self.rows.get(name)
        if row is None or row[1] != KIND_FILE:
            return None
        now = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if (row[2], row[3], row[4], row[5]) != now:
            return None
        return row[6], row[7]

    def unchanged_link(self, name: str, st: os.stat_result) -> tuple[str, str | None] | None:
        """(target, warning) if the symlink's stat is what the last scan saw."""
        row = self.rows.get(name)
        if row is None or row[1] != KIND_SYMLINK:
            return None
        if (row[2], row[3], row[4]) != (st.st_ino, st.st_mtime_ns, st.st_ctime_ns):
            return None
        return row[5], row[6]


class StatCacheWriter:
    def __init__(self, stream: BinaryIO) -> None:
        self._file = RecordFileWriter(stream, MAGIC)

    def add_dir(
        self, key: bytes, path: str, st: os.stat_result, trusted: bool, rows: list[Row]
    ) -> None:
        record = [path, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, trusted, rows]
        self._file.add(key, pack(record))

    def finish(self) -> None:
        self._file.finish({"format": FORMAT, "chunk": CHUNK_SIZE})


class StatCache:
    """Lookups into the previous scan's cache; an unusable cache just means more reading."""

    def __init__(self, reader: RecordFileReader | None) -> None:
        self._reader = reader

    @classmethod
    def open(cls, path: Path) -> StatCache:
        try:
            reader = RecordFileReader(path, MAGIC)
        except SnapshotFileError:
            return cls(None)
        if reader.meta.get("format") != FORMAT or reader.meta.get("chunk") != CHUNK_SIZE:
            reader.close()
            return cls(None)
        return cls(reader)

    def lookup(self, key: bytes, path: str) -> CachedDir | None:
        if self._reader is None:
            return None
        for record in self._reader.candidates(key):
            try:
                found = _decode_dir(path, record)
            except (ProtocolError, ValueError, TypeError, IndexError, KeyError):
                return None  # damaged entry: read the directory again
            if found is not None:
                return found
        return None

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()


def _decode_dir(path: str, record: bytes) -> CachedDir | None:
    value = unpack(record)
    if not isinstance(value, list) or len(value) != 6 or value[0] != path:
        return None
    _, ino, mtime, ctime, trusted, children = value
    rows: dict[str, Row] = {}
    for row in children:
        if row[1] == KIND_FILE:
            # Our own file, so no full validation here: a snapshot that used a damaged
            # recipe fails decode_tree's checks wherever it is read.
            row[6] = tuple(map(tuple, row[6]))
        rows[row[0]] = row
    return CachedDir((int(ino), int(mtime), int(ctime)), bool(trusted), rows)
