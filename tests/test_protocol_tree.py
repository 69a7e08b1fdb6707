"""Tree records (protocol/tree.py): the canonical format that snapshot ids are made of.

Two machines must produce the same bytes, and so the same id, for the same directory; and
a decoder must accept exactly those bytes. The golden test pins the format itself: if it
fails, every snapshot id in the field changes, which needs a new TREE_CONTEXT and a note
in SPEC.md, not an updated literal.
"""

from __future__ import annotations

import struct

import blake3
import msgpack
import pytest

from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import CHUNK_SIZE, DEFAULT_LIMITS, Limits
from protocol.tree import (
    KIND_DIR,
    KIND_FILE,
    KIND_SYMLINK,
    MAX_MTIME,
    MIN_MTIME,
    DirNode,
    FileNode,
    LinkNode,
    Node,
    decode_recipe,
    decode_tree,
    encode_tree,
    subdirs,
    tree_id,
)

D1 = b"\x11" * 32
D2 = b"\x22" * 32
TREE = bytes(range(32))


def pack(obj: object) -> bytes:
    """msgpack's own encoder, independent of protocol.codec, to build test input."""
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def file_item(
    name: str = "f", mode: object = 0o644, size: object = 5, mtime: object = 7
) -> list[object]:
    return [name, KIND_FILE, mode, size, mtime, [[D1, 5]]]


def code_of(record: bytes, limits: Limits | None = None) -> ErrorCode:
    with pytest.raises(ProtocolError) as info:
        decode_tree(record, limits or DEFAULT_LIMITS)
    return info.value.code


# --- round trip ---------------------------------------------------------------------------

ROUND_TRIP: list[list[Node]] = [
    [],  # an empty directory is a real, kept tree
    [FileNode("empty", 0o600, 0, 0, ())],
    [FileNode("one", 0o644, 5, 1_700_000_000_000_000_000, ((D1, 5),))],
    [
        FileNode(
            "big",
            0o755,
            2 * CHUNK_SIZE + 1,
            -1,  # before 1970: mtimes are signed
            ((D1, CHUNK_SIZE), (D2, CHUNK_SIZE), (D1, 1)),  # a repeated piece is fine
        )
    ],
    [
        FileNode("max", 0o7777, 1, MAX_MTIME, ((D2, 1),)),  # the extremes of every field
        FileNode("min", 0, 1, MIN_MTIME, ((D1, 1),)),
    ],
    [DirNode("d", 0o755, TREE)],
    [LinkNode("l", "../some/where \u00e9")],
    [LinkNode("l", "x" * 4096)],  # a target of exactly the limit
    [
        DirNode("A", 0o700, TREE),
        FileNode("a", 0o644, 5, 7, ((D1, 5),)),
        LinkNode("a.b", "a"),
        DirNode("a0", 0o755, D2),
        FileNode("\u00e9", 0o644, 5, 7, ((D1, 5),)),
    ],
]


@pytest.mark.parametrize("children", ROUND_TRIP)
def test_encode_then_decode_gives_the_same_nodes(children: list[Node]) -> None:
    record = encode_tree(children)
    assert decode_tree(record) == children
    # Decoding must also work on a view into a larger buffer (a mapped snapshot file).
    assert decode_tree(memoryview(b"xx" + record)[2:]) == children
    assert encode_tree(decode_tree(record)) == record


def test_subdirs_lists_only_directories() -> None:
    children = ROUND_TRIP[-1]
    assert [node.name for node in subdirs(children)] == ["A", "a0"]


# --- golden -------------------------------------------------------------------------------

GOLDEN_NODES: list[Node] = [
    DirNode("dir", 0o755, bytes(range(32))),
    FileNode("file.txt", 0o644, 5, 1_700_000_000_123_456_789, ((b"\xab" * 32, 5),)),
    LinkNode("link", "file.txt"),
]
# Computed once and pasted: these bytes and this id define the v1 format.
GOLDEN_RECORD = bytes.fromhex(
    "9394a364697201cd01edc420000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d"
    "1e1f96a866696c652e74787400cd01a405cf17979cfe3d85cd159192c420abababababababababababab"
    "abababababababababababababababababababab0593a46c696e6b02a866696c652e747874"
)
GOLDEN_ID = "8e21c08f5a150bd22e7cb1a5f6d85e87573f0ec63e4ae7510d73e50e58a66f5a"


def test_golden_encoding_is_pinned() -> None:
    assert encode_tree(GOLDEN_NODES) == GOLDEN_RECORD
    assert decode_tree(GOLDEN_RECORD) == GOLDEN_NODES


def test_golden_tree_id_is_pinned() -> None:
    assert tree_id(GOLDEN_RECORD).hex() == GOLDEN_ID


def test_tree_id_is_domain_separated_from_blob_digests() -> None:
    # A tree record stored as file content must not be mistaken for the tree itself.
    assert tree_id(GOLDEN_RECORD) != blake3.blake3(GOLDEN_RECORD).digest()
    assert len(tree_id(GOLDEN_RECORD)) == 32


def test_any_change_changes_the_id() -> None:
    changed = [GOLDEN_NODES[0], GOLDEN_NODES[1], LinkNode("link", "file.txT")]
    assert tree_id(encode_tree(changed)) != tree_id(GOLDEN_RECORD)


# --- encoder refuses what the decoder would refuse ----------------------------------------


@pytest.mark.parametrize(
    "children",
    [
        [LinkNode("b", "x"), LinkNode("a", "x")],
        [LinkNode("a", "x"), LinkNode("a", "y")],
        [LinkNode("a", "x"), DirNode("a", 0o755, TREE)],  # same name, different kinds
        [LinkNode("\u00e9", "x"), LinkNode("z", "x")],  # 'é' is 0xc3 0xa9 > 'z'
    ],
)
def test_encode_refuses_unsorted_or_duplicate_children(children: list[Node]) -> None:
    with pytest.raises(ProtocolError) as info:
        encode_tree(children)
    assert info.value.code is ErrorCode.NOT_CANONICAL


# --- decoder rejections -------------------------------------------------------------------


def hand_item(*parts: bytes) -> bytes:
    """A one-child record from pre-encoded fields, to write non-canonical headers."""
    return b"\x91" + bytes([0x90 + len(parts)]) + b"".join(parts)


NAME_A = pack("a")
DIGEST = pack(TREE)

DIR_A = pack([["a", 1, 0o755, TREE]])

# Valid trees in a non-canonical encoding, each with its canonical twin.
NON_CANONICAL: list[tuple[str, bytes, bytes]] = [
    (
        "uint32 mode",
        hand_item(NAME_A, b"\x01", b"\xce" + struct.pack(">I", 0o755), DIGEST),
        DIR_A,
    ),
    ("uint8 kind", hand_item(NAME_A, b"\xcc\x01", pack(0o755), DIGEST), DIR_A),
    ("int8 kind", hand_item(NAME_A, b"\xd0\x01", pack(0o755), DIGEST), DIR_A),
    ("str8 name", hand_item(b"\xd9\x01a", b"\x01", pack(0o755), DIGEST), DIR_A),
    ("bin16 digest", hand_item(NAME_A, b"\x01", pack(0o755), b"\xc5\x00\x20" + TREE), DIR_A),
    ("array16 record", b"\xdc\x00\x01" + pack(["a", 1, 0o755, TREE]), DIR_A),
    (
        "uint64 size",
        hand_item(
            pack("f"),
            b"\x00",
            pack(0o644),
            b"\xcf" + struct.pack(">Q", 5),
            pack(7),
            pack([[D1, 5]]),
        ),
        pack([file_item()]),
    ),
]


@pytest.mark.parametrize(
    ("record", "twin"), [(r, t) for _, r, t in NON_CANONICAL], ids=[n for n, _, _ in NON_CANONICAL]
)
def test_non_canonical_inputs_hold_valid_trees(record: bytes, twin: bytes) -> None:
    # Guards the table: msgpack reads both alike and the twin decodes, so only the
    # encoding check can be what refuses the hand-built bytes.
    assert record != twin
    assert msgpack.unpackb(record) == msgpack.unpackb(twin)
    assert encode_tree(decode_tree(twin)) == twin


REJECTED: list[tuple[str, bytes, ErrorCode]] = [
    # order and uniqueness
    ("unsorted", pack([["b", 2, "x"], ["a", 2, "x"]]), ErrorCode.NOT_CANONICAL),
    ("duplicate", pack([["a", 2, "x"], ["a", 2, "y"]]), ErrorCode.NOT_CANONICAL),
    ("dup dir+link", pack([["a", 1, 0o755, TREE], ["a", 2, "y"]]), ErrorCode.NOT_CANONICAL),
    *[(name, record, ErrorCode.NOT_CANONICAL) for name, record, _ in NON_CANONICAL],
    # wrong shapes
    ("not an array", pack({"a": 1}), ErrorCode.MALFORMED),
    ("an int", pack(5), ErrorCode.MALFORMED),
    ("child not array", pack(["a"]), ErrorCode.MALFORMED),
    ("child of 2", pack([["a", 2]]), ErrorCode.MALFORMED),
    ("file of 5", pack([["f", 0, 0o644, 5, 7]]), ErrorCode.MALFORMED),
    ("file of 7", pack([[*file_item(), 0]]), ErrorCode.MALFORMED),
    ("dir of 3", pack([["d", 1, 0o755]]), ErrorCode.MALFORMED),
    ("dir of 5", pack([["d", 1, 0o755, TREE, 0]]), ErrorCode.MALFORMED),
    ("link of 4", pack([["l", 2, "x", 0]]), ErrorCode.MALFORMED),
    ("unknown kind 3", pack([["a", 3, "x"]]), ErrorCode.MALFORMED),
    ("kind -1", pack([["a", -1, "x"]]), ErrorCode.MALFORMED),
    ("kind as str", pack([["a", "2", "x"]]), ErrorCode.MALFORMED),
    ("recipe not array", pack([["f", 0, 0o644, 5, 7, D1]]), ErrorCode.MALFORMED),
    ("piece of 3", pack([["f", 0, 0o644, 5, 7, [[D1, 5, 0]]]]), ErrorCode.MALFORMED),
    ("piece not array", pack([["f", 0, 0o644, 5, 7, [D1]]]), ErrorCode.MALFORMED),
    # names
    ("name with slash", pack([["a/b", 2, "x"]]), ErrorCode.BAD_PATH),
    ("name dotdot", pack([["..", 2, "x"]]), ErrorCode.BAD_PATH),
    ("name empty", pack([["", 2, "x"]]), ErrorCode.BAD_PATH),
    ("name as bin", pack([[b"a", 2, "x"]]), ErrorCode.MALFORMED),
    ("name too long", pack([["x" * 256, 2, "x"]]), ErrorCode.LIMIT),
    # digests
    ("dir digest 31", pack([["d", 1, 0o755, TREE[:31]]]), ErrorCode.MALFORMED),
    ("dir digest 33", pack([["d", 1, 0o755, TREE + b"\x00"]]), ErrorCode.MALFORMED),
    ("dir digest str", pack([["d", 1, 0o755, "x" * 32]]), ErrorCode.MALFORMED),
    ("piece digest 31", pack([["f", 0, 0o644, 5, 7, [[D1[:31], 5]]]]), ErrorCode.MALFORMED),
    # piece lengths and sizes
    ("piece length 0", pack([["f", 0, 0o644, 0, 7, [[D1, 0]]]]), ErrorCode.MALFORMED),
    (
        "piece over chunk",
        pack([["f", 0, 0o644, CHUNK_SIZE + 1, 7, [[D1, CHUNK_SIZE + 1]]]]),
        ErrorCode.MALFORMED,
    ),
    ("piece length -1", pack([["f", 0, 0o644, -1, 7, [[D1, -1]]]]), ErrorCode.MALFORMED),
    ("size over pieces", pack([file_item(size=6)]), ErrorCode.MALFORMED),
    ("size under pieces", pack([file_item(size=4)]), ErrorCode.MALFORMED),
    ("size with no pieces", pack([["f", 0, 0o644, 1, 7, []]]), ErrorCode.MALFORMED),
    ("size 2**63", pack([file_item(size=2**63)]), ErrorCode.MALFORMED),
    # modes
    ("file mode 0o10000", pack([file_item(mode=0o10000)]), ErrorCode.MALFORMED),
    ("dir mode 0o10000", pack([["d", 1, 0o10000, TREE]]), ErrorCode.MALFORMED),
    ("mode -1", pack([file_item(mode=-1)]), ErrorCode.MALFORMED),
    ("mode as str", pack([file_item(mode="644")]), ErrorCode.MALFORMED),
    # bools are not ints, although Python says True == 1
    ("mode True", pack([["d", 1, True, TREE]]), ErrorCode.MALFORMED),
    ("size True", pack([["f", 0, 0o644, True, 7, [[D1, 1]]]]), ErrorCode.MALFORMED),
    ("mtime False", pack([file_item(mtime=False)]), ErrorCode.MALFORMED),
    ("piece length True", pack([["f", 0, 0o644, 1, 7, [[D1, True]]]]), ErrorCode.MALFORMED),
    # mtimes
    ("mtime 2**63", pack([file_item(mtime=2**63)]), ErrorCode.MALFORMED),
    ("mtime float", pack([file_item(mtime=7.0)]), ErrorCode.MALFORMED),
    ("mtime None", pack([file_item(mtime=None)]), ErrorCode.MALFORMED),
    # symlink targets
    ("target empty", pack([["l", 2, ""]]), ErrorCode.MALFORMED),
    ("target NUL", pack([["l", 2, "a\x00b"]]), ErrorCode.MALFORMED),
    ("target bin", pack([["l", 2, b"x"]]), ErrorCode.MALFORMED),
    ("target 4097", pack([["l", 2, "x" * 4097]]), ErrorCode.LIMIT),
    ("target 4097 bytes", pack([["l", 2, "\u00e9" * 2048 + "x"]]), ErrorCode.LIMIT),
    # framing
    ("trailing bytes", pack([["l", 2, "x"]]) + b"\x00", ErrorCode.MALFORMED),
    ("second record", pack([["l", 2, "x"]]) * 2, ErrorCode.MALFORMED),
    ("truncated", pack([["l", 2, "x"]])[:-1], ErrorCode.TRUNCATED),
    ("truncated header", b"\xdc\x00", ErrorCode.TRUNCATED),
    ("empty input", b"", ErrorCode.TRUNCATED),
    ("bad utf-8 name", b"\x91\x93\xa1\xff\x02\xa1x", ErrorCode.MALFORMED),
]


@pytest.mark.parametrize(
    ("record", "code"), [(r, c) for _, r, c in REJECTED], ids=[n for n, _, _ in REJECTED]
)
def test_decode_rejects_with_the_right_code(record: bytes, code: ErrorCode) -> None:
    assert code_of(record) is code


@pytest.mark.parametrize(
    "record",
    [
        pack([["d", True, 0o755, TREE]]),
        pack([["f", False, 0o644, 5, 7, [[D1, 5]]]]),
        pack([["d", 1.0, 0o755, TREE]]),
    ],
    ids=["kind True", "kind False", "kind 1.0"],
)
def test_decode_rejects_non_int_kind_as_malformed(record: bytes) -> None:
    assert code_of(record) is ErrorCode.MALFORMED


def test_piece_of_exactly_chunk_size_is_accepted() -> None:
    record = pack([["f", 0, 0o644, CHUNK_SIZE, 7, [[D1, CHUNK_SIZE]]]])
    assert decode_tree(record) == [FileNode("f", 0o644, CHUNK_SIZE, 7, ((D1, CHUNK_SIZE),))]


def test_too_many_children_for_the_limits() -> None:
    record = pack([["a", 2, "x"], ["b", 2, "x"], ["c", 2, "x"]])
    assert len(decode_tree(record, Limits(max_tree_children=3))) == 3
    assert code_of(record, Limits(max_tree_children=2)) is ErrorCode.LIMIT
    # The msgpack array limit refuses it before any child is built.
    assert code_of(record, Limits(max_array=2)) is ErrorCode.LIMIT


def test_too_many_pieces_for_the_limits() -> None:
    record = pack([["f", 0, 0o644, 3, 7, [[D1, 1], [D2, 1], [D1, 1]]]])
    assert len(decode_tree(record, Limits(max_recipe_pieces=3))) == 1
    assert code_of(record, Limits(max_recipe_pieces=2)) is ErrorCode.LIMIT


def test_names_and_targets_follow_the_given_limits() -> None:
    small = Limits(max_name_bytes=3, max_symlink_bytes=3)
    assert code_of(pack([["abcd", 2, "x"]]), small) is ErrorCode.LIMIT
    assert code_of(pack([["a", 2, "xyzw"]]), small) is ErrorCode.LIMIT
    assert decode_tree(pack([["abc", 2, "xyz"]]), small) == [LinkNode("abc", "xyz")]


def test_decode_recipe_names_its_owner_in_errors() -> None:
    assert decode_recipe([[D1, 1]], what="x") == ((D1, 1),)
    with pytest.raises(ProtocolError) as info:
        decode_recipe([[D1, 0]], what="file 'blob.bin'")
    assert "blob.bin" in str(info.value)


def test_kinds_are_the_documented_numbers() -> None:
    # The numbers are part of the format (module docstring, SPEC.md).
    assert (KIND_FILE, KIND_DIR, KIND_SYMLINK) == (0, 1, 2)
