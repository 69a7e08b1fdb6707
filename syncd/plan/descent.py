"""The far side's descent: which trees to ask for, and which blobs it lacks. Pure.

Start from the offered root. A tree the far side holds live (in its fresh snapshot) is
already in place, and so is everything below it: skipped. Any other tree is read from
staging (kept by an interrupted session) or asked for over the wire; its files' pieces
that the far side has nowhere (not live, not staged, not already wanted) are wanted,
each digest once, in the order the trees are met.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from protocol.tree import DirNode, FileNode, Node

Lookup = Callable[[bytes], bool]
Children = Callable[[bytes], list[Node] | None]
# Told of every file met in a tree the far side lacks, and whether any of its pieces
# must come over the wire.
FileHook = Callable[[FileNode, bool], None]


class Descent:
    def __init__(
        self,
        root: bytes,
        *,
        live_tree: Lookup,
        staged: Children,
        have_blob: Lookup,
        on_file: FileHook | None = None,
    ) -> None:
        self._live_tree = live_tree
        self._staged = staged
        self._have_blob = have_blob
        self._on_file = on_file
        self._todo: deque[bytes] = deque([root])
        self._asked: set[bytes] = set()
        self.wanted: dict[bytes, int] = {}  # digest -> length, in the order first needed
        self.trees_from_wire = 0
        self.trees_from_staging = 0

    def next_requests(self, limit: int) -> list[bytes]:
        """Tree ids to ask the source for now (at most `limit`), after settling locally
        every tree that is live or staged."""
        requests: list[bytes] = []
        while self._todo and len(requests) < limit:
            tree_id = self._todo.popleft()
            if tree_id in self._asked or self._live_tree(tree_id):
                continue
            self._asked.add(tree_id)
            children = self._staged(tree_id)
            if children is None:
                requests.append(tree_id)
            else:
                self.trees_from_staging += 1
                self.add(children)
        return requests

    def received(self, children: list[Node]) -> None:
        """A tree asked for has arrived (verified and decoded by the protocol)."""
        self.trees_from_wire += 1
        self.add(children)

    def add(self, children: Iterable[Node]) -> None:
        for node in children:
            if isinstance(node, DirNode):
                self._todo.append(node.tree)
            elif isinstance(node, FileNode):
                self._want_pieces(node)

    def _want_pieces(self, node: FileNode) -> None:
        transfer = False
        for digest, length in node.recipe:
            if digest in self.wanted:
                transfer = True
            elif not self._have_blob(digest):
                self.wanted[digest] = length
                transfer = True
        if self._on_file is not None:
            self._on_file(node, transfer)

    @property
    def settled(self) -> bool:
        """No tree is left to look at (answers still due are the caller's to count)."""
        return not self._todo

    @property
    def wanted_bytes(self) -> int:
        return sum(self.wanted.values())
