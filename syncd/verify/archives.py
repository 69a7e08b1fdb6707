"""A content folder's `mirror_NNNNNN.tar` set: its numbering, and its members by name.

disk-to-mirror extracts every `mirror_[0-9]{6}.tar` in name order, overwriting, so a
name met in two archives is the later one's. Only the readable part of an archive is
indexed: what lies past a fatal issue would never be extracted.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from syncd.verify.store import StoreError
from syncd.verify.tarindex import TarIndex, read_index

_NUMBERED = re.compile(r"mirror_(\d{6})\.tar")
_ANY = re.compile(r"mirror_.*\.tar")
_OPEN = os.O_RDONLY | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class Archive:
    path: Path
    number: int


@dataclass(frozen=True, slots=True)
class MemberRef:
    archive: Path
    name: str
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class ArchiveRead:
    archive: Archive
    index: TarIndex | None  # None when the file could not be read at all
    error: str = ""


def find_archives(folder: Path) -> tuple[list[Archive], list[str]]:
    """The numbered archives in name order, and other `mirror_*.tar` names (ignored)."""
    numbered, ignored = [], []
    try:
        names = sorted(entry.name for entry in folder.iterdir())
    except OSError:
        names = []  # an unreadable folder shows as one without archives
    for name in names:
        match = _NUMBERED.fullmatch(name)
        if match:
            numbered.append(Archive(folder / name, int(match.group(1))))
        elif _ANY.fullmatch(name):
            ignored.append(name)
    return numbered, ignored


def missing_numbers(numbers: list[int]) -> list[int]:
    """Numbers a set of archives 1..max lacks: disk-to-mirror would not notice them."""
    present = set(numbers)
    return [n for n in range(1, max(numbers, default=0) + 1) if n not in present]


def archive_name(number: int) -> str:
    return f"mirror_{number:06d}.tar"


def safe_member_name(name: str) -> str | None:
    """The member's path as extraction would use it, or None if it would escape."""
    clean = name.removeprefix("./").rstrip("/")
    parts = clean.split("/")
    if not clean or name.startswith("/") or ".." in parts or "" in parts:
        return None
    return clean


class ArchiveSet:
    """Every archive's index, and bytes read from members by offset."""

    def __init__(self, archives: list[Archive]) -> None:
        self.reads = [_read(archive) for archive in archives]
        self.members: dict[str, MemberRef] = {}
        self.unsafe: list[tuple[Path, str]] = []
        for read in self.reads:
            for member in read.index.members if read.index else ():
                clean = safe_member_name(member.name)
                if clean is None:
                    self.unsafe.append((read.archive.path, member.name))
                elif member.regular:
                    ref = MemberRef(read.archive.path, clean, member.offset, member.size)
                    self.members[clean] = ref
        self._fds: dict[Path, int] = {}

    def read(self, ref: MemberRef, limit: int) -> bytes:
        """At most `limit` bytes of the member's data."""
        try:
            fd = self._fds.get(ref.archive)
            if fd is None:
                fd = self._fds[ref.archive] = os.open(ref.archive, _OPEN)
            return os.pread(fd, min(limit, ref.size), ref.offset)
        except OSError as exc:
            raise StoreError(f"{ref.archive.name}: {exc.strerror}") from None

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> ArchiveSet:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def _read(archive: Archive) -> ArchiveRead:
    try:
        fd = os.open(archive.path, _OPEN)
    except OSError as exc:
        return ArchiveRead(archive, None, exc.strerror or str(exc))
    try:
        return ArchiveRead(archive, read_index(fd))
    except OSError as exc:
        return ArchiveRead(archive, None, exc.strerror or str(exc))
    finally:
        os.close(fd)
