"""The field checks every decoder in protocol/ uses: one exact type, one range, one error.

Each returns its value with the type it was checked for, or raises ProtocolError
MALFORMED naming the field (`what`). Types are checked exactly (SPEC.md, section 3): a
boolean is never an integer here, nor the reverse. Sizes beyond a receiver's limits
never get this far: the codec refuses them, as LIMIT, before it allocates.
"""

from __future__ import annotations

from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import DIGEST_SIZE

MAX_UINT = 2**63 - 1


def uint(value: object, what: str, low: int = 0, high: int = MAX_UINT) -> int:
    if type(value) is not int or not low <= value <= high:
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: expected an integer {low}..{high}")
    return value


def boolean(value: object, what: str) -> bool:
    if type(value) is not bool:
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: expected a boolean")
    return value


def text(value: object, what: str, limit: int) -> str:
    """A str of at most `limit` characters."""
    if type(value) is not str or len(value) > limit:
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: expected a string of <= {limit}")
    return value


def data(value: object, what: str) -> bytes:
    if type(value) is not bytes:
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: expected bytes")
    return value


def digest(value: object, what: str) -> bytes:
    return exact_bytes(value, what, DIGEST_SIZE)


def exact_bytes(value: object, what: str, size: int) -> bytes:
    if type(value) is not bytes or len(value) != size:
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: expected {size} bytes")
    return value


def array(value: object, what: str, *, nonempty: bool = False) -> list[object]:
    if type(value) is not list or (nonempty and not value):
        kind = "a non-empty array" if nonempty else "an array"
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: expected {kind}")
    return value


def fixed(value: object, what: str, size: int) -> list[object]:
    """An array of exactly `size` elements (a pair, an entry of a list)."""
    if type(value) is not list or len(value) != size:
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: expected an array of {size}")
    return value
