"""`syncd export`: write what the far side lacks onto volumes.

1. Scan SRC (incrementally) into its state folder.
2. Choose the basis (basis.py): a receipt, the newest one kept, or nothing.
3. Descend the source snapshot against the basis exactly as a far side does during a
   push (syncd/plan/descent.py): trees the far side holds are skipped, and a piece is
   written only when the far side has it nowhere, each once.
4. Describe what the export carries against that basis (its transfer manifest,
   transfer.py), held by every index.
5. Plan volumes within the size limits (plan.py; with --parity, leaving room for the
   parity volumes, parity/geometry.py) and write them into `DIR/<export-id>.partial/`,
   then the parity volumes computed from them (parity/encode.py), renamed to
   `DIR/<export-id>/` only once every volume is durable: an interrupted export leaves
   nothing that looks complete.
6. Note the export in the site's record (sites.py); with --assume-delivered, keep its
   target as the basis of the next export (delivered.py).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from protocol.manifest import encode_manifest
from protocol.media import INDEX_FIXED_MAX, Signer, VolumeHeader, encode_trees
from syncd.apply.blobindex import BlobIndex
from syncd.apply.durable import fsync_dir
from syncd.media.basis import Basis, choose_basis
from syncd.media.delivered import assumed_basis, keep_delivered
from syncd.media.errors import MediaError
from syncd.media.layout import PARTIAL_SUFFIX, new_export_id
from syncd.media.parity.encode import ParitySource, write_parity
from syncd.media.parity.geometry import Geometry, plan_with_parity
from syncd.media.plan import MediaLimits, VolumePlan, plan_volumes
from syncd.media.records import snapshot_records
from syncd.media.signing import load_public_key, load_signer
from syncd.media.sites import ExportRecord, SiteBook, source_lineage
from syncd.media.transfer import SourcePieces, export_manifest
from syncd.media.writer import VolumeSource, WrittenVolume, write_volume
from syncd.plan.descent import Descent
from syncd.progress import NoProgress, Progress
from syncd.scan.api import ScanResult, scan_root
from syncd.scan.problems import Reporter
from syncd.snapshot import SnapshotReader
from syncd.sourceguard import refuse_empty_source
from syncd.state import StateDir
from syncd.units import format_bytes

_DESCENT_BATCH = 1 << 16


@dataclass(frozen=True, slots=True)
class ExportOptions:
    src: Path
    to: Path
    limits: MediaLimits
    state: Path | None = None
    site: str = "default"
    receipt: Path | None = None
    full: bool = False
    sign_key: Path | None = None
    require_signed_by: Path | None = None
    parity: int = 0  # parity volumes to add (parity/)
    assume_delivered: bool = False  # one-way link: build on the last export as if confirmed
    allow_empty: bool = False  # an empty SRC is refused otherwise (syncd/sourceguard.py)


@dataclass(frozen=True, slots=True)
class ExportOutcome:
    export_id: str
    folder: Path
    scan: ScanResult
    basis: Basis
    volumes: list[WrittenVolume]
    blobs: int
    blob_bytes: int
    seconds: float

    def as_json(self) -> dict[str, object]:
        return {
            "export": self.export_id,
            "folder": str(self.folder),
            "snapshot": self.scan.summary.id_hex,
            "basis": self.basis.kind,
            "basis_text": self.basis.description,
            "receipt": self.basis.sequence or None,
            "blobs": self.blobs,
            "blob_bytes": self.blob_bytes,
            "bytes": sum(v.bytes for v in self.volumes),
            "volumes": [v.as_json() for v in self.volumes],
            "seconds": round(self.seconds, 3),
        }


def export(
    options: ExportOptions, report: Reporter | None = None, progress: Progress | None = None
) -> ExportOutcome:
    started = time.monotonic()
    sign = load_signer(options.sign_key) if options.sign_key else None
    required = load_public_key(options.require_signed_by) if options.require_signed_by else None
    state = StateDir(options.src, options.state)
    with state.lock():
        scan = scan_root(options.src, state, report=report)
        what = "importing the export would delete"
        refuse_empty_source(options.src, scan.summary, what=what, allowed=options.allow_empty)
        book = SiteBook.load(state, options.site)
        if options.assume_delivered and not (options.full or options.receipt):
            basis = assumed_basis(book, required_key=required)
        else:
            basis = choose_basis(
                book, receipt=options.receipt, full=options.full, required_key=required
            )
        lineage = source_lineage(state)
        with SnapshotReader(scan.snapshot_path) as source:
            header, written = _export_snapshot(options, source, basis, (sign, lineage), progress)
        if options.assume_delivered:
            keep_delivered(book, scan.snapshot_path, header.export_id)
        book.record_export(
            ExportRecord(
                header.export_id,
                header.created_ns,
                header.target,
                header.volumes,
                header.export_blobs,
                header.export_bytes,
                basis.sequence,
            )
        )
    return ExportOutcome(
        header.export_id,
        options.to / header.export_id,
        scan,
        basis,
        written,
        header.export_blobs,
        header.export_bytes,
        time.monotonic() - started,
    )


def _export_snapshot(
    options: ExportOptions,
    source: SnapshotReader,
    basis: Basis,
    identity: tuple[Signer | None, bytes],  # how to sign, and this source's lineage
    progress: Progress | None,
) -> tuple[VolumeHeader, list[WrittenVolume]]:
    sign, lineage = identity
    wanted = lacking(source, basis)
    trees = encode_trees(snapshot_records(source))
    index = BlobIndex.build(source)
    pieces = SourcePieces(str(options.src), index)
    try:
        manifest = encode_manifest(export_manifest(source, basis, pieces))
    finally:
        pieces.close()
    fixed = INDEX_FIXED_MAX + len(trees) + len(manifest)
    geometry = None
    if options.parity:
        blobs = list(wanted.items())
        shared = len(manifest) + len(trees)
        plans, geometry = plan_with_parity(blobs, fixed, shared, options.limits, options.parity)
    else:
        plans = plan_volumes(wanted.items(), fixed, options.limits)
    _check_space(options.to, plans, geometry)
    created = time.time_ns()
    summary = source.summary
    header = VolumeHeader(
        export_id=new_export_id(created),
        created_ns=created,
        volume=1,
        volumes=len(plans),
        target=source.root,
        target_files=summary.files,
        target_bytes=summary.bytes,
        delete=summary.complete,  # an incomplete scan must not delete on the far side
        site=basis.site,
        export_blobs=len(wanted),
        export_bytes=sum(wanted.values()),
        lineage=lineage,
        parity=options.parity,
    )
    max_file = options.limits.max_file_size
    volume_source = VolumeSource(
        options.src, _locator(index), header, trees, sign, max_file, manifest=manifest
    )
    parity = None
    if geometry is not None:
        parity = ParitySource(header, manifest + trees, geometry, sign, max_file)
    written = _write_export(
        options.to, header.export_id, plans, volume_source, parity=parity, progress=progress
    )
    return header, written


def lacking(source: SnapshotReader, basis: Basis) -> dict[bytes, int]:
    """The pieces the far side lacks, in the order first needed (the push's descent; every
    tree is local here, so it never waits for one)."""
    descent = Descent(
        source.root,
        live_tree=basis.live_tree,
        staged=source.tree,
        have_blob=basis.has_blob,
    )
    while not descent.settled:
        if descent.next_requests(_DESCENT_BATCH):
            raise MediaError("the source snapshot lacks one of its own trees")
    return descent.wanted


def _locator(index: BlobIndex) -> Callable[[bytes], tuple[str, int, int] | None]:
    def locate(digest: bytes) -> tuple[str, int, int] | None:
        where = index.locate(digest)
        return None if where is None else (where.path, where.offset, where.length)

    return locate


def _check_space(to: Path, plans: list[VolumePlan], geometry: Geometry | None) -> None:
    try:
        to.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(to).free
    except OSError as exc:
        raise MediaError(f"{to}: cannot use it for the export: {exc.strerror}") from exc
    needed = sum(p.total_max for p in plans)
    if geometry is not None:  # each parity volume is about the size of the largest data one
        needed += geometry.parity * max(p.total_max for p in plans)
    if needed > free:
        raise MediaError(
            f"{to} has {format_bytes(free)} free; the export needs up to {format_bytes(needed)}"
        )


def _write_export(
    to: Path,
    export_id: str,
    plans: list[VolumePlan],
    source: VolumeSource,
    *,
    parity: ParitySource | None,
    progress: Progress | None,
) -> list[WrittenVolume]:
    partial, final = to / (export_id + PARTIAL_SUFFIX), to / export_id
    bar = progress or NoProgress()
    extra = parity.geometry.stream_bytes * parity.geometry.parity if parity else 0
    bar.start(sum(p.pack_bytes for p in plans) + extra, sum(p.blob_count for p in plans))
    try:
        partial.mkdir()
        written = [
            write_volume(partial, number, plan, source, bar.advance)
            for number, plan in enumerate(plans, 1)
        ]
        if parity is not None:
            written += write_parity(partial, written, parity, bar.advance)
        fsync_dir(partial)
        partial.rename(final)
        fsync_dir(to)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise MediaError(f"{partial}: cannot write the export: {exc.strerror}") from exc
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        bar.finish()
    return [_moved(volume, final) for volume in written]


def _moved(volume: WrittenVolume, final: Path) -> WrittenVolume:
    return WrittenVolume(
        volume.number,
        final / volume.path.name,
        volume.blobs,
        volume.pack_bytes,
        volume.index_bytes,
        volume.kind,
    )
