"""Building entries in the workspace, complete, before they are made durable and
renamed in.

A file is written from its pieces (each verified as read) and given its mode and mtime
through the descriptor it was written with. A placed tree is built depth-first,
descriptor-relative; each directory gets its target mode only after everything below it
is in, so that a read-only mode never stops the build. Each file of a placed tree is
recorded in `written` with its stat as written: moving the tree into place later does
not change its files' stat, so the check after the apply need not read them again.

The builder does not fsync: the executor makes what it built durable, many entries at
once (one syncfs), before any of them is renamed into the live tree.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from protocol.tree import DirNode, FileNode, LinkNode, Node
from syncd.apply.incoming import Incoming, content_key
from syncd.apply.pieces import PieceReader
from syncd.apply.written import WrittenFiles
from syncd.plan.diff import TreeLookup

_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(slots=True)
class Built:
    """What the builder wrote, in entries and bytes."""

    files: int = 0
    bytes: int = 0
    symlinks: int = 0
    dirs: int = 0

    @property
    def entries(self) -> int:
        return self.files + self.symlinks + self.dirs


class Builder:
    def __init__(
        self,
        pieces: PieceReader,
        target: TreeLookup,
        incoming: Incoming | None = None,
        uses: Counter[bytes] | None = None,
        written: WrittenFiles | None = None,
    ) -> None:
        self._pieces = pieces
        self._target = target
        self._incoming = incoming
        self._uses: Counter[bytes] = uses if uses is not None else Counter()
        self._written = written
        self.built = Built()

    def file(self, node: FileNode, dir_fd: int, name: str) -> None:
        """Write one file (renamed in on its own later, so its stat is not recorded)."""
        self._file(node, dir_fd, name, None)

    def _file(self, node: FileNode, dir_fd: int, name: str, written: WrittenFiles | None) -> None:
        assembled = self._assembled(node, dir_fd, name)
        if assembled:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        else:
            fd = os.open(name, _NEW_FILE, 0o600, dir_fd=dir_fd)
        try:
            if not assembled:
                for digest, length in node.recipe:
                    _write_all(fd, self._pieces.read(digest, length))
            os.fchmod(fd, node.mode)
            os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))
            if written is not None:
                written.add(os.fstat(fd), node.recipe)
        finally:
            os.close(fd)
        self.built.files += 1
        self.built.bytes += node.size

    def _assembled(self, node: FileNode, dir_fd: int, name: str) -> bool:
        """Move (or, if more files need it, copy) an assembled file into place."""
        if self._incoming is None or not node.recipe:
            return False
        key = content_key(node.recipe)
        if self._uses[key] <= 0:
            return False
        self._uses[key] -= 1
        return self._incoming.take(node.recipe, dir_fd, name, last=self._uses[key] == 0)

    def symlink(self, target: str, dir_fd: int, name: str) -> None:
        os.symlink(target, name, dir_fd=dir_fd)
        self.built.symlinks += 1

    def tree(self, tree: bytes, mode: int, dir_fd: int, name: str) -> None:
        """Build the target's directory `tree` as `name` in `dir_fd`, with everything below
        (the open directories of the current path stay open, depth-bounded)."""
        top = self._mkdir(dir_fd, name)
        stack: list[tuple[Iterator[Node], int, int]] = [(iter(self._target(tree)), top, mode)]
        try:
            while stack:
                children, fd, dir_mode = stack[-1]
                node = next(children, None)
                if node is None:
                    stack.pop()
                    try:
                        os.fchmod(fd, dir_mode)
                    finally:
                        os.close(fd)
                elif isinstance(node, DirNode):
                    child = self._mkdir(fd, node.name)
                    stack.append((iter(self._target(node.tree)), child, node.mode))
                elif isinstance(node, FileNode):
                    self._file(node, fd, node.name, self._written)
                else:
                    assert isinstance(node, LinkNode)
                    self.symlink(node.target, fd, node.name)
        finally:
            for _, fd, _ in stack:
                os.close(fd)

    def _mkdir(self, dir_fd: int, name: str) -> int:
        os.mkdir(name, 0o700, dir_fd=dir_fd)
        self.built.dirs += 1
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
