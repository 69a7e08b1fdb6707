"""Targets the far side refuses before anything is written. Pure.

Two properties of a target depend on where an entry lies, not on its record alone (a
record is shared by id wherever its directory appears), so each record gets an Extent
computed from its children's, bottom-up, in the one pass that already visits every
record of a target (syncd/apply/target.py):

- `climb`: how many levels above the directory a symlink below it reaches. A symlink
  whose target leaves the root lets anything that follows it (a parity check, the
  post-apply upload, a person) read or write outside the served tree, so the far side
  accepts a relative target only if its `..` components all come first and stay below
  the root from the link's own directory. An absolute target, or a `..` after a name
  (`a/../..` climbs from wherever the symlink `a` leads, which a text check cannot know),
  is refused outright. The far operator may allow them (`--allow-outside-symlinks`).
- `longest`: the longest path below the directory. A chain of valid names can exceed
  PATH_MAX, which the far side could create one component at a time but never scan.

A target whose root has a climb above 0 or a longest path above PATH_MAX is refused;
`offender` then finds the first path to blame, descending only where the extents say.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import DEFAULT_LIMITS
from protocol.paths import join
from protocol.tree import DirNode, LinkNode, Node

OUTSIDE = 1 << 30  # the climb of an absolute target or of one with a `..` after a name


@dataclass(frozen=True, slots=True)
class Extent:
    climb: int = 0  # levels above this directory that symlinks below it reach
    longest: int = 0  # bytes of the longest path below it, relative to it


FLAT = Extent()


def link_climb(target: str) -> int:
    """Levels above its own directory that a symlink's target reaches (OUTSIDE when it
    is absolute or climbs after descending)."""
    if target.startswith("/"):
        return OUTSIDE
    ups = 0
    descended = False
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part != "..":
            descended = True
        elif descended:
            return OUTSIDE
        else:
            ups += 1
    return ups


def extent(
    children: Iterable[Node], below: Callable[[DirNode], Extent], *, links: bool = True
) -> Extent:
    """A directory's extent from its children (`below` gives each subdirectory's);
    `links=False` when the far operator allows symlinks that leave the root."""
    climb = longest = 0
    for node in children:
        size = len(node.name.encode())
        if isinstance(node, DirNode):
            sub = below(node)
            climb = max(climb, sub.climb - 1)
            longest = max(longest, size + 1 + sub.longest if sub.longest else size)
        else:
            if links and isinstance(node, LinkNode):
                climb = max(climb, link_climb(node.target))
            longest = max(longest, size)
    return Extent(climb, longest)


def check_root(
    root: Extent,
    children: Callable[[bytes | None], list[Node]],
    below: Callable[[DirNode], Extent],
    *,
    limit: int = DEFAULT_LIMITS.max_path_bytes,
) -> None:
    """Refuse a target whose root's extent breaks a rule, naming the first offender.
    `children(None)` lists the root, `children(tree)` a directory by the id its parent
    names; `below` gives each subdirectory's extent."""
    if root.climb > 0:
        path, target = _link_offender(children, below)
        raise ProtocolError(ErrorCode.BAD_PATH, _link_refusal(path, target))
    if root.longest > limit:
        check_path_length(_longest_path(children, below), limit)


def _link_refusal(path: str, target: str) -> str:
    if link_climb(target) == OUTSIDE and not target.startswith("/"):
        why = "a '..' after a name may climb out of the root through another symlink"
    else:
        why = "it leads outside the root"
    return (
        f"symlink {path!r} -> {target!r}: {why}; nothing was changed (the far side's "
        "operator can allow such links with --allow-outside-symlinks)"
    )


def _link_offender(
    children: Callable[[bytes | None], list[Node]], below: Callable[[DirNode], Extent]
) -> tuple[str, str]:
    tree: bytes | None = None
    prefix, depth = "", 0
    while True:
        descend: DirNode | None = None
        for node in children(tree):
            if isinstance(node, LinkNode) and link_climb(node.target) > depth:
                return join(prefix, node.name), node.target
            if descend is None and isinstance(node, DirNode) and below(node).climb > depth + 1:
                descend = node
        if descend is None:
            raise AssertionError("an extent names a symlink that is not there")
        tree, prefix, depth = descend.tree, join(prefix, descend.name), depth + 1


def _longest_path(
    children: Callable[[bytes | None], list[Node]], below: Callable[[DirNode], Extent]
) -> str:
    tree: bytes | None = None
    path = ""
    while True:
        best: tuple[int, Node] | None = None
        for node in children(tree):
            size = len(node.name.encode())
            if isinstance(node, DirNode) and below(node).longest:
                size += 1 + below(node).longest
            if best is None or size > best[0]:
                best = (size, node)
        if best is None:
            return path
        node = best[1]
        path = join(path, node.name)
        if not isinstance(node, DirNode) or not below(node).longest:
            return path
        tree = node.tree


def check_path_length(path: str, limit: int = DEFAULT_LIMITS.max_path_bytes) -> None:
    """Refuse a target path longer than PATH_MAX. Each name was checked where its tree was
    decoded, but trees are shared by id, so only a whole target shows whole paths: a chain
    of valid names can still exceed PATH_MAX, which the far side could create (one
    component at a time) but never scan, leaving an apply that can neither finish nor be
    undone."""
    # A character is at most 4 UTF-8 bytes: short paths pass without being encoded.
    if len(path) * 4 > limit and len(path.encode()) > limit:
        raise ProtocolError(
            ErrorCode.LIMIT,
            f"path of {len(path.encode())} bytes is longer than the limit of {limit} bytes: "
            f"{path[:64]!r}...",
        )
