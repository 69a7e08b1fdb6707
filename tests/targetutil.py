"""Targets built by hand for far-side tests: any modes, times, cuts and symlinks, as a
hostile or odd source could offer them (the encoders check names, nothing else)."""

from __future__ import annotations

from dataclasses import dataclass, field

import blake3

from protocol.tree import DirNode, FileNode, LinkNode, Node, encode_tree, tree_id


@dataclass(frozen=True)
class F:
    data: bytes = b"hello, far side"
    mode: int = 0o644
    mtime_ns: int = 0
    cuts: tuple[int, ...] = ()  # piece lengths; () for one piece


@dataclass(frozen=True)
class D:
    mode: int = 0o755


@dataclass(frozen=True)
class L:
    target: str


Spec = dict[str, F | D | L]  # path -> entry; parent directories default to D()


@dataclass
class Target:
    root: bytes
    trees: dict[bytes, bytes] = field(default_factory=dict)
    blobs: dict[bytes, bytes] = field(default_factory=dict)


def build(spec: Spec) -> Target:
    """The records and blobs of the tree `spec` describes."""
    target = Target(b"")
    target.root = _tree("", _with_parents(spec), target)
    return target


def _with_parents(spec: Spec) -> Spec:
    full: Spec = {}
    for path in spec:
        parts = path.split("/")
        for i in range(1, len(parts)):
            full.setdefault("/".join(parts[:i]), D())
    full.update(spec)
    return full


def _tree(prefix: str, spec: Spec, target: Target) -> bytes:
    below = {p[len(prefix) :].split("/")[0] for p in spec if p.startswith(prefix)}
    names = sorted(below, key=str.encode)
    nodes: list[Node] = []
    for name in names:
        path = f"{prefix}{name}"
        entry = spec[path]
        if isinstance(entry, D):
            nodes.append(DirNode(name, entry.mode, _tree(path + "/", spec, target)))
        elif isinstance(entry, L):
            nodes.append(LinkNode(name, entry.target))
        else:
            nodes.append(_file(name, entry, target))
    record = encode_tree(nodes)
    key = tree_id(record)
    target.trees[key] = record
    return key


def _file(name: str, entry: F, target: Target) -> FileNode:
    cuts = entry.cuts or ((len(entry.data),) if entry.data else ())
    recipe = []
    at = 0
    for length in cuts:
        piece = entry.data[at : at + length]
        digest = blake3.blake3(piece).digest()
        target.blobs[digest] = piece
        recipe.append((digest, length))
        at += length
    return FileNode(name, entry.mode, len(entry.data), entry.mtime_ns, tuple(recipe))
