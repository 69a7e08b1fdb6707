"""The one exception protocol/ raises for bad input, with a stable error code.

Every decoder in this package either returns a value or raises ProtocolError; any other
exception escaping a decoder is a bug (the fuzz tests hold us to that).
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """Stable numeric codes; SPEC.md lists them. Never renumber."""

    MALFORMED = 1  # not valid msgpack, wrong types, wrong arity
    LIMIT = 2  # a declared or actual size beyond the negotiated limits
    BAD_PATH = 3  # a path or name that is not relative, normalized and safe
    NOT_CANONICAL = 4  # valid data in a non-canonical encoding or order
    HASH_MISMATCH = 5  # bytes do not hash to the name they were sent under
    UNEXPECTED = 6  # a message that the state machine does not allow now
    VERSION = 7  # no common protocol version, or a known HELLO parameter of the wrong type
    TRUNCATED = 8  # the stream ended inside a frame or before the conversation finished
    REMOTE = 9  # the peer failed for its own reasons (disk full, apply refused, ...)


class ProtocolError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name.lower()}: {self.message}"
