"""A content folder's archives as disk-to-mirror picks and extracts them.

Modelled on oc-mirror v2's internal/pkg/archive/unarchive.go (openshift/oc-mirror,
commit 855b64a3), read, not copied:
- `NewArchiveExtractor` lists the folder with os.ReadDir (every entry, files and
  directories alike, in name order) and picks each name the unanchored pattern
  `mirror_[0-9]{6}\\.tar` matches: `mirror_000001.tar.sha256`, `.mirror_000002.tar.Ab12Cd`
  (an rsync temporary) and `mirror_000002.tar.part` are picked too, `mirror_1.tar` and
  `mirror_000001.TAR` are not. None picked is an error.
- `Unarchive` stats each picked file (an empty one is an error) and reads it with Go's
  archive/tar; the first read error stops the whole run.
- Only members of type '0' (tar.TypeReg) are extracted, routed by whether the name
  *contains* `working-dir` (into the content folder) or `docker/registry/v2` (into the
  cache); everything else, the archived `isc_*` included, is skipped. A name that
  cleans to a path outside its destination ("content filepath is tainted") stops the
  run. A later archive's file overwrites an earlier one's.

verify opens every picked file beneath the content folder without following a symlink
(see `beneath`); disk-to-mirror would follow one, verify reports it instead.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from syncd.verify.beneath import Beneath, why
from syncd.verify.store import StoreError
from syncd.verify.tarindex import TarIndex, read_index

PICKED = re.compile(r"mirror_[0-9]{6}\.tar")  # searched, not matched: unanchored, as Go's
_NEAR = re.compile(r"mirror.?\d+\.tar", re.IGNORECASE)
V2 = "docker/registry/v2"
WORKING_DIR = "working-dir"
_SENTINEL = "@dest/"


@dataclass(frozen=True, slots=True)
class Picked:
    name: str  # as listed in the content folder
    is_dir: bool


@dataclass(frozen=True, slots=True)
class MemberRef:
    archive: str  # the archive's name in the content folder
    name: str  # the member's name in the archive
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class ArchiveRead:
    name: str
    index: TarIndex | None  # None when the file could not be read at all
    error: str = ""  # why it could not be read, or why disk-to-mirror refuses it

    @property
    def fatal(self) -> bool:
        """disk-to-mirror stops at this archive (and so fails)."""
        return self.index is None or (self.index.issue is not None and self.index.issue.fatal)


@dataclass(slots=True)
class Overwrite:
    """A tag link that two archives both carry, with different contents."""

    rel: str  # relative to docker/registry/v2
    first: str
    later: str


@dataclass(slots=True)
class Extraction:
    """Where each extracted file would land, by archive order (later wins)."""

    registry: dict[str, MemberRef] = field(default_factory=dict)  # rel to the cache's v2
    working_dir: dict[str, MemberRef] = field(default_factory=dict)  # rel to working-dir
    tainted: list[MemberRef] = field(default_factory=list)
    isc: list[MemberRef] = field(default_factory=list)  # archived image set configs
    overwrites: list[Overwrite] = field(default_factory=list)


def pick(entries: list[tuple[str, bool]]) -> tuple[list[Picked], list[str]]:
    """The names disk-to-mirror picks, in its order, and near misses it ignores."""
    picked, near = [], []
    for name, is_dir in sorted(entries):
        if PICKED.search(name):
            picked.append(Picked(name, is_dir))
        elif _NEAR.search(name):
            near.append(name)
    return picked, near


def destination(name: str) -> tuple[str, str] | None:
    """("registry" | "working-dir" | "elsewhere", rel) for a regular member, None if
    skipped; raises ValueError when its path escapes (tainted)."""
    if WORKING_DIR in name:
        base = "content"
    elif V2 in name:
        base = "cache"
    else:
        return None
    joined = posixpath.normpath(_SENTINEL + name)  # filepath.Join then Clean, as Go
    if not joined.startswith(_SENTINEL):
        raise ValueError(name)
    rel = joined[len(_SENTINEL) :]
    if base == "cache" and rel.startswith(V2 + "/"):
        return "registry", rel[len(V2) + 1 :]
    if base == "content" and rel.startswith(WORKING_DIR + "/"):
        return "working-dir", rel[len(WORKING_DIR) + 1 :]
    return "elsewhere", rel


class ArchiveSet:
    """The picked archives of one content folder, read, and their extraction."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.picked: list[Picked] = []
        self.near: list[str] = []
        self.reads: list[ArchiveRead] = []
        self.extraction = Extraction()
        self._fds: dict[str, int] = {}
        try:
            self.dir: Beneath | None = Beneath.open(folder)
        except OSError:
            self.dir = None
            return
        try:
            self.picked, self.near = pick(self.dir.entries(""))
        except OSError:
            return  # an unreadable folder shows as one without archives
        for picked in self.picked:
            read = self._read(picked)
            self.reads.append(read)
            if read.index is not None:
                self._extract(read)
            if read.fatal or self.extraction.tainted:
                break  # Unarchive returns at the first error: nothing after is read

    @property
    def stopped(self) -> ArchiveRead | None:
        """The archive disk-to-mirror fails on, if any (a tainted member included)."""
        if self.extraction.tainted:
            return self.reads[-1]
        return next((read for read in self.reads if read.fatal), None)

    def read(self, ref: MemberRef, limit: int) -> bytes:
        """At most `limit` bytes of the member's data."""
        try:
            fd = self._fds.get(ref.archive)
            if fd is None:
                assert self.dir is not None
                fd = self._fds[ref.archive] = self.dir.open_file(ref.archive)
            return os.pread(fd, min(limit, ref.size), ref.offset)
        except OSError as exc:
            raise StoreError(f"{ref.archive}: {why(exc)}") from None

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        if self.dir is not None:
            self.dir.close()

    def __enter__(self) -> ArchiveSet:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _read(self, picked: Picked) -> ArchiveRead:
        assert self.dir is not None
        if picked.is_dir:
            return ArchiveRead(picked.name, None, "is a directory, not an archive")
        try:
            fd = self.dir.open_file(picked.name)
        except OSError as exc:
            return ArchiveRead(picked.name, None, why(exc))
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return ArchiveRead(picked.name, None, "is not a regular file")
            if info.st_size == 0:
                return ArchiveRead(
                    picked.name, None, "is empty (disk-to-mirror: empty archive file)"
                )
            return ArchiveRead(picked.name, read_index(fd))
        except OSError as exc:
            return ArchiveRead(picked.name, None, why(exc))
        finally:
            os.close(fd)

    def _extract(self, read: ArchiveRead) -> None:
        assert read.index is not None
        out = self.extraction
        for member in read.index.members:
            ref = MemberRef(read.name, member.name, member.offset, member.size)
            if not member.go_regular:
                continue
            if member.name.startswith("isc_") and "/" not in member.name:
                out.isc.append(ref)
            try:
                where = destination(member.name)
            except ValueError:
                out.tainted.append(ref)
                return  # createFileWithProgress fails: the run stops here
            if where is None:
                continue
            kind, rel = where
            if kind == "registry":
                self._overwrite(rel, ref)
                out.registry[rel] = ref
            elif kind == "working-dir":
                out.working_dir[rel] = ref

    def _overwrite(self, rel: str, ref: MemberRef) -> None:
        earlier = self.extraction.registry.get(rel)
        if earlier is None or earlier.archive == ref.archive or "/_manifests/tags/" not in rel:
            return
        try:
            differs = self.read(earlier, 4096) != self.read(ref, 4096)
        except StoreError:
            differs = True
        if differs:
            self.extraction.overwrites.append(Overwrite(rel, earlier.archive, ref.archive))
