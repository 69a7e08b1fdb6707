"""A write-once file of byte records found by 64-bit keys.

Layout (integers little-endian):

    magic (8 bytes, chosen by the caller)
    records, each the raw bytes given to `add`
    keys:    count x u64, ascending
    offsets: count x u64, in the same order
    lengths: count x u32, in the same order
    meta: one msgpack map chosen by the caller
    footer: index_offset u64, count u64, meta_offset u64, b"SYNCDEND"

Keys are 64 bits of a hash, so two records may share one: `candidates` returns every
record under a key and the caller recognizes its own (a snapshot by hashing the record,
the stat cache by the path inside it). Keeping 20 bytes per record in memory, written as
they come and sorted only at the end, lets a scan of a million directories stay small.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from protocol.codec import pack, unpack
from protocol.errors import ProtocolError
from syncd.errors import SnapshotFileError

FOOTER = struct.Struct("<QQQ8s")
END_MAGIC = b"SYNCDEND"
ENTRY_BYTES = 8 + 8 + 4
_RELEASE_EVERY = 8192
_FLUSH_AT = 1 << 20


def key_of(digest: bytes) -> int:
    """The 64-bit record key taken from the start of a hash."""
    return int.from_bytes(digest[:8], "big")


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


class RecordFileWriter:
    def __init__(self, stream: BinaryIO, magic: bytes) -> None:
        if len(magic) != 8:
            raise ValueError("magic must be 8 bytes")
        self._out = stream
        self._keys: array[int] = array("Q")
        self._offsets: array[int] = array("Q")
        self._lengths: array[int] = array("I")
        self._offset = len(magic)
        self._pending = bytearray(magic)

    def add(self, key: int, record: bytes) -> None:
        self._pending += record
        if len(self._pending) >= _FLUSH_AT:
            self._out.write(self._pending)
            self._pending.clear()
        self._keys.append(key)
        self._offsets.append(self._offset)
        self._lengths.append(len(record))
        self._offset += len(record)

    def finish(self, meta: dict[str, Any]) -> None:
        self._out.write(self._pending)
        self._pending = bytearray()
        keys, offsets, lengths = _sorted_unique(self._keys, self._offsets, self._lengths)
        self._keys, self._offsets, self._lengths = array("Q"), array("Q"), array("I")
        index_offset = self._offset
        for column in (keys, offsets, lengths):
            self._out.write(_column(column))
        meta_offset = index_offset + len(keys) * ENTRY_BYTES
        self._out.write(pack(meta))
        self._out.write(FOOTER.pack(index_offset, len(keys), meta_offset, END_MAGIC))


def _sorted_unique(
    keys: array[int], offsets: array[int], lengths: array[int]
) -> tuple[array[int], array[int], array[int]]:
    """Sort by key; drop repeats of a (key, length) pair, which are the same record
    written twice (equal subtrees), so that one copy serves for all."""
    order = sorted(range(len(keys)), key=keys.__getitem__)
    out_keys: array[int] = array("Q")
    out_offsets: array[int] = array("Q")
    out_lengths: array[int] = array("I")
    last = (-1, -1)
    for i in order:
        pair = (keys[i], lengths[i])
        if pair == last:
            continue
        last = pair
        out_keys.append(keys[i])
        out_offsets.append(offsets[i])
        out_lengths.append(lengths[i])
    return out_keys, out_offsets, out_lengths


class RecordFileReader:
    """Read-only view of a record file; raises SnapshotFileError naming the file."""

    def __init__(self, path: Path, magic: bytes) -> None:
        self.path = path
        self._gets = 0
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
        at += 8 * count
        self._offsets_at = at
        self._lengths_at = at + 8 * count
        try:
            meta = unpack(data[meta_offset : len(data) - FOOTER.size])
        except ProtocolError as exc:
            raise SnapshotFileError(f"{self.path}: corrupt metadata: {exc}") from exc
        if not isinstance(meta, dict):
            raise SnapshotFileError(f"{self.path}: corrupt metadata")
        self.meta: dict[str, Any] = meta

    def candidates(self, key: int) -> Iterator[bytes]:
        """Every record stored under `key` (usually one, at most a handful)."""
        self._gets += 1
        if self._gets % _RELEASE_EVERY == 0:
            self._release_pages()
        i = bisect.bisect_left(self._keys, key)
        while i < self.count and self._keys[i] == key:
            yield self._record(i)
            i += 1

    def _record(self, i: int) -> bytes:
        (offset,) = struct.unpack_from("<Q", self._map, self._offsets_at + 8 * i)
        (length,) = struct.unpack_from("<I", self._map, self._lengths_at + 4 * i)
        if offset + length > self._records_end:
            raise SnapshotFileError(f"{self.path}: corrupt index entry")
        return self._map[offset : offset + length]

    def records(self) -> Iterator[bytes]:
        for i in range(self.count):
            yield self._record(i)

    def _release_pages(self) -> None:
        # Clean file pages: dropping them costs a re-read from the page cache at most.
        if hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
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
