"""What a BLOBS frame the connection cut short still holds.

A link that drops in the middle of a BLOBS frame leaves the frame's first bytes in the
receiver's buffer, and a frame may hold 16 MiB: minutes of a slow link. The entries in
it that arrived whole are as good as any other: the receiver checks each exactly as it
checks every blob (the next one asked for, of the length asked for, its BLAKE3 equal to
its digest), so it may keep them and ask only for the rest the next time. The entry the
cut fell in gives the first bytes of its blob: unverified, they can only be kept to be
joined with the rest of the blob (REST) and the whole checked then (SPEC.md 8).
"""

from __future__ import annotations

import struct

import msgpack

from protocol.codec import new_unpacker
from protocol.limits import DIGEST_SIZE, Limits
from protocol.messages import MsgType

Entry = tuple[bytes, bytes]

# An entry is the array [digest, data]: fixarray(2), bin8 of 32 bytes, then data's bin
# header (bin8, bin16 or bin32) and its bytes.
_ENTRY_START = bytes([0x92, 0xC4, DIGEST_SIZE])
_BIN_HEADERS = {0xC4: struct.Struct(">B"), 0xC5: struct.Struct(">H"), 0xC6: struct.Struct(">I")}


def complete_blobs(payload: bytes, limits: Limits) -> list[Entry]:
    """(digest, data) of each entry the cut BLOBS payload holds whole, in order; empty
    when it is not the start of a BLOBS message. Nothing here is verified."""
    return _parse(payload, limits)[0]


def cut_entry(payload: bytes, limits: Limits) -> Entry | None:
    """(digest, the data bytes that arrived) of the entry the cut fell in, if the cut
    fell inside its data (None when it fell elsewhere, or nothing was cut)."""
    _, tail = _parse(payload, limits)
    if tail is None or not tail.startswith(_ENTRY_START):
        return None
    digest_end = len(_ENTRY_START) + DIGEST_SIZE
    header = _BIN_HEADERS.get(tail[digest_end]) if len(tail) > digest_end else None
    if header is None or len(tail) < digest_end + 1 + header.size:
        return None
    (length,) = header.unpack_from(tail, digest_end + 1)
    data = tail[digest_end + 1 + header.size :]
    if not data or len(data) >= length or length > limits.max_bin:
        return None
    return tail[len(_ENTRY_START) : digest_end], data


def _parse(payload: bytes, limits: Limits) -> tuple[list[Entry], bytes | None]:
    """The whole entries, and the bytes after them when the payload was cut inside the
    entries (None when it is not a BLOBS payload or the entries are complete)."""
    unpacker = new_unpacker(limits, max_buffer=max(len(payload), 1))
    unpacker.feed(payload)
    found: list[Entry] = []
    position = 0
    try:
        if unpacker.read_array_header() != 2 or unpacker.unpack() != int(MsgType.BLOBS):
            return found, None
        count = unpacker.read_array_header()
        position = unpacker.tell()
        for _ in range(count):
            if unpacker.read_array_header() != 2:
                return found, None
            digest, data = unpacker.unpack(), unpacker.unpack()
            if not (isinstance(digest, bytes) and isinstance(data, bytes)):
                return found, None
            found.append((digest, data))
            position = unpacker.tell()
    except msgpack.OutOfData:
        return found, payload[position:]  # the cut: what came before it is all there is
    except Exception:  # anything malformed ends the salvage, never the caller
        return found, None
    return found, None
