"""Pieces for building files: from staging, or from live files the apply leaves alone.

Before the first live change, `ensure_pieces` proves every piece of every file to write
can be had: staged, or in a live file that stays as it is during the apply. A piece held
only by a file the apply replaces or removes is copied into staging first, since it will
be gone by the time it is needed. Every piece read from a live file is hashed as it is
read: a file that changed since the scan fails loudly instead of writing wrong bytes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import blake3

from protocol.tree import FileNode
from syncd.apply.blobindex import BlobIndex, Location
from syncd.apply.errors import ApplyError, MissingPieces
from syncd.apply.livetree import LiveTree
from syncd.apply.staging import Staging
from syncd.lastopened import LastOpened

_EXAMPLES = 5


class PieceReader:
    def __init__(self, staging: Staging, index: BlobIndex, live: LiveTree) -> None:
        self._staging = staging
        self._index = index
        self._live = live
        self._files = LastOpened(lambda path: live.open_entry(path, directory=False))

    def read(self, digest: bytes, length: int) -> bytes:
        if self._staging.has_blob(digest):
            data = self._staging.read_blob(digest)  # verified by staging
        else:
            location = self._index.locate(digest)
            if location is None or location.weak:
                raise ApplyError(f"piece {digest.hex()} is no longer available")
            data = self.read_live(digest, location)
        if len(data) != length:
            raise ApplyError(f"piece {digest.hex()} has {len(data)} bytes, not {length}")
        return data

    def read_if_present(self, digest: bytes, length: int) -> bytes | None:
        """The piece from staging or a live file, or None when neither holds it."""
        if not self._staging.has_blob(digest) and self._index.locate(digest) is None:
            return None
        return self.read(digest, length)

    def read_live(self, digest: bytes, location: Location) -> bytes:
        fd = self._files.fd(location.path)
        try:
            data = os.pread(fd, location.length, location.offset)
        except OSError as exc:
            raise self._live.error(location.path, exc, "reading") from exc
        if len(data) != location.length or blake3.blake3(data).digest() != digest:
            raise ApplyError(
                f"{self._live.describe(location.path)} changed during the apply: its bytes at "
                f"offset {location.offset} are no longer piece {digest.hex()}"
            )
        return data

    def close(self) -> None:
        self._files.close()


@dataclass(frozen=True, slots=True)
class Copied:
    pieces: int
    bytes: int


def ensure_pieces(
    files: Iterable[tuple[str, FileNode]], staging: Staging, index: BlobIndex, reader: PieceReader
) -> Copied:
    """Check every piece of `files` is available; copy into staging those about to vanish.

    Raises MissingPieces (before anything changed) naming what is missing.
    """
    missing: dict[bytes, tuple[str, int]] = {}
    to_copy: dict[bytes, Location] = {}
    for path, node in files:
        for digest, length in node.recipe:
            if digest in missing or digest in to_copy or staging.has_blob(digest):
                continue
            location = index.locate(digest)
            if location is None:
                missing[digest] = (path, length)
            elif location.weak:
                to_copy[digest] = location
    if missing:
        raise MissingPieces(_missing_message(missing))
    copied = 0
    for digest, location in to_copy.items():
        staging.add_blob(digest, reader.read_live(digest, location))
        copied += location.length
    reader.close()
    return Copied(len(to_copy), copied)


def _missing_message(missing: dict[bytes, tuple[str, int]]) -> str:
    total = sum(length for _, length in missing.values())
    examples = ", ".join(
        f"{digest.hex()[:16]}... of {path}"
        for digest, (path, _) in list(missing.items())[:_EXAMPLES]
    )
    return (
        f"{len(missing)} pieces ({total} bytes) of the target are neither staged nor in the "
        f"live tree: {examples}; nothing was changed"
    )
