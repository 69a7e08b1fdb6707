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

A record also keeps the directory's tree id and tree record as the scan wrote them: a
directory whose listing, children and subdirectories are all unchanged has exactly that
record again, and the next scan copies both records as they are instead of building,
encoding and hashing them (most directories of a registry tree, on most rescans).

Records are keyed by a hash of the directory path and hold the path itself, so a hash
collision is a cache miss, never a wrong answer. The file carries a BLAKE3 of its body,
checked before any record is used: a stat cache that was torn or damaged on disk would
otherwise hand out recipes for bytes nobody hashed, so it is ignored (everything is read
and hashed again) unless it checks out.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import blake3
import msgpack

from protocol.codec import pack
from protocol.limits import CHUNK_SIZE
from protocol.tree import KIND_DIR, KIND_FILE, KIND_SYMLINK, Recipe
from syncd.errors import SnapshotFileError
from syncd.store.recordfile import RecordFileReader, RecordFileWriter

MAGIC = b"SYNCDSTC"
FORMAT = 6  # 6: with the body checksum

# A child row is stored as a msgpack array, [name, kind, ...] with the fields below in
# order, and read back into the record of its kind. The warning (or None) is said again
# on every scan that reuses the row, so a truncated archive is pointed out until it is
# fixed, not only by the scan that first read it.


class FileRow(NamedTuple):
    name: str
    kind: int  # KIND_FILE
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int
    recipe: Sequence[Sequence[Any]]  # [[digest, length], ...] as stored
    warning: str | None

    def matches(self, st: os.stat_result) -> bool:
        """The file's stat is what the last scan saw."""
        return (self.ino, self.size, self.mtime_ns, self.ctime_ns) == (
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
            st.st_ctime_ns,
        )

    def pieces(self) -> Recipe:
        return tuple((digest, length) for digest, length in self.recipe)


class LinkRow(NamedTuple):
    name: str
    kind: int  # KIND_SYMLINK
    ino: int
    mtime_ns: int
    ctime_ns: int
    target: str
    warning: str | None

    def matches(self, st: os.stat_result) -> bool:
        """The symlink's stat is what the last scan saw."""
        return (self.ino, self.mtime_ns, self.ctime_ns) == (
            st.st_ino,
            st.st_mtime_ns,
            st.st_ctime_ns,
        )


class DirRow(NamedTuple):
    """A subdirectory: its own record says the rest."""

    name: str
    kind: int  # KIND_DIR


Row = FileRow | LinkRow | DirRow
_ROW_TYPES: dict[object, type[Row]] = {KIND_FILE: FileRow, KIND_SYMLINK: LinkRow, KIND_DIR: DirRow}
_ROW_SIZES = frozenset(len(kind._fields) for kind in (FileRow, LinkRow, DirRow))


def dir_key(path: str) -> bytes:
    return blake3.blake3(path.encode()).digest(length=16)


def file_row(name: str, st: os.stat_result, recipe: Recipe, warning: str | None) -> FileRow:
    stat_part = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return FileRow(name, KIND_FILE, *stat_part, recipe, warning)


def link_row(name: str, st: os.stat_result, target: str, warning: str | None) -> LinkRow:
    return LinkRow(name, KIND_SYMLINK, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, target, warning)


def dir_row(name: str) -> DirRow:
    return DirRow(name, KIND_DIR)


def same_dir(st: os.stat_result, cached: CachedDir) -> bool:
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns) == cached.stat


@dataclass(slots=True)
class CachedDir:
    stat: tuple[int, int, int]  # the directory's (ino, mtime_ns, ctime_ns)
    trusted: bool
    tree_id: bytes
    tree_record: bytes
    raw: bytes  # the whole stat cache record, to copy when nothing changed
    row_list: list[Row]  # in name order
    _rows: dict[str, Row] | None = None

    @property
    def rows(self) -> dict[str, Row]:
        if self._rows is None:
            self._rows = {row.name: row for row in self.row_list}
        return self._rows

    def unchanged_file(self, name: str, st: os.stat_result) -> tuple[Recipe, str | None] | None:
        """(recipe, warning) if the file's stat is what the last scan saw."""
        row = self.rows.get(name)
        if not isinstance(row, FileRow) or not row.matches(st):
            return None
        return row.pieces(), row.warning

    def unchanged_link(self, name: str, st: os.stat_result) -> tuple[str, str | None] | None:
        """(target, warning) if the symlink's stat is what the last scan saw."""
        row = self.rows.get(name)
        if not isinstance(row, LinkRow) or not row.matches(st):
            return None
        return row.target, row.warning


class StatCacheWriter:
    def __init__(self, stream: BinaryIO) -> None:
        self._file = RecordFileWriter(stream, MAGIC)

    def add_dir(  # noqa: PLR0917 (one record's fields, written in one place)
        self,
        key: bytes,
        path: str,
        st: os.stat_result,
        trusted: bool,
        tree: tuple[bytes, bytes],
        rows: list[Row],
    ) -> None:
        """`tree` is the directory's (tree id, tree record) as written to the snapshot."""
        record = [path, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, trusted, *tree, rows]
        self._file.add(key, pack(record))

    def add_unchanged(self, key: bytes, cached: CachedDir) -> None:
        self._file.add(key, cached.raw)

    def finish(self) -> None:
        self._file.finish({"format": FORMAT, "chunk": CHUNK_SIZE}, checksum=True)


class StatCache:
    """Lookups into the previous scan's cache; an unusable cache just means more reading."""

    def __init__(self, reader: RecordFileReader | None) -> None:
        self._reader = reader

    @classmethod
    def open(cls, path: Path) -> StatCache:
        try:
            # Open only for a scan, which looks up every directory: its index stays mapped.
            reader = RecordFileReader(path, MAGIC, keep_index=True)
        except SnapshotFileError:
            return cls(None)
        meta = reader.meta
        if meta.get("format") != FORMAT or meta.get("chunk") != CHUNK_SIZE:
            reader.close()
            return cls(None)
        if not reader.checksum_ok():
            reader.close()
            return cls(None)  # torn or damaged: never trusted, everything is hashed again
        return cls(reader)

    def lookup(self, key: bytes, path: str) -> CachedDir | None:
        if self._reader is None:
            return None
        for record in self._reader.candidates(key):
            try:
                found = _decode_dir(path, record)
            except (ValueError, TypeError, IndexError, KeyError):  # msgpack's errors too
                return None  # damaged entry: read the directory again
            if found is not None:
                return found
        return None

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()


# The stat cache is syncd's own file and its checksum was checked when it was opened, so
# it is decoded by msgpack directly: the same types as protocol.codec.unpack, bounded by
# msgpack's own limits (the input's size), without the codec's per-call setup of the
# policy for hostile input, which took a tenth of a no-change rescan (a record per
# directory). A record that does not decode is a miss all the same.
_unpack = functools.partial(
    msgpack.unpackb, raw=False, use_list=True, strict_map_key=True, max_ext_len=0
)


def _decode_dir(path: str, record: bytes) -> CachedDir | None:
    # Our own file, whose body checksum StatCache.open checked: a record that does not
    # decode (a bug, not damage) is a miss.
    value = _unpack(record)
    if not isinstance(value, list) or len(value) != 8 or value[0] != path:
        return None
    _, ino, mtime, ctime, trusted, tree_id, tree_record, stored = value
    if not _ROW_SIZES.issuperset(map(len, stored)):
        return None  # a row of no known kind: read the directory again
    # tuple.__new__ makes each row a record without NamedTuple._make's Python-level
    # call: every row of every directory passes here on a rescan (~500k for 228k files).
    rows: list[Row] = [tuple.__new__(_ROW_TYPES[row[1]], row) for row in stored]
    names = [row.name for row in rows]
    if len(names) > 1 and names != sorted(set(names)):  # C-level: most have one row
        return None  # rows out of order or repeated: not a listing this scan can reuse
    stat = (int(ino), int(mtime), int(ctime))
    return CachedDir(stat, bool(trusted), bytes(tree_id), bytes(tree_record), bytes(record), rows)
