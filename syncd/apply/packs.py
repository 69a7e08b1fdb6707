"""Staging packs: append-only files of self-verifying records.

A record is a header then its bytes (integers little-endian):

    magic b"SYP1" | kind u8 (0 blob, 1 tree record) | digest 32 bytes | length u32 | data

A blob's digest is BLAKE3 of its data; a tree record's is its tree id (protocol/tree.py).
Since every record proves itself, recovery needs no other file: read a pack from the
start, skip (and report) a complete record that does not hash to its digest, and stop at
the first header that is not one or record that is torn (shorter than its length says).
Every record kept is good, whatever happened to the process or the disk.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import blake3

from protocol.limits import DEFAULT_LIMITS, DIGEST_SIZE
from protocol.tree import tree_id

HEADER = struct.Struct("<4sB32sI")
MAGIC = b"SYP1"
KIND_BLOB = 0
KIND_TREE = 1
DIGEST_AT = 5  # offset of the digest inside the header
MAX_DATA = DEFAULT_LIMITS.max_frame  # a blob or a tree record arrives inside one frame


@dataclass(frozen=True, slots=True)
class Record:
    kind: int
    digest: bytes
    offset: int  # of the header
    length: int  # of the data

    @property
    def end(self) -> int:
        return self.offset + HEADER.size + self.length


def encode_header(kind: int, digest: bytes, length: int) -> bytes:
    return HEADER.pack(MAGIC, kind, digest, length)


def proves(kind: int, digest: bytes, data: bytes | memoryview) -> bool:
    """Whether `data` is what `digest` names."""
    if kind == KIND_BLOB:
        return bool(blake3.blake3(data).digest() == digest)
    return tree_id(bytes(data)) == digest


def read_header(fd: int, offset: int) -> Record | None:
    """The record header at `offset`, or None if it is torn or not a header."""
    raw = os.pread(fd, HEADER.size, offset)
    if len(raw) < HEADER.size:
        return None
    magic, kind, digest, length = HEADER.unpack(raw)
    if magic != MAGIC or kind not in (KIND_BLOB, KIND_TREE) or length > MAX_DATA:
        return None
    return Record(kind, digest, offset, length)


def read_data(fd: int, record: Record) -> bytes:
    return os.pread(fd, record.length, record.offset + HEADER.size)


def scan(fd: int) -> Iterator[tuple[Record, bool]]:
    """Every complete record from the start, and whether it proves itself; stops at the
    first bad header or torn record."""
    offset = 0
    while True:
        record = read_header(fd, offset)
        if record is None:
            return
        data = read_data(fd, record)
        if len(data) != record.length:
            return
        yield record, proves(record.kind, record.digest, data)
        offset = record.end


assert HEADER.size == 4 + 1 + DIGEST_SIZE + 4
