"""A write-once file of byte records found by a 128-bit digest.

Layout (integers little-endian):

    magic (8 bytes, chosen by the caller)
    records, each the raw bytes given to `add`
    keys:    count x u64, digest bytes 0-8 read big-endian, ascending
    checks:  count x u64, digest bytes 8-16, in the same order
    offsets: count x u64, in the same order
    lengths: count x u32, in the same order
    meta: one msgpack map chosen by the caller
    footer: index_offset u64, count u64, meta_offset u64, b"SYNCDEND"

A writer asked for a checksum puts the BLAKE3 of everything before the meta (magic,
records, index) into the meta as "blake3"; `RecordFileReader.checksum_ok` recomputes it.
Snapshot records are checked by their own ids; a file trusted without such a check (the
stat cache) must not be read when it was torn or damaged on disk.

Records are named by a digest of at least 16 bytes (a tree id, a path hash). Two
records with the same 128 bits and length are the same record written twice (equal
subtrees) and are stored once; anything less is kept apart, and `candidates` returns
every record under a digest's 128 bits for the caller to recognize its own (a snapshot
by hashing the record, the stat cache by the path inside it). Keeping 20 bytes per
record in memory, written as they come and sorted only at the end, lets a scan of a
million directories stay small.
Readers map the file and bisect the key column; mapped pages are dropped now and then so
that a lookup per directory does not pin the whole file in RSS.
"""

from __future__ import annotations

import bisect
import mmap
import os
import struct
import sys
from array import array
from collections.abc import Iterator, Sequence
from itertools import accumulate
from pathlib import Path
from typing import Any, BinaryIO, Literal

import blake3

from protocol.codec import pack, unpack
from protocol.errors import ProtocolError
from syncd.errors import SnapshotFileError

FOOTER = struct.Struct("<QQQ8s")
END_MAGIC = b"SYNCDEND"
ENTRY_BYTES = 8 + 8 + 8 + 4
# A lookup maps the pages it touches into this process (the kernel maps up to 16 pages
# around each fault, 64 KiB), and they count in its RSS until released: every 8,192
# lookups let a million-directory scan's readers hold over 300 MiB of file pages at once
# (the far side of the scale campaign's repair push: 646 MiB); every 1,024 still let them
# hold some 250 MiB (488 MiB). Every 256 bounds a reader to 16 MiB; a release is one
# madvise over the mapping. A reader made with `keep_index` releases only its records:
# a lookup's bisection lands on random index pages, and faulting three of them back in
# after every release was a fifth of a no-change rescan at 1M files (29 s -> 23 s; the
# index stays mapped, 20 bytes a record: +7 MiB RSS there).
_RELEASE_EVERY = 256
_FLUSH_AT = 1 << 20
_CHECK_SLICE = 8 << 20
CHECKSUM_FIELD = "blake3"


_KEY = struct.Struct(">QQ")


def key_of(digest: bytes) -> tuple[int, int]:
    """The two 64-bit halves of a digest's first 16 bytes: the sort key and the check."""
    if len(digest) < 16:
        raise ValueError("record digests are at least 16 bytes")
    key: tuple[int, int] = _KEY.unpack_from(digest)  # one call: this runs per record
    return key


def _column(values: array[int]) -> bytes:
    if sys.byteorder == "big":
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _load_column(typecode: str, data: bytes) -> array[int]:
    values: array[int] = array(typecode)
    values.frombytes(data)
    if sys.byteorder == "big":
        values.byteswap()
    return values


def _mapped_column(
    data: mmap.mmap, typecode: Literal["Q", "I"], at: int, count: int
) -> Sequence[int]:
    """A little-endian column of the mapped file: viewed in place where the machine is
    little-endian (no copy, no RSS of its own), else loaded and swapped."""
    size = array(typecode).itemsize * count
    if sys.byteorder == "little":
        return memoryview(data)[at : at + size].cast(typecode)
    return _load_column(typecode, data[at : at + size])


class RecordFileWriter:
    def __init__(self, stream: BinaryIO, magic: bytes) -> None:
        if len(magic) != 8:
            raise ValueError("magic must be 8 bytes")
        self._out = stream
        # Per record only its digest's first 16 bytes and its length, appended as they
        # come (one call each: `add` runs twice per directory of a scan); keys, checks
        # and offsets are derived in `finish`.
        self._digests = bytearray()
        self._lengths: array[int] = array("I")
        self._magic_size = self._offset = len(magic)
        self._pending = bytearray(magic)
        self._hasher = blake3.blake3()

    def _write(self, data: bytes | bytearray) -> None:
        self._hasher.update(data)
        self._out.write(data)

    def add(self, digest: bytes, record: bytes) -> None:
        if len(digest) < 16:
            raise ValueError("record digests are at least 16 bytes")
        self._pending += record
        if len(self._pending) >= _FLUSH_AT:
            self._write(self._pending)
            self._pending.clear()
        self._digests += digest[:16]
        self._lengths.append(len(record))
        self._offset += len(record)

    def finish(self, meta: dict[str, Any], *, checksum: bool = False) -> None:
        """Write the index, `meta` and the footer; `checksum` adds the body's BLAKE3."""
        self._write(self._pending)
        self._pending = bytearray()
        halves = array("Q")
        halves.frombytes(self._digests)
        if sys.byteorder == "little":  # both halves are read big-endian (key_of)
            halves.byteswap()
        self._digests = bytearray()
        keys, checks = halves[0::2], halves[1::2]
        del halves
        offsets = array("Q", accumulate(self._lengths, initial=self._magic_size))
        offsets.pop()
        columns = _sorted_unique(keys, checks, offsets, self._lengths)
        del keys, checks, offsets
        self._lengths = array("I")
        keys = columns[0]
        index_offset = self._offset
        for column in columns:
            self._write(_column(column))
        meta_offset = index_offset + len(keys) * ENTRY_BYTES
        if checksum:
            meta = {**meta, CHECKSUM_FIELD: self._hasher.digest()}
        self._out.write(pack(meta))
        self._out.write(FOOTER.pack(index_offset, len(keys), meta_offset, END_MAGIC))


def _sorted_unique(
    keys: array[int], checks: array[int], offsets: array[int], lengths: array[int]
) -> tuple[array[int], array[int], array[int], array[int]]:
    """Sort by key; store a record once when its (key, check, length) repeats: the same
    128-bit digest and size is the same record written twice (equal subtrees)."""
    order = sorted(range(len(keys)), key=keys.__getitem__)
    kept = _without_repeats(order, keys, checks, lengths)
    del order
    # Columns filled from generators: no list of Python ints per column at once.
    return (
        array("Q", (keys[i] for i in kept)),
        array("Q", (checks[i] for i in kept)),
        array("Q", (offsets[i] for i in kept)),
        array("I", (lengths[i] for i in kept)),
    )


def _without_repeats(
    order: list[int], keys: array[int], checks: array[int], lengths: array[int]
) -> array[int]:
    """`order` less repeats of a (key, check, length); repeats are adjacent by key, so
    only a run of equal keys (rare) needs a set."""
    kept: array[int] = array("L")
    seen: set[tuple[int, int]] | None = None
    last_key = -1
    for i in order:
        key = keys[i]
        if key != last_key:
            last_key, seen = key, None
            kept.append(i)
            continue
        if seen is None:
            first = kept[-1]
            seen = {(checks[first], lengths[first])}
        identity = (checks[i], lengths[i])
        if identity not in seen:
            seen.add(identity)
            kept.append(i)
    return kept


class RecordFileReader:
    """Read-only view of a record file; raises SnapshotFileError naming the file."""

    def __init__(self, path: Path, magic: bytes, *, keep_index: bool = False) -> None:
        self.path = path
        self._gets = 0
        self._keep_index = keep_index
        try:
            with path.open("rb") as stream:
                self._map = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:
            raise SnapshotFileError(f"{path}: cannot read: {exc}") from exc
        try:
            self._parse(magic)
        except SnapshotFileError:
            self.close()
            raise

    def _parse(self, magic: bytes) -> None:
        data = self._map
        if len(data) < len(magic) + FOOTER.size or data[: len(magic)] != magic:
            raise SnapshotFileError(f"{self.path}: not a syncd {magic.decode().strip()} file")
        index_offset, count, meta_offset, end = FOOTER.unpack_from(data, len(data) - FOOTER.size)
        if end != END_MAGIC or not (
            len(magic) <= index_offset
            and index_offset + count * ENTRY_BYTES == meta_offset
            and meta_offset <= len(data) - FOOTER.size
        ):
            raise SnapshotFileError(f"{self.path}: truncated or corrupt (bad footer)")
        self.count = count
        self._records_end = index_offset
        at = index_offset
        self._keys = _load_column("Q", data[at : at + 8 * count])
        # The other columns are read in place, one entry per lookup.
        self._checks = _mapped_column(data, "Q", at + 8 * count, count)
        self._offsets = _mapped_column(data, "Q", at + 16 * count, count)
        self._lengths = _mapped_column(data, "I", at + 24 * count, count)
        try:
            meta = unpack(data[meta_offset : len(data) - FOOTER.size])
        except ProtocolError as exc:
            raise SnapshotFileError(f"{self.path}: corrupt metadata: {exc}") from exc
        if not isinstance(meta, dict):
            raise SnapshotFileError(f"{self.path}: corrupt metadata")
        self.meta: dict[str, Any] = meta
        self._meta_offset = meta_offset

    def checksum_ok(self) -> bool:
        """The body's BLAKE3 is the one the writer recorded (False if none was)."""
        expected = self.meta.get(CHECKSUM_FIELD)
        if not isinstance(expected, bytes):
            return False
        hasher = blake3.blake3()
        view = memoryview(self._map)
        try:
            for start in range(0, self._meta_offset, _CHECK_SLICE):
                end = min(start + _CHECK_SLICE, self._meta_offset)
                hasher.update(view[start:end])
                self._release_pages(start, end - start)
        finally:
            view.release()
        return hasher.digest() == expected

    def candidates(self, digest: bytes) -> list[bytes]:
        """Every record stored under the digest's first 16 bytes (almost always one)."""
        self._gets += 1
        if self._gets % _RELEASE_EVERY == 0:
            self._release_pages()
        key, check = key_of(digest)
        keys = self._keys
        i = bisect.bisect_left(keys, key)
        found = []
        while i < self.count and keys[i] == key:
            if self._checks[i] == check:
                found.append(self._record(i))
            i += 1
        return found

    def _record(self, i: int) -> bytes:
        offset = self._offsets[i]
        length = self._lengths[i]
        if offset + length > self._records_end:
            raise SnapshotFileError(f"{self.path}: corrupt index entry")
        return self._map[offset : offset + length]

    def records(self) -> Iterator[bytes]:
        for i in range(self.count):
            yield self._record(i)

    def _release_pages(self, start: int = 0, length: int = 0) -> None:
        # Clean file pages: dropping them costs a re-read from the page cache at most.
        if hasattr(mmap, "MADV_DONTNEED"):
            end = self._records_end if self._keep_index else len(self._map)
            self._map.madvise(mmap.MADV_DONTNEED, start, length or end - start)

    def close(self) -> None:
        for name in ("_checks", "_offsets", "_lengths"):
            column = getattr(self, name, None)  # absent when _parse stopped early
            if isinstance(column, memoryview):
                column.release()  # a mapping with views into it cannot be closed
        self._map.close()

    def __enter__(self) -> RecordFileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def replace_atomically(tmp: Path, final: Path) -> None:
    """fsync `tmp`, rename it over `final`, fsync the directory: all or nothing."""
    with tmp.open("rb") as stream:
        os.fsync(stream.fileno())
    tmp.replace(final)
    dir_fd = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
