"""The far side's descent, with table lookups: what it asks for and what it wants."""

from __future__ import annotations

import blake3

from protocol.tree import DirNode, FileNode, Node, encode_tree, tree_id
from syncd.plan.descent import Descent


def piece(text: str) -> tuple[bytes, int]:
    return blake3.blake3(text.encode()).digest(), len(text)


def file(name: str, *texts: str) -> FileNode:
    recipe = tuple(piece(t) for t in texts)
    return FileNode(name, 0o644, sum(n for _, n in recipe), 0, recipe)


class Trees:
    def __init__(self) -> None:
        self.table: dict[bytes, list[Node]] = {}

    def add(self, *children: Node) -> bytes:
        key = tree_id(encode_tree(list(children)))
        self.table[key] = list(children)
        return key


def run(descent: Descent, source: Trees) -> list[bytes]:
    """Answer every request from `source`; return the ids asked for, in order."""
    asked: list[bytes] = []
    while True:
        ids = descent.next_requests(2)
        if not ids:
            return asked
        asked += ids
        for key in ids:
            descent.received(source.table[key])


def test_only_trees_the_far_side_lacks_are_asked_for() -> None:
    src = Trees()
    same = src.add(file("a", "unchanged"))
    new = src.add(file("b", "new bytes"))
    root = src.add(DirNode("new", 0o755, new), DirNode("same", 0o755, same))
    live = {same}
    descent = Descent(
        root, live_tree=live.__contains__, staged=lambda _: None, have_blob=lambda _: False
    )
    assert run(descent, src) == [root, new]
    assert list(descent.wanted) == [piece("new bytes")[0]]
    assert descent.settled


def test_blobs_present_anywhere_or_already_wanted_are_not_wanted() -> None:
    src = Trees()
    root = src.add(file("a", "x", "y", "x"), file("b", "y", "z"))
    have = {piece("z")[0]}
    descent = Descent(
        root, live_tree=lambda _: False, staged=lambda _: None, have_blob=have.__contains__
    )
    run(descent, src)
    assert descent.wanted == dict([piece("x"), piece("y")])
    assert descent.wanted_bytes == 2


def test_staged_trees_are_not_asked_again_but_their_files_are_checked() -> None:
    src = Trees()
    sub = src.add(file("f", "still missing"))
    root = src.add(DirNode("d", 0o755, sub))
    staged = {root: src.table[root], sub: src.table[sub]}
    descent = Descent(root, live_tree=lambda _: False, staged=staged.get, have_blob=lambda _: False)
    assert run(descent, src) == []
    assert descent.trees_from_staging == 2
    assert list(descent.wanted) == [piece("still missing")[0]]


def test_equal_subtrees_are_visited_once() -> None:
    src = Trees()
    shared = src.add(file("same", "content"))
    root = src.add(DirNode("a", 0o755, shared), DirNode("b", 0o755, shared))
    descent = Descent(
        root, live_tree=lambda _: False, staged=lambda _: None, have_blob=lambda _: False
    )
    assert run(descent, src) == [root, shared]
