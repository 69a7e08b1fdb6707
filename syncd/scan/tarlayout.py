"""Find where member data lies in a tar archive, reading headers only.

The layout only decides where pieces are cut; every byte is hashed either way. So the
reader is lenient: at the first thing it cannot read (a bad checksum, a truncated
header or member, an oversized PAX record) it stops, reports why, and the rest of the
file is cut like an ordinary file. Formats met: ustar and GNU headers, PAX 'x' records
(a `size` record overrides the next member's size), GNU long names, base-256 sizes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from syncd.scan.cutting import Span, archive_cuts, fixed_cuts

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
BLOCK = 512
_WINDOW = 1 << 20
_MAX_PAX = 1 << 20
_REGULAR = frozenset(b"0\x007")
_HEADER_ONLY = frozenset(b"123456")  # links, devices, directories, fifos: no data
_PAX_LOCAL = ord("x")


@dataclass(frozen=True, slots=True)
class TarLayout:
    members: list[Span]  # data spans of regular members with at least one byte
    problem: str | None  # why reading stopped before a clean end-of-archive, if it did


class _Window:
    """Reads through a 1 MiB window so that runs of small members cost one syscall."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self.size = size
        self._start = 0
        self._data = b""

    def read(self, offset: int, length: int) -> bytes:
        end = offset + length
        if not (self._start <= offset and end <= self._start + len(self._data)):
            self._data = os.pread(self._fd, max(length, _WINDOW), offset)
            self._start = offset
        return self._data[offset - self._start : end - self._start]


def cuts_for(path: str, st: os.stat_result) -> tuple[list[int], str | None]:
    """Piece lengths of a file, and a warning when a `.tar` cannot be followed to its end.

    Errors opening the file are not reported here: the hash job meets them and says why.
    """
    if not path.endswith(".tar"):
        return fixed_cuts(st.st_size), None
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError:
        return fixed_cuts(st.st_size), None
    try:
        if os.fstat(fd).st_ino != st.st_ino:
            return fixed_cuts(st.st_size), None  # replaced: the hash job will notice
        layout = read_layout(fd, st.st_size)
    except OSError as exc:
        return fixed_cuts(st.st_size), f"cannot read tar headers: {exc.strerror}"
    finally:
        os.close(fd)
    cuts = archive_cuts(layout.members, st.st_size)
    if layout.problem:
        return cuts, f"{layout.problem}; the rest is cut as plain bytes"
    return cuts, None


def read_layout(fd: int, file_size: int) -> TarLayout:
    window = _Window(fd, file_size)
    members: list[Span] = []
    position = 0
    pax_size: int | None = None
    while True:
        header = window.read(position, BLOCK)
        if len(header) < BLOCK:
            return TarLayout(members, _truncated(position, "header", file_size))
        if header == bytes(BLOCK):
            return TarLayout(members, None)
        problem = _check_header(header, position)
        if problem:
            return TarLayout(members, problem)
        kind = header[156]
        size = 0 if kind in _HEADER_ONLY else _parse_number(header[124:136])
        if size is None:
            return TarLayout(members, f"unreadable size field at offset {position}")
        if pax_size is not None and kind not in (_PAX_LOCAL, ord("g"), ord("L"), ord("K")):
            size, pax_size = pax_size, None
        data_start = position + BLOCK
        if data_start + size > file_size:
            return TarLayout(members, _truncated(position, "member", file_size))
        if kind == _PAX_LOCAL:
            if size > _MAX_PAX:
                return TarLayout(members, f"PAX header over 1 MiB at offset {position}")
            pax_size = _pax_size(window.read(data_start, size))
        elif kind in _REGULAR and size:
            members.append((data_start, size))
        position = data_start + -(-size // BLOCK) * BLOCK


def _truncated(position: int, what: str, file_size: int) -> str:
    return (
        f"truncated tar archive: {what} at offset {position} runs past the end ({file_size} bytes)"
    )


def _check_header(header: bytes, position: int) -> str | None:
    stored = _parse_number(header[148:156])
    blanked = header[:148] + b" " * 8 + header[156:]
    unsigned = sum(blanked)
    signed = sum(b - 256 if b > 127 else b for b in blanked)
    if stored is None or stored not in (unsigned, signed):
        where = "not a tar archive" if position == 0 else "corrupt tar header"
        return f"{where} (bad header checksum at offset {position})"
    return None


def _parse_number(field: bytes) -> int | None:
    """Octal text (NUL/space terminated) or GNU base-256 (high bit of the first byte)."""
    if field and field[0] & 0x80:
        if field[0] == 0xFF:
            return None  # negative
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\x00", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        return None


def _pax_size(data: bytes) -> int | None:
    """The `size` record of a PAX extended header, if any: records are 'LEN key=value\\n'."""
    position = 0
    found: int | None = None
    while position < len(data):
        space = data.find(b" ", position, position + 20)
        if space < 0:
            break
        try:
            length = int(data[position:space])
        except ValueError:
            break
        record = data[space + 1 : position + length]
        if length <= 0 or not record.endswith(b"\n"):
            break
        key, _, value = record[:-1].partition(b"=")
        if key == b"size" and value.isdigit():
            found = int(value)
        position += length
    return found
