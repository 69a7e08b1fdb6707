"""The far side's use of parity volumes during `syncd import` (two hooks in importer.py).

1. `split_parity`: parity volumes are set aside before the data volumes are imported
   as usual (the data volumes that are here and sound are all a run needs).
2. `complete_with_parity`, after them: when the export still lacks blobs, the data
   volumes that hold them (absent, or here but damaged) are rebuilt from any K sound
   blocks per stripe into `STATE/media/rebuilt/`, imported through the normal path
   (their index's checksum and signature verify as usual), and removed. Data volumes
   imported in earlier runs count as sound: they are regenerated from the blobs they
   brought, found by digest in staging or the live tree.

The rebuild is a copy of the volumes it makes on the root's file system, from which
their blobs are then staged: twice their size is checked first and a shortfall named.
Every parity volume given is listed in the outcome: used, not needed, or refused (and
why).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from protocol.errors import ProtocolError
from protocol.media import Signature
from protocol.parity import MAGIC_PARITY, ParityIndex, decode_parity
from protocol.tree import Node, decode_tree
from syncd.apply.routing import LiveBlobs, far_descent
from syncd.apply.staging import Staging
from syncd.media.errors import MediaError, VolumeRefused
from syncd.media.farpieces import FarPieces
from syncd.media.layout import INDEX_NAME, describe, index_magic
from syncd.media.mediafile import MediaFileRefused, read_verified, same_trailer
from syncd.media.parity.rebuild import Rebuilder
from syncd.media.parity.sources import (
    AbsentBlocks,
    BlobBlocks,
    BlobCache,
    BlockSource,
    FileBlocks,
)
from syncd.media.parity.status import record_parity
from syncd.media.progress import ImportProgress
from syncd.media.volume import MAX_INDEX_BYTES, peek
from syncd.snapshot import SnapshotReader
from syncd.state import StateDir
from syncd.units import format_bytes


class Result(Protocol):
    """The importer's record of one volume (importer.VolumeResult)."""

    status: str
    volume: int | None
    export_id: str | None


class Run(Protocol):
    """The importer's run, as the parity hook uses it (importer._Run)."""

    root: Path
    state: StateDir
    current: SnapshotReader
    staging: Staging
    live: LiveBlobs
    required_key: bytes | None
    progress: ImportProgress | None
    notes: list[str]
    signers: dict[str, Signature | None]  # export id -> signature of its indexes

    @property
    def results(self) -> Sequence[Result]: ...

    def add(self, path: Path) -> None: ...

    def note_volume(self, path: Path, status: str, problem: str = "") -> None: ...


def split_parity(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """(data volumes, parity volumes) by the magic of their index."""
    data: list[Path] = []
    parity: list[Path] = []
    for path in paths:
        (parity if index_magic(path) == MAGIC_PARITY else data).append(path)
    return data, parity


@dataclass(frozen=True, slots=True)
class _Parity:
    path: Path
    index: ParityIndex


def open_parity(path: Path, required_key: bytes | None) -> _Parity:
    """A parity volume's index, its signature (per `required_key`) and checksum checked
    before it is decoded, as a data volume's (mediafile.py); VolumeRefused if not."""
    label = describe(path)
    try:
        data, trailer = read_verified(
            path / INDEX_NAME, MAGIC_PARITY, required_key, MAX_INDEX_BYTES
        )
        index = decode_parity(data)
    except (MediaFileRefused, ProtocolError) as exc:
        raise VolumeRefused(label, f"parity index: {exc}") from exc
    if not same_trailer(index.checksum, index.signature, trailer):
        raise VolumeRefused(label, "parity index: its frames do not end with the END checked")
    return _Parity(path, index)


def complete_with_parity(
    run: Run, data_paths: Sequence[Path], parity_paths: Sequence[Path]
) -> None:
    """Rebuild and import the data volumes the export in progress still needs."""
    if run.progress is not None:
        export_id = run.progress.export_id
        signature = run.signers.get(export_id)
        key = signature.public_key if signature is not None else None
        record_parity(run.state, export_id, _parity_count(data_paths, run.progress), key)
    if not parity_paths:
        return
    usable = _usable(run, parity_paths)
    if not usable:
        return
    reference = usable[0].index
    export_id = reference.header.volume.export_id
    record_parity(run.state, export_id, reference.header.parity)
    needed = _needed(run, reference)
    if not needed:
        for p in usable:
            run.note_volume(
                p.path, "skipped", "not needed: no data volume of its export is lacking"
            )
        return
    folder = run.state.path / "media" / "rebuilt" / export_id
    shutil.rmtree(folder.parent, ignore_errors=True)  # left by a run that was killed
    try:
        _rebuild_and_import(run, usable, needed, data_paths, folder)
    except MediaError as exc:  # the data volumes imported so far stay staged
        for p in usable:
            run.note_volume(p.path, "refused", f"parity volume {describe(p.path)}: {exc}")
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


def _parity_count(paths: Sequence[Path], progress: ImportProgress) -> int:
    for path in paths:
        header = peek(path)
        if header is not None and progress.same_export(header) and header.parity:
            return header.parity
    return 0


def _usable(run: Run, paths: Sequence[Path]) -> list[_Parity]:
    """The parity volumes of the newest export among them that agree with one another and
    with the export in progress; the others are noted as refused or skipped."""
    opened: list[_Parity] = []
    for path in paths:
        try:
            opened.append(open_parity(path, run.required_key))
        except VolumeRefused as exc:
            run.note_volume(path, "refused", str(exc))
    if not opened:
        return []
    newest = max(
        opened, key=lambda p: (p.index.header.volume.created_ns, p.index.header.volume.export_id)
    )
    key = _set_key(newest.index)
    usable = []
    for p in opened:
        if _set_key(p.index) == key:
            usable.append(p)
        else:
            run.note_volume(p.path, "skipped", "parity volume of another (older) export")
    progress = run.progress
    h = newest.index.header.volume
    if progress is not None and not progress.same_export(h) and not progress.is_newer(h):
        for p in usable:
            run.note_volume(
                p.path,
                "skipped",
                f"export {h.export_id} is older than export {progress.export_id} here",
            )
        return []
    if progress is not None and progress.same_export(h) and progress.applied:
        for p in usable:
            run.note_volume(p.path, "skipped", "its export is applied here already")
        return []
    return sorted(usable, key=lambda p: p.index.header.volume.volume)


def _set_key(index: ParityIndex) -> tuple[object, ...]:
    h = index.header
    members = tuple(m.checksum for m in index.members)
    return (
        h.volume.export_id,
        h.volume.created_ns,
        h.volume.target,
        h.block_size,
        h.stripes,
        members,
    )


def _needed(run: Run, index: ParityIndex) -> list[int]:
    """Data volumes holding blobs the target still lacks, in order."""
    trees = index.trees

    def children(tree: bytes) -> list[Node] | None:
        record = trees.get(tree)
        return None if record is None else decode_tree(record)

    target = index.header.volume.target
    descent = far_descent(target, run.current, run.staging, run.live, None, trees=children)
    while not descent.settled:
        if descent.next_requests(1 << 16):
            raise MediaError(
                f"parity index of export {index.header.volume.export_id}: a tree is missing"
            )
    lacking = descent.wanted
    return [m.volume for m in index.members if any(b.digest in lacking for b in m.blobs)]


def _rebuild_and_import(
    run: Run, usable: list[_Parity], needed: list[int], data_paths: Sequence[Path], folder: Path
) -> None:
    index = usable[0].index
    members = {m.volume: m for m in index.members}
    # The rebuilt copies, then the blobs staged from them: up to twice their size.
    _check_space(folder.parent.parent, 2 * sum(members[n].stream_size for n in needed))
    pieces = FarPieces(run.root, run.staging, run.live)
    cache = BlobCache(pieces.read)
    given = _given(index, data_paths)
    block = index.header.block_size
    sources: dict[int, BlockSource] = {}
    for number, member in members.items():
        if number in given:
            files = [(given[number] / f.name, f.size) for f in member.files]
            sources[number] = FileBlocks(given[number].name, member.blocks, block, files)
        elif number not in needed:  # imported before, or nothing in it is lacking
            name = f"vol-{number:04d} (regenerated from the blobs here)"
            sources[number] = BlobBlocks(name, member, block, cache)
        else:
            sources[number] = AbsentBlocks(f"vol-{number:04d}", member.blocks, block)
    parity: dict[int, BlockSource] = {
        p.index.header.volume.volume: FileBlocks(
            p.path.name, p.index.blocks, block, [(p.path / f.name, f.size) for f in p.index.files]
        )
        for p in usable
    }
    try:
        rebuilt = Rebuilder(index, sources, parity).rebuild(needed, folder)
    finally:
        for source in [*sources.values(), *parity.values()]:
            source.close()
        pieces.close()
    for p in usable:
        run.note_volume(
            p.path,
            "imported",
            "parity volume used to rebuild volume(s) " + ", ".join(str(n) for n in needed),
        )
    for volume in rebuilt:
        run.notes.append(volume.describe(index))
        if len(volume.lost) == len(members[volume.volume].blocks):
            continue  # nothing of it could be rebuilt: it stays missing, by name
        run.add(volume.path)
        result = run.results[-1]
        if result.status == "imported" and not volume.lost:
            _repaired(run, index.header.volume.export_id, volume.volume)
        elif result.status == "refused" and volume.lost:
            result.status = "partial"  # the blobs outside the lost ranges are staged


def _repaired(run: Run, export_id: str, number: int) -> None:
    """A damaged copy of a volume now rebuilt in full is no longer a problem of the run."""
    for result in run.results[:-1]:
        if result.status == "refused" and (result.export_id, result.volume) == (export_id, number):
            result.status = "repaired"


def _given(index: ParityIndex, paths: Sequence[Path]) -> dict[int, Path]:
    """The data volumes of this export given in this run, by number (by their folder's
    name when their index cannot be read: their packs may still be sound)."""
    h = index.header.volume
    found: dict[int, Path] = {}
    for path in paths:
        header = peek(path)
        if header is not None:
            if header.export_id == h.export_id and header.created_ns == h.created_ns:
                found[header.volume] = path
            continue
        name = path.name
        if path.parent.name == h.export_id and name.startswith("vol-") and name[4:].isdigit():
            number = int(name[4:])
            if 1 <= number <= index.header.data_volumes:
                found.setdefault(number, path)
    return found


def _check_space(folder: Path, needed: int) -> None:
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
    try:
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise MediaError(f"{folder}: cannot rebuild volumes there: {exc.strerror}") from exc
    if needed > free:
        raise MediaError(
            f"rebuilding the lost volumes needs {format_bytes(needed)} in {folder}, which has "
            f"{format_bytes(free)} free: free some space, or bring the volumes themselves"
        )
