"""The working-dir disk-to-mirror will read: the archives' members over what is on disk.

disk-to-mirror extracts every `working-dir` member into `<from>/working-dir`, over the
files an earlier upload left there, so a path is the newest archive's member if any
archive carries it, else the file on disk. Disk reads resolve beneath the content
folder without following a symlink (see `beneath`); a symlink is reported, not read.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping
from typing import Protocol

from syncd.verify.archives import ArchiveSet, MemberRef
from syncd.verify.beneath import Beneath, why
from syncd.verify.store import StoreError

WORKING_DIR = "working-dir"
_ABSENT = (errno.ENOENT, errno.ENOTDIR)


class WorkingDir(Protocol):
    """What the collectors open in working-dir, by path relative to it."""

    def read(self, rel: str, limit: int) -> bytes | None:
        """The file's first `limit` bytes; None if absent; StoreError if unreadable."""

    def names(self, rel: str) -> list[str]:
        """Entries of a directory (sorted); [] if absent."""

    def files(self, rel: str) -> list[str]:
        """Every file below a directory, as paths relative to working-dir (sorted)."""


class DiskWorkingDir:
    """`<folder>/working-dir` on disk, read beneath `folder`."""

    def __init__(self, folder: Beneath | None) -> None:
        self.folder = folder

    def read(self, rel: str, limit: int) -> bytes | None:
        if self.folder is None:
            return None
        try:
            return self.folder.read(f"{WORKING_DIR}/{rel}", limit)
        except OSError as exc:
            if exc.errno in _ABSENT:
                return None
            raise StoreError(why(exc)) from None

    def names(self, rel: str) -> list[str]:
        return sorted(name for name, _ in self._entries(rel))

    def files(self, rel: str) -> list[str]:
        found: list[str] = []
        stack = [rel]
        while stack:
            current = stack.pop()
            for name, is_dir in self._entries(current):
                (stack if is_dir else found).append(f"{current}/{name}")
        return sorted(found)

    def _entries(self, rel: str) -> list[tuple[str, bool]]:
        if self.folder is None:
            return []
        try:
            return self.folder.entries(f"{WORKING_DIR}/{rel}".rstrip("/"))
        except OSError:
            return []


class ExtractedWorkingDir:
    """The archives' working-dir members over the disk's working-dir."""

    def __init__(self, archives: ArchiveSet) -> None:
        self.archives = archives
        self.members: Mapping[str, MemberRef] = archives.extraction.working_dir
        self.disk = DiskWorkingDir(archives.dir)

    def read(self, rel: str, limit: int) -> bytes | None:
        ref = self.members.get(rel)
        if ref is not None:
            return self.archives.read(ref, limit)
        return self.disk.read(rel, limit)

    def names(self, rel: str) -> list[str]:
        prefix = rel.rstrip("/") + "/"
        mine = {m[len(prefix) :].split("/", 1)[0] for m in self.members if m.startswith(prefix)}
        return sorted(mine | set(self.disk.names(rel)))

    def files(self, rel: str) -> list[str]:
        prefix = rel.rstrip("/") + "/"
        return sorted({m for m in self.members if m.startswith(prefix)} | set(self.disk.files(rel)))
