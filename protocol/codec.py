"""The msgpack policy: one place decides how syncd encodes and decodes msgpack.

Encoding is canonical: the smallest integer, string, binary and array headers (msgpack's
own rule), `str` for text and `bin` for bytes, no floats, no maps inside hashed data.
Decoding is bounded (Limits) and strict: invalid UTF-8, extension types, non-string map
keys and trailing bytes are errors, and every failure surfaces as ProtocolError.
"""

from __future__ import annotations

import struct
import threading
from typing import Any

import msgpack

from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import DEFAULT_LIMITS, Limits

_local = threading.local()
KEEP_PACKER_BYTES = 1 << 20


def pack(obj: object) -> bytes:
    """Canonical encoding of lists/tuples, ints, str, bytes, bool, None and str-keyed maps."""
    packer = getattr(_local, "packer", None)
    if packer is None:
        # A Packer per thread: msgpack.packb builds a new one on every call.
        packer = _local.packer = msgpack.Packer(use_bin_type=True, datetime=False)
    try:
        data: bytes = packer.pack(obj)
    except (TypeError, ValueError, OverflowError) as exc:
        packer.reset()
        raise ProtocolError(ErrorCode.MALFORMED, f"cannot encode: {exc}") from exc
    if len(data) > KEEP_PACKER_BYTES:
        # The packer keeps its buffer at the largest size it ever grew to (32 MiB after
        # one 16 MiB blob frame): start afresh rather than hold that for the process.
        _local.packer = None
    return data


# A bytes value of at least this many bytes is handed out by pack_parts as it is.
SPLIT_BYTES = 64 << 10


def pack_parts(obj: object, split: int = SPLIT_BYTES) -> list[bytes]:
    """pack(obj) as pieces to be written in order, without copying large values: every
    `bytes` of `split` bytes or more inside `obj`'s lists and tuples is a piece of its
    own, the very object given. A blob frame then costs its blobs and a few headers,
    where pack() would hold the packer's buffer (grown to twice the frame) and the
    result besides. The headers are msgpack's own, so b"".join() of the pieces is
    exactly pack(obj)."""
    packer = msgpack.Packer(use_bin_type=True, datetime=False, autoreset=False)
    parts: list[bytes] = []
    try:
        _pack_into(packer, parts, obj, split)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ProtocolError(ErrorCode.MALFORMED, f"cannot encode: {exc}") from exc
    _flush(packer, parts)
    return parts


def _pack_into(packer: msgpack.Packer, parts: list[bytes], obj: object, split: int) -> None:
    kind = type(obj)
    if kind is list or kind is tuple:
        items: list[object] | tuple[object, ...] = obj  # type: ignore[assignment]
        packer.pack_array_header(len(items))
        for item in items:
            _pack_into(packer, parts, item, split)
    elif kind is bytes and len(obj) >= split:  # type: ignore[arg-type]
        large: bytes = obj  # type: ignore[assignment]
        _flush(packer, parts)
        parts += (_bin_header(len(large)), large)
    else:
        packer.pack(obj)
        with packer.getbuffer() as pending:  # released at once: the packer grows on
            full = len(pending) >= split
        if full:  # small values are joined into pieces of about `split` bytes
            _flush(packer, parts)


def _bin_header(length: int) -> bytes:
    """msgpack's smallest bin header for `length` (its Packer has no method for it)."""
    if length < 1 << 8:
        return struct.pack(">BB", 0xC4, length)
    if length < 1 << 16:
        return struct.pack(">BH", 0xC5, length)
    if length < 1 << 32:
        return struct.pack(">BI", 0xC6, length)
    raise ValueError(f"bytes of {length} are too long for msgpack")


def _flush(packer: msgpack.Packer, parts: list[bytes]) -> None:
    pending: bytes = packer.bytes()
    if pending:
        parts.append(pending)
        packer.reset()


def _unpacker_args(limits: Limits, max_buffer: int) -> dict[str, Any]:
    return {
        "raw": False,
        "use_list": True,
        "strict_map_key": True,
        "max_buffer_size": max_buffer,
        "max_str_len": limits.max_str,
        "max_bin_len": limits.max_bin,
        "max_array_len": limits.max_array,
        "max_map_len": limits.max_map,
        # No extension may carry a byte (msgpack decodes timestamps without any hook);
        # an empty one reaches _no_extensions.
        "max_ext_len": 0,
    }


def _no_extensions(code: int, data: bytes) -> object:
    raise ProtocolError(ErrorCode.MALFORMED, f"msgpack extension type {code} is not allowed")


def unpack(data: bytes | memoryview, limits: Limits = DEFAULT_LIMITS) -> object:
    """Decode exactly one object that fills `data` completely.

    Declared lengths are also capped at the input's own size: no object can hold more
    elements than it has bytes, and msgpack preallocates for declared array lengths, so
    without the cap nested headers declaring a million items each would cost far more
    memory than the input.
    """
    size = max(len(data), 1)
    args = _unpacker_args(limits, size)
    del args["max_buffer_size"]
    for key in ("max_str_len", "max_bin_len", "max_array_len", "max_map_len"):
        args[key] = min(args[key], size)
    try:
        return msgpack.unpackb(data, ext_hook=_no_extensions, **args)
    except msgpack.ExtraData:
        raise ProtocolError(ErrorCode.MALFORMED, "trailing bytes after msgpack object") from None
    except Exception as exc:
        raise _as_protocol_error(exc) from exc


def new_unpacker(limits: Limits = DEFAULT_LIMITS, *, max_buffer: int | None = None) -> Any:
    """A streaming unpacker bounded by `limits`; wrap its errors with `as_protocol_error`."""
    args = _unpacker_args(limits, max_buffer or limits.max_frame)
    return msgpack.Unpacker(ext_hook=_no_extensions, **args)


def as_protocol_error(exc: BaseException) -> ProtocolError:
    """Map anything msgpack raises while decoding hostile bytes to our own error."""
    return _as_protocol_error(exc)


def _as_protocol_error(exc: BaseException) -> ProtocolError:
    if isinstance(exc, ProtocolError):
        return exc
    code, text = _classify(exc)
    return ProtocolError(code, text)


def _classify(exc: BaseException) -> tuple[ErrorCode, str]:
    detail = str(exc)
    if isinstance(exc, msgpack.OutOfData) or (
        isinstance(exc, ValueError) and "incomplete" in detail
    ):
        return ErrorCode.TRUNCATED, "msgpack object ends early"
    if isinstance(exc, ValueError) and "max_ext_len" in detail:
        return ErrorCode.MALFORMED, "msgpack extension types are not allowed"
    if isinstance(exc, ValueError) and "exceeds max" in detail:
        return ErrorCode.LIMIT, f"msgpack length over limit: {detail}"
    if isinstance(exc, msgpack.exceptions.BufferFull):
        return ErrorCode.LIMIT, "msgpack object larger than the buffer limit"
    if isinstance(exc, UnicodeDecodeError):
        return ErrorCode.MALFORMED, "string is not valid UTF-8"
    return ErrorCode.MALFORMED, f"invalid msgpack: {type(exc).__name__}: {detail}"
