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
from protocol.fields import array, digest, fixed, uint
from protocol.limits import CHUNK_SIZE, DEFAULT_LIMITS, Limits
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
        tree = digest(item[3], f"directory {name!r} tree id")
        return DirNode(name, _mode(item[2], name), tree)
    if kind == KIND_SYMLINK and len(item) == 3:
        return LinkNode(name, _target(item[2], name, limits))
    raise ProtocolError(ErrorCode.MALFORMED, f"tree child {name!r}: unknown kind or arity")


def _decode_file(name: str, item: list[object], limits: Limits) -> FileNode:
    mode = _mode(item[2], name)
    size = uint(item[3], f"file {name!r} size")
    mtime = item[4]
    if type(mtime) is not int or not MIN_MTIME <= mtime <= MAX_MTIME:
        raise ProtocolError(ErrorCode.MALFORMED, f"file {name!r}: bad mtime")
    recipe = decode_recipe(item[5], limits, what=f"file {name!r}")
    if sum(length for _, length in recipe) != size:
        raise ProtocolError(ErrorCode.MALFORMED, f"file {name!r}: size differs from its pieces")
    return FileNode(name, mode, size, mtime, recipe)


def decode_recipe(value: object, limits: Limits = DEFAULT_LIMITS, *, what: str) -> Recipe:
    items = array(value, f"{what} recipe")
    if len(items) > limits.max_recipe_pieces:
        raise ProtocolError(ErrorCode.LIMIT, f"{what}: too many pieces")
    pieces: list[Piece] = []
    for piece in items:
        key, length = fixed(piece, f"{what} piece", 2)
        pieces.append(
            (digest(key, f"{what} piece"), uint(length, f"{what} piece length", 1, CHUNK_SIZE))
        )
    return tuple(pieces)


def _mode(value: object, name: str) -> int:
    return uint(value, f"{name!r} mode", high=MAX_MODE)


def _target(value: object, name: str, limits: Limits) -> str:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ProtocolError(ErrorCode.MALFORMED, f"symlink {name!r}: bad target")
    if len(value.encode()) > limits.max_symlink_bytes:
        raise ProtocolError(ErrorCode.LIMIT, f"symlink {name!r}: target too long")
    return value


def subdirs(children: Iterable[Node]) -> list[DirNode]:
    return [node for node in children if isinstance(node, DirNode)]
