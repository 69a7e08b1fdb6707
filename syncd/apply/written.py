"""The files an apply wrote, by inode: what the check after it trusts instead of reading
them again (ScanOptions.known).

The build verifies every piece it writes, so reading the files back to hash them proves
nothing new; it cost a cold push of a 114k-file link tree some 8 s of its final check,
nearly all of it opening, reading and hashing small files. A file is trusted only while
its stat is exactly the one taken after it was written (inode, size, mtime, ctime, on the
same file system): a later write, a rename or a replacement changes the ctime, and the
check reads that file again. Keyed by inode, the record needs no path: a file built deep
in a placed tree is recorded from its own descriptor (`fstat`), with no walk of the
target to find its path.

A registry tree is mostly one-piece files, so those are kept as fixed-width records
(8 bytes of inode, 56 of size, mtime, ctime and the one digest) and put in inode order
once, on the first lookup: about 74 bytes a file held, 115 while the order is sorted
(tracemalloc; some 74 MB for a cold push of a million files), where path-keyed dicts of
objects cost about 600. Files of several pieces keep their recipe in a dict.
"""

from __future__ import annotations

import os
import struct
from array import array
from bisect import bisect_left

from protocol.tree import Recipe
from syncd.scan.hashing import StatKey

_FIXED = struct.Struct("<qqq32s")  # size, mtime_ns, ctime_ns, the one piece's digest
_NO_DIGEST = bytes(32)
_POSITION_BITS = 40  # records per apply, far above any tree's file count
_POSITION_MASK = (1 << _POSITION_BITS) - 1


class WrittenFiles:
    """Recipes of written files by their stat; `recipe` answers ScanOptions.known."""

    def __init__(self) -> None:
        self._dev: int | None = None
        self._inos = array("Q")
        self._fixed = bytearray()
        self._order: array[int] | None = None  # positions in inode order, once looked up
        self._pieces: dict[int, tuple[StatKey, Recipe]] = {}
        self.latest_ctime_ns = 0

    def __len__(self) -> int:
        return len(self._inos) + len(self._pieces)

    def add(self, st: os.stat_result, recipe: Recipe) -> None:
        """Record the file whose stat after writing is `st` and whose bytes are `recipe`'s."""
        if self._dev is None:
            self._dev = st.st_dev
        elif st.st_dev != self._dev:
            return  # not where the build writes: leave it to the check to read
        self.latest_ctime_ns = max(self.latest_ctime_ns, st.st_ctime_ns)
        if len(recipe) > 1:
            self._pieces[st.st_ino] = (StatKey.of(st), recipe)
            return
        self._pieces.pop(st.st_ino, None)
        digest = recipe[0][0] if recipe else _NO_DIGEST
        self._inos.append(st.st_ino)
        self._fixed += _FIXED.pack(st.st_size, st.st_mtime_ns, st.st_ctime_ns, digest)
        self._order = None

    def recipe(self, st: os.stat_result) -> Recipe | None:
        """The recipe of the file with this exact stat, if it is one written here."""
        if st.st_dev != self._dev:
            return None
        several = self._pieces.get(st.st_ino)
        if several is not None:
            return several[1] if several[0] == StatKey.of(st) else None
        at = self._find(st.st_ino)
        if at is None:
            return None
        size, mtime_ns, ctime_ns, digest = _FIXED.unpack_from(self._fixed, at * _FIXED.size)
        if (size, mtime_ns, ctime_ns) != (st.st_size, st.st_mtime_ns, st.st_ctime_ns):
            return None
        return ((digest, size),) if size else ()

    def _find(self, ino: int) -> int | None:
        """The position of the one-piece record of inode `ino` (the latest, if the same
        inode was written twice)."""
        if self._order is None:
            # Inode and position in one int, sorted without a key list (about 48 bytes a
            # file while it sorts); of equal inodes, the one written last comes last.
            paired = sorted((ino << _POSITION_BITS) | at for at, ino in enumerate(self._inos))
            self._order = array("Q", (p & _POSITION_MASK for p in paired))
            del paired
        order, inos = self._order, self._inos
        i = bisect_left(order, ino + 1, key=inos.__getitem__) - 1
        return order[i] if i >= 0 and inos[order[i]] == ino else None
