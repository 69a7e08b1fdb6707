"""`syncd receipt`: the far side's state, for the connected side's next export.

It finishes an interrupted apply first (so the receipt describes a tree as applied, not
half-way; one that fails again is noted or given up, never blocking the receipt), scans
the root afresh (the far side's own scan is the truth), and lists the snapshot's tree
records, the blobs kept in staging (those in packs and those already
written into files being assembled), and the last export imported. The file is written
to a temporary name, made durable, then renamed: a receipt is whole or absent.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from protocol.media import LastExport, ReceiptHeader, Signer, encode_receipt, encode_trees
from syncd.apply.durable import fsync_dir
from syncd.apply.engine import scan_far
from syncd.apply.staging import Staging
from syncd.gate.resumed import resume_audited
from syncd.media.errors import MediaError
from syncd.media.farsite import FarSite
from syncd.media.progress import ImportProgress
from syncd.media.records import snapshot_records
from syncd.scan.api import ScanResult
from syncd.snapshot import SnapshotReader
from syncd.state import StateDir


@dataclass(frozen=True, slots=True)
class ReceiptOutcome:
    path: Path
    header: ReceiptHeader
    staged_blobs: int
    bytes: int
    scan: ScanResult

    def as_json(self) -> dict[str, object]:
        h = self.header
        last = h.last_export
        return {
            "receipt": str(self.path),
            "site": h.site.hex(),
            "sequence": h.sequence,
            "snapshot": h.root.hex(),
            "files": h.files,
            "staged_blobs": self.staged_blobs,
            "last_export": None if last is None else last.export_id,
            "last_export_applied": None if last is None else last.applied,
            "bytes": self.bytes,
        }


def write_receipt(root: Path, state: StateDir, out: Path, sign: Signer | None) -> ReceiptOutcome:
    with state.lock():
        resume_audited(root, state)
        site = FarSite.load_or_create(state)
        scanned = scan_far(root, state)
        with SnapshotReader(scanned.snapshot_path) as snapshot, Staging.open(state) as staging:
            trees = encode_trees(snapshot_records(snapshot))
            staged = _staged(staging)
            summary = snapshot.summary
        header = ReceiptHeader(
            site=site.site_id,
            sequence=site.next_receipt(),
            created_ns=time.time_ns(),
            root=summary.root,
            files=summary.files,
            bytes=summary.bytes,
            complete=summary.complete,
            last_export=_last_export(state),
        )
        data = encode_receipt(header, trees, staged, sign)
    _write(out, data)
    return ReceiptOutcome(out, header, len(staged), len(data), scanned)


def _staged(staging: Staging) -> list[tuple[bytes, int]]:
    found = dict(staging.blobs())
    found.update(staging.incoming.finished())
    return sorted(found.items())


def _last_export(state: StateDir) -> LastExport | None:
    progress = ImportProgress.load(state)
    if progress is None:
        return None
    return LastExport(
        progress.export_id, progress.created_ns, progress.applied, tuple(sorted(progress.seen))
    )


def _write(out: Path, data: bytes) -> None:
    tmp = out.with_name(out.name + ".partial")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        tmp.replace(out)
        fsync_dir(out.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise MediaError(f"{out}: cannot write the receipt: {exc.strerror}") from exc
