"""One-way links: exports that build on the last one as if its receipt had come back.

Over a data diode no receipt can return, so without one every export would carry
everything exported since the last receipt. `syncd export --assume-delivered` keeps
the target snapshot of each export it makes (`STATE/media/site-<NAME>.delivered`, a
copy of the source snapshot file, with `.delivered-id` naming the export), and takes the
next export's basis to be exactly that tree: the far side, once it has imported that
export, holds that tree and nothing staged. When no export was kept yet, the basis is
chosen as usual (the newest receipt, else everything). A receipt given with
`--receipt` always wins: it is the far side's own word.

If an export is lost on the way, the next one lacks what the lost one carried; the far
side's import then names the blobs no volume holds, and the remedy is to carry the
lost export (kept on this side) first, or a `--full` export.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from protocol.tree import FileNode
from syncd.apply.durable import fsync_dir, write_atomically
from syncd.errors import SnapshotFileError
from syncd.media.basis import Basis, choose_basis
from syncd.media.errors import MediaError
from syncd.media.records import snapshot_records
from syncd.media.sites import SiteBook
from syncd.snapshot import SnapshotReader


def _paths(book: SiteBook) -> tuple[Path, Path]:
    return (
        book.path.with_name(book.path.name + ".delivered"),
        book.path.with_name(book.path.name + ".delivered-id"),
    )


def assumed_basis(book: SiteBook, *, required_key: bytes | None) -> Basis:
    """The target of the last export made with --assume-delivered, else the usual basis."""
    snapshot, id_file = _paths(book)
    if not snapshot.exists():
        return choose_basis(book, receipt=None, full=False, required_key=required_key)
    try:
        export_id = id_file.read_text().strip()
        with SnapshotReader(snapshot) as reader:
            records = dict(snapshot_records(reader))
            blobs = frozenset(
                digest
                for _, node in reader.walk()
                if isinstance(node, FileNode)
                for digest, _ in node.recipe
            )
            root = reader.root
    except (OSError, SnapshotFileError) as exc:
        raise MediaError(
            f"{snapshot}: cannot read the last delivered export: {exc}; "
            "export with --receipt or --full instead"
        ) from exc
    text = (
        f"assumed delivered: export {export_id} (far snapshot {root.hex()[:16]}), as if its "
        "receipt had come back (--assume-delivered)"
    )
    return Basis("assumed", text, book.site_id, 0, records, blobs, root)


def keep_delivered(book: SiteBook, snapshot: Path, export_id: str) -> None:
    """Keep the snapshot just exported as the basis of the next --assume-delivered export."""
    kept, id_file = _paths(book)
    tmp = kept.with_name(kept.name + ".tmp")
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(snapshot, tmp)
        with tmp.open("rb+") as stream:
            os.fsync(stream.fileno())
        tmp.replace(kept)
        write_atomically(id_file, export_id.encode())
        fsync_dir(kept.parent)
    except OSError as exc:
        raise MediaError(f"{kept}: cannot keep the delivered snapshot: {exc.strerror}") from exc
