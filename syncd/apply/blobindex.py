"""Where the far side's live tree already holds each piece: digest -> (path, offset, length).

Built from a snapshot of the live tree, so that an apply copies pieces from files it
already has instead of asking for them. Trees of 200k+ files hold a million pieces, so
the index is columns, not objects: about 56 bytes per distinct piece, plus one interned
name and two integers per file and directory. Lookups bisect a sorted column of 64-bit
digest prefixes and compare the full digest.

An apply asks only for the pieces it must read from the live tree (`wanted`): a
repair of a few files in a million-file tree then indexes a few pieces, not a million.

The first occurrence in walk order wins, except that files the caller calls `weak`
(those an apply is about to replace or remove) only count when no other file holds the
piece: a piece found only there must be copied to staging before the apply starts.
"""

from __future__ import annotations

import bisect
import sys
from array import array
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

from protocol.paths import join
from protocol.tree import DirNode, FileNode, Node
from syncd.snapshot import SnapshotReader

_DIGEST = 32


@dataclass(frozen=True, slots=True)
class Location:
    path: str
    offset: int
    length: int
    weak: bool  # the file is one the caller marked weak


class _Columns:
    """Pieces in the order met, before sorting."""

    def __init__(self) -> None:
        self.prefix: array[int] = array("Q")
        self.digest = bytearray()
        self.file: array[int] = array("I")
        self.offset: array[int] = array("Q")
        self.length: array[int] = array("I")

    def add(self, digest: bytes, file: int, offset: int, length: int) -> None:
        self.prefix.append(int.from_bytes(digest[:8], "big"))
        self.digest += digest
        self.file.append(file)
        self.offset.append(offset)
        self.length.append(length)

    def extend(self, other: _Columns) -> None:
        self.prefix.extend(other.prefix)
        self.digest += other.digest
        self.file.extend(other.file)
        self.offset.extend(other.offset)
        self.length.extend(other.length)


class BlobIndex:
    def __init__(self) -> None:
        """An empty index; use `BlobIndex.build`."""
        self._dir_parent: array[int] = array("I", [0])
        self._dir_name: list[str] = [""]
        self._file_dir: array[int] = array("I")
        self._file_name: list[str] = []
        self._file_weak = bytearray()
        self._pieces = _Columns()

    @classmethod
    def build(
        cls,
        snapshot: SnapshotReader,
        weak: Callable[[str], bool] | None = None,
        wanted: Collection[bytes] | None = None,
    ) -> BlobIndex:
        """Index `snapshot`'s pieces; with `wanted`, only those pieces (and only the files
        and directories that hold them), so that what an apply looks for in a large live
        tree costs memory in proportion to the change, not the tree."""
        index = cls()
        if wanted is not None and not wanted:
            return index  # nothing to look for: the tree is not walked
        strong, feeble = _Columns(), _Columns()
        for folder, node in _files(snapshot):
            if wanted is not None and not any(d in wanted for d, _ in node.recipe):
                continue
            is_weak = weak is not None and weak(join(folder.path, node.name))
            file_no = len(index._file_name)
            index._file_dir.append(index._number(folder))
            index._file_name.append(sys.intern(node.name))
            index._file_weak.append(is_weak)
            columns = feeble if is_weak else strong
            offset = 0
            for digest, length in node.recipe:
                if wanted is None or digest in wanted:
                    columns.add(digest, file_no, offset, length)
                offset += length
        strong.extend(feeble)  # weak ones after: a stable sort keeps them behind
        index._pieces = _sorted_unique(strong)
        return index

    def _number(self, folder: _Folder) -> int:
        """The folder's number, numbering it and the folders above it on first use."""
        unnumbered: list[_Folder] = []
        while folder.number < 0:
            unnumbered.append(folder)
            assert folder.parent is not None  # the root is numbered 0
            folder = folder.parent
        for below in reversed(unnumbered):
            self._dir_parent.append(folder.number)
            self._dir_name.append(sys.intern(below.name))
            below.number = len(self._dir_name) - 1
            folder = below
        return folder.number

    def __len__(self) -> int:
        return len(self._pieces.prefix)

    def has(self, digest: bytes) -> bool:
        return self._find(digest) is not None

    def locate(self, digest: bytes) -> Location | None:
        i = self._find(digest)
        if i is None:
            return None
        p = self._pieces
        file_no = p.file[i]
        return Location(
            self._path(file_no), p.offset[i], p.length[i], bool(self._file_weak[file_no])
        )

    def _find(self, digest: bytes) -> int | None:
        p = self._pieces
        key = int.from_bytes(digest[:8], "big")
        i = bisect.bisect_left(p.prefix, key)
        while i < len(p.prefix) and p.prefix[i] == key:
            if p.digest[i * _DIGEST : (i + 1) * _DIGEST] == digest:
                return i
            i += 1
        return None

    def _path(self, file_no: int) -> str:
        names = [self._file_name[file_no]]
        dir_no = self._file_dir[file_no]
        while dir_no:
            names.append(self._dir_name[dir_no])
            dir_no = self._dir_parent[dir_no]
        return "/".join(reversed(names))


@dataclass(slots=True)
class _Folder:
    """A directory of the walk; numbered in the index only once a file below it is kept."""

    parent: _Folder | None
    name: str
    path: str
    number: int = -1


def _files(snapshot: SnapshotReader) -> Iterator[tuple[_Folder, FileNode]]:
    """Every file with its folder, depth-first in name order."""
    root = _Folder(None, "", "", 0)
    stack: list[tuple[Iterator[Node], _Folder]] = [(iter(snapshot.tree(snapshot.root)), root)]
    while stack:
        children, folder = stack[-1]
        node = next(children, None)
        if node is None:
            stack.pop()
        elif isinstance(node, DirNode):
            below = _Folder(folder, node.name, join(folder.path, node.name))
            stack.append((iter(snapshot.tree(node.tree)), below))
        elif isinstance(node, FileNode):
            yield folder, node


def _sorted_unique(pieces: _Columns) -> _Columns:
    """Sorted by prefix (stable), keeping the first entry of each distinct digest."""
    order = sorted(range(len(pieces.prefix)), key=pieces.prefix.__getitem__)
    out = _Columns()
    run_start = 0  # first index in `out` of the current run of equal prefixes
    for i in order:
        digest = bytes(pieces.digest[i * _DIGEST : (i + 1) * _DIGEST])
        prefix = pieces.prefix[i]
        if not out.prefix or out.prefix[-1] != prefix:
            run_start = len(out.prefix)
        elif any(
            out.digest[j * _DIGEST : (j + 1) * _DIGEST] == digest
            for j in range(run_start, len(out.prefix))
        ):
            continue
        out.add(digest, pieces.file[i], pieces.offset[i], pieces.length[i])
    return out
