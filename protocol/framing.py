"""Frames: a 4-byte big-endian payload length, then the payload (one msgpack message).

The length is checked against the receiver's limit before any payload is buffered, so a
peer cannot make us hold more than one maximal frame.
"""

from __future__ import annotations

import struct

from protocol.codec import pack, pack_parts, unpack
from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import Limits

HEADER = struct.Struct(">I")


def encode_frame(payload: object) -> bytes:
    body = pack(payload)
    return HEADER.pack(len(body)) + body


def encode_frame_parts(payload: object) -> list[bytes]:
    """encode_frame(payload) as pieces to write in order, its large bytes values not
    copied (codec.pack_parts): for frames that carry blobs of up to 16 MiB."""
    body = pack_parts(payload)
    return [HEADER.pack(sum(len(part) for part in body)), *body]


class FrameDecoder:
    """Feed bytes in any pieces; take out decoded payloads one at a time."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._buffer = bytearray()
        self._eof = False

    def feed(self, data: bytes) -> None:
        if not data:
            self._eof = True
        else:
            self._buffer += data

    @property
    def eof(self) -> bool:
        return self._eof

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def partial_payload(self) -> bytes:
        """The payload bytes of a frame begun but not complete (b"" when none is)."""
        buffer = self._buffer
        if len(buffer) < HEADER.size:
            return b""
        (length,) = HEADER.unpack_from(buffer)
        if length > self._limits.max_frame or len(buffer) >= HEADER.size + length:
            return b""
        return bytes(memoryview(buffer)[HEADER.size :])

    def next_payload(self) -> object | None:
        """The next whole frame's decoded payload, or None until more bytes arrive."""
        buffer = self._buffer
        if len(buffer) < HEADER.size:
            return None
        (length,) = HEADER.unpack_from(buffer)
        if length > self._limits.max_frame:
            raise ProtocolError(
                ErrorCode.LIMIT,
                f"frame of {length} bytes exceeds the limit of {self._limits.max_frame}",
            )
        end = HEADER.size + length
        if len(buffer) < end:
            return None
        payload = bytes(memoryview(buffer)[HEADER.size : end])
        del buffer[:end]
        return unpack(payload, self._limits)
