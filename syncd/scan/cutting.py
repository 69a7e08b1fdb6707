"""Where files are cut into pieces (docs/DESIGN.md, Identity). Pure functions over offsets.

An ordinary file is cut every CHUNK_SIZE bytes from offset 0. A tar archive is cut at
member boundaries: each member's data is cut exactly like an ordinary file of those
bytes, so a layer inside `mirror_000001.tar` has the same pieces as the cache's `data`
file. Between two members, the zero padding that ends the first member's last block and
the header blocks of the next are separate pieces: padding is one of 511 runs of zeros
shared by every archive, so a new member costs its header and data, not its neighbours.
"""

from __future__ import annotations

from collections.abc import Iterable

from protocol.limits import CHUNK_SIZE

# (offset of a member's data in the archive, size of that data)
Span = tuple[int, int]

TAR_BLOCK = 512


def fixed_cuts(size: int, chunk: int = CHUNK_SIZE) -> list[int]:
    """Piece lengths of `size` bytes cut every `chunk` bytes."""
    full, rest = divmod(size, chunk)
    return [chunk] * full + ([rest] if rest else [])


def archive_cuts(members: Iterable[Span], file_size: int, chunk: int = CHUNK_SIZE) -> list[int]:
    """Piece lengths covering [0, file_size): gaps between member data, and member data.

    `members` are the archive's regular-file data spans in order, non-overlapping and
    inside the file. Gaps longer than `chunk` are cut like ordinary bytes.
    """
    lengths: list[int] = []
    position = 0
    for offset, size in members:
        if offset < position or offset + size > file_size:
            raise ValueError(f"member span ({offset}, {size}) out of order or past the end")
        lengths += _gap_cuts(position, offset, chunk)
        lengths += fixed_cuts(size, chunk)
        position = offset + size
    lengths += _gap_cuts(position, file_size, chunk)
    return lengths


def _gap_cuts(start: int, end: int, chunk: int) -> list[int]:
    """Padding up to the next block boundary, then the rest (headers, trailer)."""
    padding = min(-start % TAR_BLOCK, end - start)
    return ([padding] if padding else []) + fixed_cuts(end - start - padding, chunk)
