"""Name and path validation (protocol/paths.py): what is accepted, what is refused and why.

Every path from the wire or from media passes through these checks before anything joins
it under a root, so each rejection is pinned to its ErrorCode: callers and peers rely on
BAD_PATH (unsafe), LIMIT (too long) and MALFORMED (not a string) meaning what they say.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import Limits
from protocol.paths import check_dirpath, check_name, check_relpath, join, sort_key

# Byte limits are on UTF-8 bytes, not characters: 'é' is 2 bytes, '😀' is 4.
E_ACUTE = "\u00e9"
EMOJI = "\U0001f600"

VALID_NAMES = [
    "a",
    "...",  # only '.' and '..' are special, not every dot run
    ".hidden",
    "a b",
    "back\\slash",  # backslash is an ordinary byte on POSIX
    "x" * 255,  # exactly NAME_MAX
    E_ACUTE * 127 + "a",  # 255 bytes in 128 characters
    EMOJI * 63 + "abc",  # 255 bytes in 66 characters
    "\u00e9t\u00e9",
]

BAD_NAMES: list[tuple[object, ErrorCode]] = [
    ("", ErrorCode.BAD_PATH),
    (".", ErrorCode.BAD_PATH),
    ("..", ErrorCode.BAD_PATH),
    ("/", ErrorCode.BAD_PATH),
    ("a/b", ErrorCode.BAD_PATH),
    ("a\x00b", ErrorCode.BAD_PATH),
    ("\x00", ErrorCode.BAD_PATH),
    ("x" * 256, ErrorCode.LIMIT),
    (E_ACUTE * 128, ErrorCode.LIMIT),  # 128 characters but 256 bytes
    (EMOJI * 64, ErrorCode.LIMIT),  # 64 characters but 256 bytes
    (b"a", ErrorCode.MALFORMED),  # bytes are not a name, even if they decode
    (1, ErrorCode.MALFORMED),
    (None, ErrorCode.MALFORMED),
    (["a"], ErrorCode.MALFORMED),
]


@pytest.mark.parametrize("name", VALID_NAMES)
def test_valid_names_are_returned_unchanged(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(("name", "code"), BAD_NAMES)
def test_bad_names_are_refused_with_their_code(name: object, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as info:
        check_name(name)
    assert info.value.code is code


def _path_of_bytes(total: int, char: str = "x") -> str:
    """A path of valid components (each under NAME_MAX) exactly `total` UTF-8 bytes long."""
    width = len(char.encode())
    component = char * (200 // width)  # 200 bytes
    parts: list[str] = []
    used = 0
    while total - used > len(component.encode()) + 1:
        parts.append(component)
        used += len(component.encode()) + 1  # the component and its '/'
    rest = total - used
    # Pad the last component with 'x' so that any total is reachable whatever `char` is.
    parts.append(char * (rest // width) + "x" * (rest % width))
    path = "/".join(parts)
    assert len(path.encode()) == total
    return path


VALID_PATHS = [
    "a",
    "a/b",
    "a/b/c.txt",
    "a.b/.c/...",
    "\u00e9t\u00e9/caf\u00e9",
    _path_of_bytes(4096),  # exactly PATH_MAX
    _path_of_bytes(4096, E_ACUTE),  # PATH_MAX in bytes, far fewer characters
]

BAD_PATHS: list[tuple[object, ErrorCode]] = [
    ("", ErrorCode.BAD_PATH),
    (".", ErrorCode.BAD_PATH),
    ("..", ErrorCode.BAD_PATH),
    ("/", ErrorCode.BAD_PATH),
    ("/a", ErrorCode.BAD_PATH),  # absolute
    ("//a", ErrorCode.BAD_PATH),
    ("a//b", ErrorCode.BAD_PATH),  # empty component
    ("a/", ErrorCode.BAD_PATH),  # trailing '/'
    ("./a", ErrorCode.BAD_PATH),
    ("a/./b", ErrorCode.BAD_PATH),
    ("a/../b", ErrorCode.BAD_PATH),
    ("../a", ErrorCode.BAD_PATH),
    ("a/..", ErrorCode.BAD_PATH),
    ("a/b\x00c", ErrorCode.BAD_PATH),
    ("a/" + "x" * 256, ErrorCode.LIMIT),  # one component over NAME_MAX
    ("a/" + E_ACUTE * 128, ErrorCode.LIMIT),
    (_path_of_bytes(4097), ErrorCode.LIMIT),  # whole path over PATH_MAX
    (_path_of_bytes(4097, E_ACUTE), ErrorCode.LIMIT),  # over PATH_MAX only in bytes
    (b"a/b", ErrorCode.MALFORMED),
    (3, ErrorCode.MALFORMED),
    (None, ErrorCode.MALFORMED),
]


@pytest.mark.parametrize("path", VALID_PATHS)
def test_valid_paths_are_returned_unchanged(path: str) -> None:
    assert check_relpath(path) == path
    assert check_dirpath(path) == path


@pytest.mark.parametrize(("path", "code"), BAD_PATHS)
def test_bad_paths_are_refused_with_their_code(path: object, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as info:
        check_relpath(path)
    assert info.value.code is code


@pytest.mark.parametrize(("path", "code"), [(p, c) for p, c in BAD_PATHS if p != ""])
def test_dirpath_refuses_what_relpath_refuses_except_the_root(
    path: object, code: ErrorCode
) -> None:
    with pytest.raises(ProtocolError) as info:
        check_dirpath(path)
    assert info.value.code is code


def test_dirpath_allows_the_root_itself() -> None:
    # '' names the root for directory requests; it is never a valid file path.
    assert check_dirpath("") == ""


def test_multibyte_limit_cases_are_under_the_limits_in_characters() -> None:
    # The checks must use len(str.encode()), not len(str): the character counts here are
    # well under the limits, so only a byte count refuses them.
    assert len(E_ACUTE * 128) < 255
    assert len(_path_of_bytes(4097, E_ACUTE)) < 4096


def test_limits_are_taken_from_the_given_limits() -> None:
    small = Limits(max_name_bytes=4, max_path_bytes=9)
    assert check_name("abcd", small) == "abcd"
    assert check_relpath("abcd/abcd", small) == "abcd/abcd"
    for call, arg in [(check_name, "abcde"), (check_relpath, "abcd/abcde")]:
        with pytest.raises(ProtocolError) as info:
            call(arg, small)
        assert info.value.code is ErrorCode.LIMIT


def test_error_message_names_the_bad_path() -> None:
    with pytest.raises(ProtocolError) as info:
        check_relpath("a/../etc")
    assert "a/../etc" in str(info.value)


@pytest.mark.parametrize("check", [check_name, check_relpath])
def test_unencodable_str_is_refused_with_protocol_error(check: Callable[[object], str]) -> None:
    with pytest.raises(ProtocolError):
        check("bad\udcffname")


def test_join_puts_names_under_the_root_and_under_dirs() -> None:
    assert join("", "a") == "a"
    assert join("a", "b") == "a/b"
    assert join("a/b", "c") == "a/b/c"


def test_sort_key_orders_depth_first() -> None:
    # '/' (0x2f) sorts after '.' (0x2e) as a byte, but a directory's subtree must stay
    # contiguous: 'a/b' comes right after 'a', before the sibling 'a.b' and 'a0'.
    paths = ["a0", "a.b", "a/b", "a", "a/b/c", "a/c", "b", "a-"]
    assert sorted(paths, key=sort_key) == ["a", "a/b", "a/b/c", "a/c", "a-", "a.b", "a0", "b"]
    assert sort_key("a/b") < sort_key("a.b") < sort_key("a0")


def test_sort_key_orders_names_by_utf8_bytes() -> None:
    # Byte order of UTF-8 equals code point order; it is not locale order.
    names = ["\u00e9", "z", "Z", "\U0001f600", "\uffff"]
    assert sorted(names, key=sort_key) == ["Z", "z", "\u00e9", "\uffff", "\U0001f600"]
