"""Reading tar headers: the fields and checks that the scanner's cutting and verify's
archive checks both need (POSIX ustar, GNU base-256 numbers, PAX records).

Only reading, and only headers: nothing here extracts a member.
"""

from __future__ import annotations

import os

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
REGULAR = frozenset(b"0\x007")
HEADER_ONLY = frozenset(b"123456")  # links, devices, directories, fifos: no data
PAX_LOCAL = ord("x")
METADATA = frozenset(b"xgLK")  # their data describes the next member
_HIGH_BYTES = bytes(range(128, 256))


class Window:
    """Reads through a window, so that runs of small members cost one syscall."""

    def __init__(self, fd: int, size: int = 1 << 20) -> None:
        self._fd = fd
        self._size = size
        self._start = 0
        self._data = b""

    def read(self, offset: int, length: int) -> bytes:
        end = offset + length
        if not (self._start <= offset and end <= self._start + len(self._data)):
            self._data = os.pread(self._fd, max(length, self._size), offset)
            self._start = offset
        return self._data[offset - self._start : end - self._start]


def check_header(header: bytes, position: int) -> str | None:
    """Why a 512-byte block is not a valid header (its checksum), or None."""
    stored = number(header[148:156])
    blanked = header[:148] + b" " * 8 + header[156:]
    unsigned = sum(blanked)
    if stored == unsigned:
        return None
    # Some old tars sum signed bytes: the same sum less 256 per byte above 127 (counted
    # in C by deleting those bytes, not byte by byte in Python: archives hold thousands).
    signed = unsigned - 256 * (len(blanked) - len(blanked.translate(None, _HIGH_BYTES)))
    if stored is None or stored != signed:
        where = "not a tar archive" if position == 0 else "corrupt tar header"
        return f"{where} (bad header checksum at offset {position})"
    return None


def number(field: bytes) -> int | None:
    """Octal text (NUL or space terminated) or GNU base-256 (high bit of the first byte)."""
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


def text(field: bytes) -> str:
    return field.split(b"\x00", 1)[0].decode("utf-8", "replace")


def pax_records(data: bytes) -> dict[str, str]:
    """PAX records are 'LEN key=value\\n', LEN counting the whole record; reading stops
    at the first malformed one."""
    found: dict[str, str] = {}
    position = 0
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
        found[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
        position += length
    return found


def pax_size(data: bytes) -> int | None:
    value = pax_records(data).get("size")
    return int(value) if value is not None and value.isdigit() else None
