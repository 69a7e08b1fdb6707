"""The far side's pieces by digest: staged, in a file being assembled, or in a live file.

Used where the far side reads content it holds for something other than an apply: a
parity rebuild regenerating a volume imported earlier from the blobs it brought, and
the description of a staged target (the tags' links and manifests) for the inspection
gate and the audit log. Every piece is verified as read; one found nowhere, or one
whose live file changed, is None.
"""

from __future__ import annotations

from pathlib import Path

from syncd.apply.livetree import LiveTree
from syncd.apply.pieces import PieceReader
from syncd.apply.routing import LiveBlobs
from syncd.apply.staging import Staging
from syncd.errors import SyncdError


class FarPieces:
    def __init__(self, root: Path, staging: Staging, live: LiveBlobs) -> None:
        self._staging = staging
        self._live = live
        self._tree: LiveTree | None = None
        self._reader: PieceReader | None = None
        self._root = root

    def read(self, digest: bytes, length: int) -> bytes | None:
        try:
            incoming = self._staging.incoming
            if incoming.has(digest):
                data = incoming.read(digest, length)
                if data is not None:
                    return data
            return self._pieces().read_if_present(digest, length)
        except (SyncdError, OSError):
            return None

    def _pieces(self) -> PieceReader:
        if self._reader is None:
            self._tree = LiveTree(self._root)
            self._reader = PieceReader(self._staging, self._live.index, self._tree)
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self._tree is not None:
            self._tree.close()
