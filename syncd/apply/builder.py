"""Building entries in the workspace, complete, before they are made durable and
renamed in.

A file is written from its pieces (each verified as read) and given its mode and mtime.
A placed tree is built depth-first; each directory gets its target mode only after
everything below it is in, so that a read-only mode never stops the build. The builder
does not fsync: it leaves every file and directory it made open in `pending`, and the
executor fsyncs them (many at once, which lets the file system commit them together)
before the entry is renamed into the live tree. A large tree hands its pending
descriptors over in batches while it is built (`spill`): a tree of a million entries
cannot hold a descriptor for each until its end.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from protocol.tree import DirNode, FileNode, LinkNode, Node
from syncd.apply.incoming import Incoming, content_key
from syncd.apply.pieces import PieceReader
from syncd.plan.diff import TreeLookup

_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

Spill = Callable[[list[int]], None]  # takes pending descriptors: fsyncs and closes them


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
    ) -> None:
        self._pieces = pieces
        self._target = target
        self._incoming = incoming
        self._uses: Counter[bytes] = uses if uses is not None else Counter()
        self.built = Built()
        # Descriptors of what the last built entry wrote, still to be fsynced and closed
        # by the caller (who takes them with take_pending).
        self.pending: list[int] = []

    def take_pending(self) -> list[int]:
        taken, self.pending = self.pending, []
        return taken

    def file(self, node: FileNode, dir_fd: int, name: str) -> None:
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
        except BaseException:
            os.close(fd)
            raise
        self.pending.append(fd)
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

    def tree(
        self,
        tree: bytes,
        mode: int,
        dir_fd: int,
        name: str,
        *,
        spill: Spill | None = None,
        spill_at: int = 256,
    ) -> None:
        """Build the target's directory `tree` as `name` in `dir_fd`, with everything below.

        With `spill`, whenever `spill_at` descriptors are pending they are handed to it
        (they must be durable before the tree is renamed in, not before the next entry is
        built); the open directories of the current path stay open, depth-bounded.
        """
        top = self._mkdir(dir_fd, name)
        stack: list[tuple[Iterator[Node], int, int]] = [(iter(self._target(tree)), top, mode)]
        try:
            while stack:
                children, fd, dir_mode = stack[-1]
                node = next(children, None)
                if node is None:
                    os.fchmod(fd, dir_mode)
                    stack.pop()
                    self.pending.append(fd)
                elif isinstance(node, DirNode):
                    child = self._mkdir(fd, node.name)
                    stack.append((iter(self._target(node.tree)), child, node.mode))
                elif isinstance(node, FileNode):
                    self.file(node, fd, node.name)
                else:
                    assert isinstance(node, LinkNode)
                    self.symlink(node.target, fd, node.name)
                if spill is not None and len(self.pending) >= spill_at:
                    spill(self.take_pending())
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
