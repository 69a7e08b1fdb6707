"""A seeded mutation engine for the fuzz campaign: bytes in, hostile-but-plausible bytes out.

Uniform noise is refused at the first byte, so most mutations here keep the outer shape
intact and break the inside: byte-level edits of one frame's payload with its length
prefix fixed up, msgpack-aware edits that replace one decoded value by an awkward one
(a huge declared length, a wrong type, '..', a negative number), and for media files a
recomputed END checksum so that the mutation reaches the field checks behind it.
Everything is driven by one `random.Random`, so a seed replays a run exactly.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

import blake3
import msgpack

from protocol.tree import tree_id

LENGTH = struct.Struct(">I")

# Values that sit on a boundary somewhere in the decoders.
AWKWARD_INTS = (0, 1, -1, 2, 255, 256, 4095, 4096, 65535, 2**31 - 1, 2**32 - 1, 2**63 - 1, -(2**63))
AWKWARD_VALUES: tuple[object, ...] = (
    *AWKWARD_INTS,
    "..",
    "/etc/passwd",
    "a/../b",
    "x\x00y",
    "a:b",
    "",
    "é" * 200,
    "n" * 300,
    b"",
    b"\x00" * 31,
    b"\xff" * 33,
    None,
    True,
    False,
    [],
    [[]],
    {},
    {"max_frame": 2**32 - 1},
)
# msgpack headers that declare far more than follows.
BOMB_HEADERS = (
    b"\xdd\xff\xff\xff\xff",
    b"\xdf\xff\xff\xff\xff",
    b"\xc6\xff\xff\xff\xff",
    b"\xdb\xff\xff\xff\xff",
    b"\xc9\xff\xff\xff\xff\x01",
    b"\x91" * 64,
    b"\xc1",
    b"\xd4\x05\x00",
)


def split_frames(data: bytes, start: int = 0) -> list[bytes] | None:
    """The payloads of `data[start:]` as length-prefixed frames, or None if they do not tile."""
    payloads: list[bytes] = []
    at = start
    while at < len(data):
        if at + LENGTH.size > len(data):
            return None
        (length,) = LENGTH.unpack_from(data, at)
        end = at + LENGTH.size + length
        if end > len(data):
            return None
        payloads.append(data[at + LENGTH.size : end])
        at = end
    return payloads


def join_frames(payloads: list[bytes]) -> bytes:
    return b"".join(LENGTH.pack(len(p)) + p for p in payloads)


# -- byte-level edits ----------------------------------------------------------------------


def flip_bit(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return bytes([rng.randrange(256)])
    at = rng.randrange(len(data))
    return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :]


def set_byte(rng: random.Random, data: bytes) -> bytes:
    value = rng.choice((0x00, 0xFF, 0x7F, 0x80, 0xC0, 0xC1, 0xC4, 0xD9, 0xDC, 0xDD, 0x90, 0x9F))
    at = rng.randrange(len(data) + 1)
    return data[:at] + bytes([value]) + data[at + 1 :]


def insert_bytes(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data) + 1)
    extra = rng.choice(BOMB_HEADERS) if rng.random() < 0.5 else rng.randbytes(rng.randint(1, 8))
    return data[:at] + extra + data[at:]


def delete_range(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    at = rng.randrange(len(data))
    return data[:at] + data[at + rng.randint(1, 16) :]


def duplicate_range(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return data
    at = rng.randrange(len(data))
    piece = data[at : at + rng.randint(1, 32)]
    where = rng.randrange(len(data) + 1)
    return data[:where] + piece + data[where:]


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def overwrite_u32(rng: random.Random, data: bytes) -> bytes:
    """A 4-byte big-endian field (a frame length, a msgpack 32-bit length) set to a boundary."""
    if len(data) < 4:
        return data
    at = rng.randrange(len(data) - 3)
    value = rng.choice((0, 1, len(data), len(data) + 1, 2**24, 2**31, 2**32 - 1))
    return data[:at] + LENGTH.pack(value) + data[at + 4 :]


BYTE_EDITS: tuple[Callable[[random.Random, bytes], bytes], ...] = (
    flip_bit,
    set_byte,
    insert_bytes,
    delete_range,
    duplicate_range,
    truncate,
    overwrite_u32,
)


def byte_edit(rng: random.Random, data: bytes) -> bytes:
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        data = rng.choice(BYTE_EDITS)(rng, data)
    return data


# -- msgpack-aware edits -------------------------------------------------------------------


def _leaf_paths(value: object, path: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    """Every position in nested lists (a list's own position included)."""
    found = [path]
    if isinstance(value, list):
        for i, item in enumerate(value):
            found += _leaf_paths(item, (*path, i))
    return found


def _replace(value: object, path: tuple[int, ...], new: object) -> object:
    if not path:
        return new
    assert isinstance(value, list)
    copy = list(value)
    copy[path[0]] = _replace(copy[path[0]], path[1:], new)
    return copy


def _pick(value: object, path: tuple[int, ...]) -> object:
    for i in path:
        assert isinstance(value, list)
        value = value[i]
    return value


def _awkward(rng: random.Random, old: object) -> object:
    roll = rng.random()
    if roll < 0.5:
        return rng.choice(AWKWARD_VALUES)
    if isinstance(old, int) and not isinstance(old, bool):
        return old + rng.choice((-1, 1, 2**32, -(2**32)))
    if isinstance(old, (bytes, str)) and old:
        return old[: rng.randrange(len(old))]
    if isinstance(old, list):
        return old + old if rng.random() < 0.5 else old[:-1]
    return rng.choice(AWKWARD_VALUES)


def value_edit(rng: random.Random, payload: bytes) -> bytes:
    """One value inside the msgpack `payload` replaced by an awkward one; raw on failure."""
    try:
        value = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception:  # not decodable: fall back to a byte edit
        return byte_edit(rng, payload)
    path = rng.choice(_leaf_paths(value))
    try:
        data: bytes = msgpack.packb(
            _replace(value, path, _awkward(rng, _pick(value, path))), use_bin_type=True
        )
    except Exception:  # e.g. an int beyond 64 bits
        return byte_edit(rng, payload)
    return data


def payload_edit(rng: random.Random, payload: bytes) -> bytes:
    return value_edit(rng, payload) if rng.random() < 0.6 else byte_edit(rng, payload)


# -- framed streams and media files --------------------------------------------------------


def mutate_frames(rng: random.Random, stream: bytes) -> bytes:
    """A wire stream with one frame's payload edited and its length fixed up (mostly)."""
    payloads = split_frames(stream)
    if not payloads or rng.random() < 0.15:
        return byte_edit(rng, stream)
    at = rng.randrange(len(payloads))
    payloads[at] = payload_edit(rng, payloads[at])
    if rng.random() < 0.1:
        payloads.insert(rng.randrange(len(payloads) + 1), payloads[rng.randrange(len(payloads))])
    return join_frames(payloads)


def mutate_media(rng: random.Random, data: bytes, magic_size: int = 8) -> bytes:
    """A media file (magic + frames + END) edited inside, then re-checksummed (mostly), so
    that the edit is judged by the field checks rather than by the checksum alone."""
    payloads = split_frames(data, magic_size)
    if not payloads or len(payloads) < 2 or rng.random() < 0.15:
        return byte_edit(rng, data)
    body = payloads[:-1]
    at = rng.randrange(len(body))
    body[at] = payload_edit(rng, body[at])
    if rng.random() < 0.3:
        body[at] = rehash_trees(body[at])
    head = data[:magic_size] + join_frames(body)
    if rng.random() < 0.1:
        return head + LENGTH.pack(len(payloads[-1])) + payloads[-1]  # stale checksum
    end = msgpack.packb([5, blake3.blake3(head).digest(), None], use_bin_type=True)
    return head + LENGTH.pack(len(end)) + end


def rehash_trees(payload: bytes) -> bytes:
    """A TREES frame `[3, [[id, record], ...]]` with each id recomputed from its record."""
    try:
        value = msgpack.unpackb(payload, raw=False)
        entries = value[1]
        fixed = [[tree_id(record), record] for _, record in entries]
        data: bytes = msgpack.packb([value[0], fixed], use_bin_type=True)
    except Exception:  # not a TREES frame after the edit: leave it as it is
        return payload
    return data


def splice(rng: random.Random, one: bytes, other: bytes) -> bytes:
    return one[: rng.randrange(len(one) + 1)] + other[rng.randrange(len(other) + 1) :]
