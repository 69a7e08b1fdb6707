"""Hostile input for the decoders: they return a value or raise ProtocolError, nothing else.

The properties are seeded (derandomize) and short, so CI runs the same ~2000 examples every
time; a longer local hunt can raise max_examples. The bombs below are fixed inputs that
declare huge or deep structures in a few bytes: the decoders must refuse them from the
header, without allocating what the header asks for.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import codec
from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import CHUNK_SIZE, DIGEST_SIZE, Limits
from protocol.tree import DirNode, FileNode, LinkNode, Node, decode_tree, encode_tree

# Same examples on every run; no wall-clock deadline (CI machines vary).
SEEDED = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def decodes_or_protocol_error(decode: Callable[[bytes], object], data: bytes) -> object | None:
    """The decoder's value, or None if it raised ProtocolError; anything else propagates."""
    try:
        return decode(data)
    except ProtocolError as exc:
        assert isinstance(exc.code, ErrorCode)
        return None


# --- (a) arbitrary bytes ------------------------------------------------------------------

# Bytes that start like msgpack containers are more interesting than uniform noise.
MSGPACK_LEADS = st.sampled_from(
    [b"", b"\x91", b"\x92", b"\x93", b"\x94", b"\x96", b"\xdc", b"\xdd", b"\xc4", b"\xc6", b"\xd9"]
)
ARBITRARY = st.builds(lambda lead, body: lead + body, MSGPACK_LEADS, st.binary(max_size=200))


@settings(SEEDED, max_examples=400)
@given(ARBITRARY)
def test_unpack_arbitrary_bytes(data: bytes) -> None:
    decodes_or_protocol_error(codec.unpack, data)


@settings(SEEDED, max_examples=400)
@given(ARBITRARY)
def test_decode_tree_arbitrary_bytes(data: bytes) -> None:
    nodes = decodes_or_protocol_error(decode_tree, data)
    if nodes is not None:
        assert isinstance(nodes, list)
        assert encode_tree(nodes) == data


# --- (b) structured: valid msgpack, tree-like shapes --------------------------------------

INTS = st.one_of(
    st.integers(-3, 8),
    st.sampled_from([0o644, 0o755, 0o7777, 0o10000, CHUNK_SIZE, CHUNK_SIZE + 1, 2**63, -(2**63)]),
    st.integers(-(2**63), 2**64 - 1),
)
DIGESTS = st.one_of(
    st.binary(min_size=DIGEST_SIZE, max_size=DIGEST_SIZE), st.binary(min_size=30, max_size=34)
)
TEXT = st.one_of(
    st.sampled_from(["a", "b", "c", ".", "..", "a/b", "", "x\x00"]), st.text(max_size=8)
)
LEAVES = st.one_of(INTS, DIGESTS, TEXT, st.booleans(), st.none(), st.binary(max_size=4))
ANY_VALUE = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=5), max_leaves=20)

PIECE = st.one_of(st.tuples(DIGESTS, INTS).map(list), ANY_VALUE)
VALID_PIECES = st.lists(
    st.tuples(st.binary(min_size=DIGEST_SIZE, max_size=DIGEST_SIZE), st.integers(1, 9)).map(list),
    max_size=3,
)


@st.composite
def fileish(draw: st.DrawFn) -> list[object]:
    # Mostly a size that matches the pieces, so that the other checks get reached.
    pieces: list[object] = draw(st.one_of(VALID_PIECES, st.lists(PIECE, max_size=3)))
    size = draw(st.one_of(st.just(sum(_length(p) for p in pieces)), INTS))
    mode = draw(st.one_of(st.just(0o644), INTS))
    mtime = draw(st.one_of(st.integers(-1, 2**62), INTS))
    return [draw(TEXT), 0, mode, size, mtime, pieces]


def _length(piece: object) -> int:
    if isinstance(piece, list) and len(piece) == 2 and type(piece[1]) is int:
        return piece[1]
    return 0


DIRISH = st.tuples(TEXT, st.just(1), INTS, DIGESTS).map(list)
LINKISH = st.tuples(TEXT, st.just(2), TEXT).map(list)
CHILD = st.one_of(fileish(), DIRISH, LINKISH, st.lists(ANY_VALUE, max_size=7))
TREEISH = st.one_of(st.lists(CHILD, max_size=5), st.lists(CHILD, max_size=2), ANY_VALUE)


@settings(SEEDED, max_examples=500)
@given(TREEISH)
def test_decode_tree_structured(value: object) -> None:
    # Whatever decodes must be exactly the canonical encoding of what it decoded to:
    # a second encoding of the same tree would give a second id for it.
    data: bytes = msgpack.packb(value, use_bin_type=True)
    nodes = decodes_or_protocol_error(decode_tree, data)
    if nodes is not None:
        assert isinstance(nodes, list)
        assert encode_tree(nodes) == data


# --- generated valid trees ----------------------------------------------------------------

NAMES = st.text(
    st.characters(codec="utf-8", exclude_characters="/\x00"),
    min_size=1,
    max_size=12,
).filter(lambda name: name not in (".", "..") and len(name.encode()) <= 255)
MODES = st.integers(0, 0o7777)
RECIPES = st.lists(
    st.tuples(
        st.binary(min_size=DIGEST_SIZE, max_size=DIGEST_SIZE),
        st.one_of(st.integers(1, 4096), st.just(CHUNK_SIZE), st.integers(1, CHUNK_SIZE)),
    ),
    max_size=4,
).map(tuple)
TARGETS = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1)


@st.composite
def nodes(draw: st.DrawFn) -> list[Node]:
    names = draw(st.lists(NAMES, unique_by=lambda name: name.encode(), max_size=8))
    out: list[Node] = []
    for name in sorted(names, key=str.encode):
        kind = draw(st.integers(0, 2))
        if kind == 0:
            recipe = draw(RECIPES)
            size = sum(length for _, length in recipe)
            mtime = draw(st.integers(-(2**63), 2**63 - 1))
            out.append(FileNode(name, draw(MODES), size, mtime, recipe))
        elif kind == 1:
            digest = draw(st.binary(min_size=DIGEST_SIZE, max_size=DIGEST_SIZE))
            out.append(DirNode(name, draw(MODES), digest))
        else:
            out.append(LinkNode(name, draw(TARGETS)))
    return out


@settings(SEEDED, max_examples=300)
@given(nodes())
def test_valid_trees_round_trip(children: list[Node]) -> None:
    record = encode_tree(children)
    assert decode_tree(record) == children


@settings(SEEDED, max_examples=400)
@given(nodes().filter(bool), st.data())
def test_mutated_valid_records(children: list[Node], data: st.DataObject) -> None:
    # One byte changed, dropped or inserted in a real record: refused, or (rarely) another
    # tree whose canonical encoding is exactly the mutated bytes.
    record = bytearray(encode_tree(children))
    at = data.draw(st.integers(0, len(record) - 1))
    action = data.draw(st.sampled_from(["flip", "drop", "insert"]))
    if action == "flip":
        record[at] ^= data.draw(st.integers(1, 255))
    elif action == "drop":
        del record[at]
    else:
        record.insert(at, data.draw(st.integers(0, 255)))
    mutated = bytes(record)
    decoded = decodes_or_protocol_error(decode_tree, mutated)
    if decoded is not None:
        assert isinstance(decoded, list)
        assert encode_tree(decoded) == mutated


# --- (c) msgpack bombs --------------------------------------------------------------------

FOUR_GIB = b"\xff\xff\xff\xff"
BOMBS = {
    "array32 4 GiB": b"\xdd" + FOUR_GIB,
    "map32 4 GiB": b"\xdf" + FOUR_GIB,
    "bin32 4 GiB": b"\xc6" + FOUR_GIB,
    "str32 4 GiB": b"\xdb" + FOUR_GIB,
    "ext32 4 GiB": b"\xc9" + FOUR_GIB + b"\x01",
    "array of array32": b"\x91\xdd" + FOUR_GIB,
    "100k nested arrays": b"\x91" * 100_000,
    "100k nested arrays, closed": b"\x91" * 100_000 + b"\x00",
    "100k nested maps": b"\x81\xa1k" * 100_000 + b"\x00",
    "tree of 100k nested arrays": b"\x91\x96" + b"\x91" * 100_000,
}


def _peak_bytes(call: Callable[[], object]) -> int:
    """Peak Python allocation during `call` (lists, bytes and str that msgpack builds)."""
    tracemalloc.start()
    try:
        call()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("decode", [codec.unpack, decode_tree], ids=["unpack", "decode_tree"])
@pytest.mark.parametrize("bomb", list(BOMBS.values()), ids=list(BOMBS))
def test_bombs_are_refused_without_allocating(
    bomb: bytes, decode: Callable[[bytes], object]
) -> None:
    def attempt() -> None:
        with pytest.raises(ProtocolError):
            decode(bomb)

    # The call returning at all is the speed check; the peak shows nothing of the declared
    # size (or depth) was built. 8 MB is far above a correct refusal, far below any bomb.
    assert _peak_bytes(attempt) < 8 * 1024 * 1024


def test_nested_large_array_headers_do_not_amplify_memory() -> None:
    bomb = b"\xdd\x00\x0f\x42\x40" * 1000  # 1000 nested arrays, each declaring 1M items

    def attempt() -> None:
        with pytest.raises(ProtocolError):
            codec.unpack(bomb)

    assert _peak_bytes(attempt) < 8 * 1024 * 1024


def test_declared_array_over_the_limit_is_a_limit_error() -> None:
    # A length over the limit is refused from the header, before the elements arrive.
    with pytest.raises(ProtocolError) as info:
        codec.unpack(BOMBS["array32 4 GiB"])
    assert info.value.code is ErrorCode.LIMIT


def test_present_bin_over_the_limit_is_a_limit_error() -> None:
    data = msgpack.packb(b"x" * 32)
    with pytest.raises(ProtocolError) as info:
        codec.unpack(data, Limits(max_bin=16))
    assert info.value.code is ErrorCode.LIMIT
    assert codec.unpack(data, Limits(max_bin=32)) == b"x" * 32


def test_present_str_over_the_limit_is_a_limit_error() -> None:
    data = msgpack.packb("x" * 32)
    with pytest.raises(ProtocolError) as info:
        codec.unpack(data, Limits(max_str=16))
    assert info.value.code is ErrorCode.LIMIT


def test_streaming_unpacker_refuses_a_declared_huge_array() -> None:
    unpacker = codec.new_unpacker()
    unpacker.feed(BOMBS["array32 4 GiB"])
    with pytest.raises(Exception) as info:  # msgpack's own; wrapped below
        next(unpacker)
    assert codec.as_protocol_error(info.value).code is ErrorCode.LIMIT


def test_streaming_unpacker_buffer_is_bounded() -> None:
    # A peer that never finishes a frame cannot make us buffer more than max_buffer.
    unpacker = codec.new_unpacker(max_buffer=1024)
    unpacker.feed(b"\xc6\x00\x01\x00\x00")  # bin32 of 64 KiB, body never sent in full
    with pytest.raises(Exception) as info:
        unpacker.feed(b"x" * 2048)
    assert codec.as_protocol_error(info.value).code is ErrorCode.LIMIT


def test_streaming_unpacker_reports_a_partial_frame_as_truncated() -> None:
    unpacker = codec.new_unpacker()
    unpacker.feed(b"\x92\x01")
    with pytest.raises(Exception) as info:
        unpacker.unpack()
    assert codec.as_protocol_error(info.value).code is ErrorCode.TRUNCATED


@pytest.mark.parametrize(
    "data",
    [b"\xc7\x00\x05", b"\xc7\x00\x7f", b"\x91\xc7\x00\x00"],
    ids=["ext8 len 0", "ext8 len 0 code 127", "ext in array"],
)
def test_extension_types_are_refused_even_when_empty(data: bytes) -> None:
    value = decodes_or_protocol_error(codec.unpack, data)
    assert value is None, f"decoded to {value!r}"


@pytest.mark.parametrize(
    "data",
    [b"\xd4\x05\x00", b"\xd6\xff\x00\x00\x00\x00", b"\xc7\x01\x05\x00"],
    ids=["fixext1", "timestamp32", "ext8 len 1"],
)
def test_non_empty_extension_types_are_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        codec.unpack(data)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\xa1\xff", ErrorCode.MALFORMED),  # invalid UTF-8
        (b"\x81\x01\x02", ErrorCode.MALFORMED),  # int map key
        (b"\x01\x02", ErrorCode.MALFORMED),  # trailing bytes
        (b"", ErrorCode.TRUNCATED),
        (b"\xc1", ErrorCode.MALFORMED),  # the one byte msgpack never uses
    ],
    ids=["bad utf-8", "int key", "trailing", "empty", "0xc1"],
)
def test_strict_decoding(data: bytes, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as info:
        codec.unpack(data)
    assert info.value.code is code
