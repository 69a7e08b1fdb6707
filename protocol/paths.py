"""Validation of names and relative paths, applied where they are decoded.

A path that passes `check_relpath` is safe to join under a root on any POSIX system:
relative, normalized ('a/b', never '/a', 'a//b', 'a/./b', 'a/../b' or 'a/'), free of NUL,
and within NAME_MAX/PATH_MAX. Nothing downstream needs to re-check these properties;
following symlinks while writing is the writer's concern (it opens with O_NOFOLLOW).
"""

from __future__ import annotations

from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import DEFAULT_LIMITS, Limits


def check_name(name: object, limits: Limits = DEFAULT_LIMITS) -> str:
    """One path component: a non-empty str, not '.' or '..', without '/' or NUL."""
    if not isinstance(name, str):
        raise ProtocolError(
            ErrorCode.MALFORMED, f"name must be a string, not {type(name).__name__}"
        )
    if name in ("", ".", ".."):
        raise ProtocolError(ErrorCode.BAD_PATH, f"invalid name {name!r}")
    if "/" in name or "\x00" in name:
        raise ProtocolError(ErrorCode.BAD_PATH, f"name contains '/' or NUL: {name!r}")
    if _utf8_size(name) > limits.max_name_bytes:
        raise ProtocolError(ErrorCode.LIMIT, f"name longer than {limits.max_name_bytes} bytes")
    return name


def check_relpath(path: object, limits: Limits = DEFAULT_LIMITS) -> str:
    """A relative, normalized path of one or more valid names joined by '/'."""
    if not isinstance(path, str):
        raise ProtocolError(
            ErrorCode.MALFORMED, f"path must be a string, not {type(path).__name__}"
        )
    if _utf8_size(path) > limits.max_path_bytes:
        raise ProtocolError(ErrorCode.LIMIT, f"path longer than {limits.max_path_bytes} bytes")
    if path.startswith("/"):
        raise ProtocolError(ErrorCode.BAD_PATH, f"absolute path {path!r}")
    for part in path.split("/"):
        try:
            check_name(part, limits)
        except ProtocolError as exc:
            raise ProtocolError(exc.code, f"bad path {path!r}: {exc.message}") from None
    return path


def check_dirpath(path: object, limits: Limits = DEFAULT_LIMITS) -> str:
    """Like check_relpath, but '' (the root itself) is allowed."""
    if path == "":
        return ""
    return check_relpath(path, limits)


def _utf8_size(text: str) -> int:
    try:
        return len(text.encode())
    except UnicodeEncodeError:
        raise ProtocolError(ErrorCode.BAD_PATH, f"not valid UTF-8: {text!r}") from None


def join(parent: str, name: str) -> str:
    """Join a validated directory path ('' is the root) and a validated name."""
    return f"{parent}/{name}" if parent else name


def sort_key(path: str) -> bytes:
    """Key that orders paths depth-first, children by the UTF-8 bytes of their names.

    Replacing '/' by NUL (which no name contains) makes plain byte order equal to
    component-wise order: 'a/b' sorts before 'a.b', so every subtree is contiguous.
    """
    return path.encode(errors="surrogateescape").replace(b"/", b"\x00")
