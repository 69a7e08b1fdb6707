"""The exporting side's transfer manifest: the source snapshot against the export's basis.

Link files and manifests are read from the source tree by piece (every piece checked
against its digest, so a file changed since the scan is not described as something it
is not). The basis is a receipt's trees (or an assumed delivery's), whose files are not
here: the digest a tag named before is read from whichever source file holds the same
piece, which for a tag link is usually the revision link of the same manifest.
"""

from __future__ import annotations

import os

import blake3

from protocol.manifest import TransferManifest
from protocol.tree import Node, decode_tree
from syncd.apply.blobindex import BlobIndex
from syncd.lastopened import LastOpened
from syncd.media.basis import Basis
from syncd.media.images import TreeLookup, TreeView
from syncd.media.manifest import describe_change
from syncd.snapshot import SnapshotReader

_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


class SourcePieces:
    """Pieces of the source tree, by digest, verified as read."""

    def __init__(self, root: str, index: BlobIndex) -> None:
        self._root = root
        self._index = index
        self._files = LastOpened(lambda rel: os.open(f"{root}/{rel}", _FLAGS))

    def read(self, digest: bytes, length: int) -> bytes | None:
        where = self._index.locate(digest)
        if where is None or where.length != length:
            return None
        try:
            data = os.pread(self._files.fd(where.path), length, where.offset)
        except OSError:
            return None
        return data if blake3.blake3(data).digest() == digest else None

    def close(self) -> None:
        self._files.close()


def export_manifest(source: SnapshotReader, basis: Basis, pieces: SourcePieces) -> TransferManifest:
    new = TreeView(_lookup(source), source.root, pieces.read)
    old = None
    if basis.root is not None:
        trees = basis.trees

        def lookup(tree: bytes) -> list[Node] | None:
            record = trees.get(tree)
            return None if record is None else decode_tree(record)

        old = TreeView(lookup, basis.root, pieces.read)
    return describe_change(new, old, basis.description, basis.root)


def _lookup(snapshot: SnapshotReader) -> TreeLookup:
    def lookup(tree: bytes) -> list[Node] | None:
        return snapshot.tree(tree) if snapshot.record(tree) is not None else None

    return lookup
