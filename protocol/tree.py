"""Tree records: the canonical encoding of one directory's children (SPEC.md, Trees).

A snapshot is a Merkle tree of these records. A record is a msgpack array of children,
strictly sorted by the UTF-8 bytes of their names:

    file     [name, 0, mode, size, mtime_ns, [[digest, length], ...]]
    dir      [name, 1, mode, tree_id]
    symlink  [name, 2, target]

A tree id is BLAKE3 in derive-key mode over the record's bytes, so a tree id can never
equal a blob digest of the same bytes. The snapshot id is the root record's tree id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import blake3

from protocol.codec import pack, unpack
from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import CHUNK_SIZE, DEFAULT_LIMITS, DIGEST_SIZE, Limits
from protocol.paths import check_name

TREE_CONTEXT = "syncd 2026-11 tree record v1"

KIND_FILE = 0
KIND_DIR = 1
KIND_SYMLINK = 2

MAX_MODE = 0o7777
MIN_MTIME = -(2**63)
MAX_MTIME = 2**63 - 1

# One piece of a file: (BLAKE3 digest of the bytes, number of bytes).
Piece = tuple[bytes, int]
Recipe = tuple[Piece, ...]


@dataclass(frozen=True, slots=True)
class FileNode:
    name: str
    mode: int
    size: int
    mtime_ns: int
    recipe: Recipe


@dataclass(frozen=True, slots=True)
class DirNode:
    name: str
    mode: int
    tree: bytes  # tree id of the directory's own record


@dataclass(frozen=True, slots=True)
class LinkNode:
    name: str
    target: str


Node = FileNode | DirNode | LinkNode


def tree_id(record: bytes) -> bytes:
    return blake3.blake3(record, derive_key_context=TREE_CONTEXT).digest()


def encode_tree(children: Sequence[Node]) -> bytes:
    """Canonical bytes of a directory's children; they must already be sorted by name."""
    previous = b""
    items: list[list[object]] = []
    for index, node in enumerate(children):
        key = node.name.encode()
        if index and key <= previous:
            raise ProtocolError(ErrorCode.NOT_CANONICAL, f"children not sorted at {node.name!r}")
        previous = key
        items.append(_node_item(node))
    return pack(items)


def _node_item(node: Node) -> list[object]:
    if isinstance(node, FileNode):
        return [node.name, KIND_FILE, node.mode, node.size, node.mtime_ns, node.recipe]
    if isinstance(node, DirNode):
        return [node.name, KIND_DIR, node.mode, node.tree]
    return [node.name, KIND_SYMLINK, node.target]


def decode_tree(record: bytes | memoryview, limits: Limits = DEFAULT_LIMITS) -> list[Node]:
    """Decode and validate one tree record; the inverse of `encode_tree`."""
    items = unpack(record, limits)
    if not isinstance(items, list):
        raise ProtocolError(ErrorCode.MALFORMED, "tree record is not an array")
    if len(items) > limits.max_tree_children:
        raise ProtocolError(ErrorCode.LIMIT, "tree record has too many children")
    nodes = [_decode_node(item, limits) for item in items]
    if encode_tree(nodes) != bytes(record):
        raise ProtocolError(ErrorCode.NOT_CANONICAL, "tree record is not canonically encoded")
    return nodes


def _decode_node(item: object, limits: Limits) -> Node:
    if not isinstance(item, list) or len(item) < 3:
        raise ProtocolError(ErrorCode.MALFORMED, "tree child is not an array of 3 or more")
    name = check_name(item[0], limits)
    kind = item[1]
    if type(kind) is not int:
        raise ProtocolError(ErrorCode.MALFORMED, f"tree child {name!r}: kind is not an integer")
    if kind == KIND_FILE and len(item) == 6:
        return _decode_file(name, item, limits)
    if kind == KIND_DIR and len(item) == 4:
        tree = _digest(item[3], name)
        return DirNode(name, _mode(item[2], name), tree)
    if kind == KIND_SYMLINK and len(item) == 3:
        return LinkNode(name, _target(item[2], name, limits))
    raise ProtocolError(ErrorCode.MALFORMED, f"tree child {name!r}: unknown kind or arity")


def _decode_file(name: str, item: list[object], limits: Limits) -> FileNode:
    mode = _mode(item[2], name)
    size = _uint(item[3], name, "size", 2**63 - 1)
    mtime = item[4]
    if not isinstance(mtime, int) or isinstance(mtime, bool) or not MIN_MTIME <= mtime <= MAX_MTIME:
        raise ProtocolError(ErrorCode.MALFORMED, f"file {name!r}: bad mtime")
    recipe = decode_recipe(item[5], limits, what=f"file {name!r}")
    if sum(length for _, length in recipe) != size:
        raise ProtocolError(ErrorCode.MALFORMED, f"file {name!r}: size differs from its pieces")
    return FileNode(name, mode, size, mtime, recipe)


def decode_recipe(value: object, limits: Limits = DEFAULT_LIMITS, *, what: str) -> Recipe:
    if not isinstance(value, list):
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: recipe is not an array")
    if len(value) > limits.max_recipe_pieces:
        raise ProtocolError(ErrorCode.LIMIT, f"{what}: too many pieces")
    pieces: list[Piece] = []
    for piece in value:
        if not isinstance(piece, list) or len(piece) != 2:
            raise ProtocolError(ErrorCode.MALFORMED, f"{what}: piece is not [digest, length]")
        digest = _digest(piece[0], what)
        length = _uint(piece[1], what, "piece length", CHUNK_SIZE)
        if length == 0:
            raise ProtocolError(ErrorCode.MALFORMED, f"{what}: empty piece")
        pieces.append((digest, length))
    return tuple(pieces)


def _digest(value: object, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != DIGEST_SIZE:
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: digest is not {DIGEST_SIZE} bytes")
    return value


def _uint(value: object, what: str, field: str, maximum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: bad {field}")
    return value


def _mode(value: object, name: str) -> int:
    return _uint(value, f"{name!r}", "mode", MAX_MODE)


def _target(value: object, name: str, limits: Limits) -> str:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ProtocolError(ErrorCode.MALFORMED, f"symlink {name!r}: bad target")
    if len(value.encode()) > limits.max_symlink_bytes:
        raise ProtocolError(ErrorCode.LIMIT, f"symlink {name!r}: target too long")
    return value


def subdirs(children: Iterable[Node]) -> list[DirNode]:
    return [node for node in children if isinstance(node, DirNode)]
