"""A tar archive's member index: names, data offsets and sizes, read from headers only.

disk-to-mirror extracts with Go's archive/tar, so an issue is `fatal` where Go's reader
fails (a bad header checksum, a member or its padding cut short, a zero block followed
by data): the extraction, and the whole upload, stops there. Go also accepts an archive
that simply ends at a member boundary, without the two zero blocks that close it; that
is how a copy cut short at the wrong moment looks, so it is reported too, not fatal.
Formats met: ustar (with its name prefix), GNU, PAX 'x' records (`path`, `size`) and
GNU long names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from syncd.tarheader import (
    BLOCK,
    HEADER_ONLY,
    METADATA,
    REGULAR,
    ZERO_BLOCK,
    Window,
    check_header,
    number,
    pax_records,
    text,
)

_WINDOW = 64 << 10  # many link members of ~1 KiB each per read
_MAX_META = 1 << 20  # PAX records and GNU long names above this are refused


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    offset: int  # where its data starts
    size: int
    regular: bool
    kind: int = ord("0")  # the type flag

    @property
    def go_regular(self) -> bool:
        """What Go's reader calls tar.TypeReg: '0', or the old '\\0' not naming a dir."""
        return self.kind == ord("0") or (self.kind == 0 and not self.name.endswith("/"))


@dataclass(frozen=True, slots=True)
class TarIssue:
    fatal: bool  # Go's reader fails here: disk-to-mirror stops
    offset: int
    message: str


@dataclass(frozen=True, slots=True)
class TarIndex:
    members: list[Member]
    issue: TarIssue | None
    file_size: int


def read_index(fd: int) -> TarIndex:
    """Index the archive open on `fd`; raises OSError only when reading fails."""
    return _Reader(fd, os.fstat(fd).st_size).run()


class _Reader:
    def __init__(self, fd: int, file_size: int) -> None:
        self.window = Window(fd, _WINDOW)
        self.file_size = file_size
        self.members: list[Member] = []
        self.pax: dict[str, str] = {}
        self.long_name: str | None = None

    def run(self) -> TarIndex:
        position = 0
        while True:
            step = self._step(position)
            if isinstance(step, TarIssue) or step is None:
                return TarIndex(self.members, step, self.file_size)
            position = step

    def _step(self, position: int) -> int | TarIssue | None:
        """The next header's offset, or how reading ended (None: a proper end)."""
        header = self.window.read(position, BLOCK)
        if len(header) < BLOCK:
            return self._ended(position, header)
        if header == ZERO_BLOCK:
            return self._end_marker(position)
        parsed = self._header(header, position)
        if isinstance(parsed, TarIssue):
            return parsed
        return self._member(position, *parsed)

    def _member(self, position: int, kind: int, size: int, name: str) -> int | TarIssue:
        data = position + BLOCK
        padded = data + -(-size // BLOCK) * BLOCK
        if data + size > self.file_size or (kind in METADATA and padded > self.file_size):
            return self._cut_member(name, position, data, size)
        if kind in METADATA:
            return self._meta(kind, data, size, padded)
        regular = kind in REGULAR and not name.endswith("/")
        self.members.append(Member(name, data, size, regular, kind))
        self.pax, self.long_name = {}, None
        if padded > self.file_size:
            return self._unpadded(name, data + size)
        return padded

    def _header(self, header: bytes, position: int) -> tuple[int, int, str] | TarIssue:
        """The member's type flag, data size and name, from a header and what preceded it."""
        problem = check_header(header, position)
        if problem:
            return TarIssue(True, position, problem)
        kind = header[156]
        size = 0 if kind in HEADER_ONLY else number(header[124:136])
        if size is None:
            return TarIssue(True, position, f"unreadable size field in the header at {position}")
        if kind not in METADATA and "size" in self.pax:
            size = int(self.pax["size"])
        return kind, size, self._name(header)

    def _meta(self, kind: int, data: int, size: int, padded: int) -> int | TarIssue:
        if size > _MAX_META:
            return TarIssue(True, data - BLOCK, f"a {size}-byte metadata header at {data - BLOCK}")
        body = self.window.read(data, size)
        if kind == ord("x"):
            self.pax = pax_records(body)
            if "size" in self.pax and not self.pax["size"].isdigit():
                return TarIssue(True, data - BLOCK, f"bad PAX size record at {data - BLOCK}")
        elif kind == ord("L"):
            self.long_name = body.split(b"\x00", 1)[0].decode("utf-8", "replace")
        return padded

    def _name(self, header: bytes) -> str:
        if "path" in self.pax:
            return self.pax["path"]
        if self.long_name is not None:
            return self.long_name
        name = text(header[0:100])
        if header[257:263] == b"ustar\x00":  # POSIX ustar: a prefix may hold the start
            prefix = text(header[345:500])
            if prefix:
                return f"{prefix}/{name}"
        return name

    def _ended(self, position: int, partial: bytes) -> TarIssue:
        if partial:
            message = f"a header cut short at offset {position} (the file ends there)"
            return TarIssue(True, position, message)
        last = f"after member {self.members[-1].name}" if self.members else "before any member"
        message = (
            f"ends at offset {position} without the end-of-archive marker (two zero blocks): "
            f"it was cut {last}, and whatever followed is lost"
        )
        return TarIssue(False, position, message)

    def _unpadded(self, name: str, end: int) -> TarIssue:
        # Go's reader reads the padding with tryReadFull: nothing at all is a clean end
        # (io.EOF), part of it is io.ErrUnexpectedEOF.
        if self.file_size == end:
            message = (
                f"ends right after member {name}'s data, without its padding or the "
                "end-of-archive marker: it was cut there, and whatever followed is lost"
            )
            return TarIssue(False, end, message)
        message = f"member {name}'s padding is cut short at offset {self.file_size}"
        return TarIssue(True, end, message)

    def _end_marker(self, position: int) -> TarIssue | None:
        second = self.window.read(position + BLOCK, BLOCK)
        if second == ZERO_BLOCK:
            return None
        if not second:
            message = f"ends after one of the two zero blocks of its end marker, at {position}"
            return TarIssue(False, position, message)
        return TarIssue(True, position, f"a zero block followed by data at offset {position}")

    def _cut_member(self, name: str, position: int, data: int, size: int) -> TarIssue:
        have = max(0, self.file_size - data)
        what = "its padding" if have >= size else f"only {have} of its {size} bytes"
        message = (
            f"member {name} (header at offset {position}) is cut short: the file ends after {what}"
        )
        return TarIssue(True, position, message)
