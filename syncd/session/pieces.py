"""Read the pieces the far side asked for from the source tree, verified.

Reads run in worker threads in batches (one thread hop per ~8 MiB or 512 pieces, not per
piece: most pieces of a registry tree are link files of 71 bytes). Every piece is hashed
as read: a source file that changed since the scan is named, never sent as if it matched.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import blake3

from syncd.errors import SyncdError
from syncd.lastopened import LastOpened

BATCH_BYTES = 8 << 20
BATCH_PIECES = 512

# digest -> (path relative to the root, offset, length), or None when not in the tree
Locate = Callable[[bytes], tuple[str, int, int] | None]


class SourceChanged(SyncdError):
    """A source file no longer holds the bytes its snapshot says: rescan and push again."""


def batches(wanted: Sequence[tuple[bytes, int]]) -> list[list[tuple[bytes, int]]]:
    out: list[list[tuple[bytes, int]]] = []
    batch: list[tuple[bytes, int]] = []
    size = 0
    for digest, length in wanted:
        if batch and (size + length > BATCH_BYTES or len(batch) >= BATCH_PIECES):
            out.append(batch)
            batch, size = [], 0
        batch.append((digest, length))
        size += length
    if batch:
        out.append(batch)
    return out


def read_pieces(
    root: str, locate: Locate, wanted: Sequence[tuple[bytes, int]]
) -> list[tuple[bytes, bytes]]:
    """(digest, bytes) for each wanted piece, in order; runs in a worker thread."""
    opened = LastOpened(_opener(root))
    try:
        return [_read_one(locate, opened, digest, length) for digest, length in wanted]
    finally:
        opened.close()


def _opener(root: str) -> Callable[[str], int]:
    def open_file(rel: str) -> int:
        try:
            return os.open(f"{root}/{rel}", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise SourceChanged(f"{rel}: cannot read it since the scan ({exc.strerror})") from exc

    return open_file


def _read_one(
    locate: Locate, opened: LastOpened, digest: bytes, length: int
) -> tuple[bytes, bytes]:
    where = locate(digest)
    if where is None:
        raise SyncdError(
            f"the far side asked for piece {digest.hex()}, which the source does not have"
        )
    rel, offset, size = where
    if size != length:
        raise SyncdError(f"the far side asked for {length} bytes of {rel}, the piece has {size}")
    data = os.pread(opened.fd(rel), length, offset)
    if len(data) != length or blake3.blake3(data).digest() != digest:
        raise SourceChanged(f"{rel} changed since it was scanned; push again to rescan it")
    return digest, data
