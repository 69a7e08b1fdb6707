"""What differs between two snapshots, and which blobs one lacks. Pure functions.

Both take lookups as arguments (tree id -> children), so they run the same against
snapshot files, a peer over the wire, or tables in a test. The descent enters a
directory only where the two tree ids differ: cost grows with the difference, not
with the tree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from protocol.paths import join
from protocol.tree import DirNode, FileNode, LinkNode, Node

TreeLookup = Callable[[bytes], list[Node]]


class Side(StrEnum):
    ONLY_A = "only_in_a"
    ONLY_B = "only_in_b"
    BOTH = "differs"


@dataclass(frozen=True, slots=True)
class Change:
    path: str
    side: Side
    kind: str  # kind in A when present there, else in B: "file", "dir" or "symlink"
    what: tuple[str, ...] = ()  # for Side.BOTH: "kind", "content", "mode", "mtime", "target"
    entries: int = 0  # for a directory on one side only: entries below it

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {"path": self.path, "change": self.side.value, "kind": self.kind}
        if self.what:
            out["what"] = list(self.what)
        if self.side is not Side.BOTH and self.kind == "dir":
            out["entries"] = self.entries
        return out


def kind_of(node: Node) -> str:
    if isinstance(node, FileNode):
        return "file"
    return "dir" if isinstance(node, DirNode) else "symlink"


def diff_trees(
    tree_a: TreeLookup, root_a: bytes, tree_b: TreeLookup, root_b: bytes, prefix: str = ""
) -> Iterator[Change]:
    """Changes that turn B into A, in path order; nothing at all if the ids are equal."""
    if root_a == root_b:
        return
    for a, b in merge_children(tree_a(root_a), tree_b(root_b)):
        path = join(prefix, (a or b).name)  # type: ignore[union-attr]
        if b is None:
            assert a is not None
            yield _one_side(path, a, Side.ONLY_A, tree_a)
        elif a is None:
            yield _one_side(path, b, Side.ONLY_B, tree_b)
        elif isinstance(a, DirNode) and isinstance(b, DirNode):
            if a.mode != b.mode:
                yield Change(path, Side.BOTH, "dir", ("mode",))
            yield from diff_trees(tree_a, a.tree, tree_b, b.tree, path)
        else:
            what = _differences(a, b)
            if what:
                yield Change(path, Side.BOTH, kind_of(a), what)


def merge_children(a: list[Node], b: list[Node]) -> Iterator[tuple[Node | None, Node | None]]:
    """Pair two name-sorted child lists by name, in name order (a merge join)."""
    i = j = 0
    while i < len(a) or j < len(b):
        name_a = a[i].name.encode() if i < len(a) else None
        name_b = b[j].name.encode() if j < len(b) else None
        if name_b is None or (name_a is not None and name_a < name_b):
            yield a[i], None
            i += 1
        elif name_a is None or name_b < name_a:
            yield None, b[j]
            j += 1
        else:
            yield a[i], b[j]
            i += 1
            j += 1


def _one_side(path: str, node: Node, side: Side, lookup: TreeLookup) -> Change:
    entries = count_entries(lookup, node.tree) if isinstance(node, DirNode) else 0
    return Change(path, side, kind_of(node), entries=entries)


def _differences(a: Node, b: Node) -> tuple[str, ...]:
    if type(a) is not type(b):
        return ("kind",)
    if isinstance(a, FileNode) and isinstance(b, FileNode):
        checks = (("content", a.recipe != b.recipe), ("mode", a.mode != b.mode))
        return tuple(
            name for name, differs in (*checks, ("mtime", a.mtime_ns != b.mtime_ns)) if differs
        )
    if isinstance(a, LinkNode) and isinstance(b, LinkNode):
        return ("target",) if a.target != b.target else ()
    return ()


def count_entries(lookup: TreeLookup, root: bytes) -> int:
    total = 0
    stack = [root]
    while stack:
        children = lookup(stack.pop())
        total += len(children)
        stack.extend(node.tree for node in children if isinstance(node, DirNode))
    return total


@dataclass(frozen=True, slots=True)
class Missing:
    blobs: int
    bytes: int


def missing_blobs(wanted: Iterable[FileNode], have: Callable[[bytes], bool]) -> Missing:
    """Distinct blobs of `wanted` files for which `have(digest)` is false."""
    seen: set[bytes] = set()
    count = size = 0
    for node in wanted:
        for digest, length in node.recipe:
            if digest in seen or have(digest):
                continue
            seen.add(digest)
            count += 1
            size += length
    return Missing(count, size)
