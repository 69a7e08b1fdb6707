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
from syncd.tarheader import (
    BLOCK,
    HEADER_ONLY,
    METADATA,
    PAX_LOCAL,
    REGULAR,
    ZERO_BLOCK,
    Window,
    check_header,
    number,
    pax_size,
)

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_PAX = 1 << 20


@dataclass(frozen=True, slots=True)
class TarLayout:
    members: list[Span]  # data spans of regular members with at least one byte
    problem: str | None  # why reading stopped before a clean end-of-archive, if it did


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
    window = Window(fd)
    members: list[Span] = []
    position = 0
    pax_override: int | None = None
    while True:
        header = window.read(position, BLOCK)
        if len(header) < BLOCK:
            return TarLayout(members, _truncated(position, "header", file_size))
        if header == ZERO_BLOCK:
            return TarLayout(members, None)
        problem = check_header(header, position)
        if problem:
            return TarLayout(members, problem)
        kind = header[156]
        size = 0 if kind in HEADER_ONLY else number(header[124:136])
        if size is None:
            return TarLayout(members, f"unreadable size field at offset {position}")
        if pax_override is not None and kind not in METADATA:
            size, pax_override = pax_override, None
        data_start = position + BLOCK
        if data_start + size > file_size:
            return TarLayout(members, _truncated(position, "member", file_size))
        if kind == PAX_LOCAL:
            if size > _MAX_PAX:
                return TarLayout(members, f"PAX header over 1 MiB at offset {position}")
            pax_override = pax_size(window.read(data_start, size))
        elif kind in REGULAR and size:
            members.append((data_start, size))
        position = data_start + -(-size // BLOCK) * BLOCK


def _truncated(position: int, what: str, file_size: int) -> str:
    return (
        f"truncated tar archive: {what} at offset {position} runs past the end ({file_size} bytes)"
    )
