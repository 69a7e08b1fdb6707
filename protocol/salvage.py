"""The whole blobs at the start of a BLOBS frame the connection cut short.

A link that drops in the middle of a BLOBS frame leaves the frame's first bytes in the
receiver's buffer, and a frame may hold 16 MiB: minutes of a slow link. The blobs in it
that arrived whole are as good as any other: the receiver checks each exactly as it
checks every blob (the next one asked for, of the length asked for, its BLAKE3 equal to
its digest), so it may keep them and ask only for the rest the next time (SPEC.md 8).
"""

from __future__ import annotations

import msgpack

from protocol.codec import new_unpacker
from protocol.limits import Limits
from protocol.messages import MsgType


def complete_blobs(payload: bytes, limits: Limits) -> list[tuple[bytes, bytes]]:
    """(digest, data) of each entry the cut BLOBS payload holds whole, in order; empty
    when it is not the start of a BLOBS message. Nothing here is verified."""
    unpacker = new_unpacker(limits, max_buffer=max(len(payload), 1))
    unpacker.feed(payload)
    found: list[tuple[bytes, bytes]] = []
    try:
        if unpacker.read_array_header() != 2 or unpacker.unpack() != int(MsgType.BLOBS):
            return found
        for _ in range(unpacker.read_array_header()):
            if unpacker.read_array_header() != 2:
                break
            digest, data = unpacker.unpack(), unpacker.unpack()
            if not (isinstance(digest, bytes) and isinstance(data, bytes)):
                break
            found.append((digest, data))
    except msgpack.OutOfData:
        return found  # the cut: what came before it is all there is
    except Exception:  # anything malformed ends the salvage, never the caller
        return found
    return found
