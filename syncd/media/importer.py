"""`syncd import`: verify volumes, stage what the far side lacks, apply when complete.

One run, under the state folder's lock:
1. finish an apply a crash cut short (the journal), then scan the root afresh;
2. put the volumes given in order: newest export first, then by volume number;
3. for each volume: check its index (and signature policy), decide whether it belongs to
   the export in progress (rules below), then read its packs once, verifying every blob
   and file, and stage each blob the target still lacks exactly as a push does
   (syncd/apply/routing.py: large files assembled in place, the rest in packs);
4. when no blob of the target is lacking, apply it with the push's crash-safe apply.

Which export a volume may join (SPEC.md 9.6): one export is in progress at a time. A
volume of that export joins it (if it agrees with the other volumes); a volume of a newer
export (later creation time, then larger id) starts a new import and drops the old one's
record of volumes seen, keeping its verified staged blobs (the next apply clears them);
a volume of an older export, or one made for another site, is refused by name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from protocol.media import Signature, VolumeHeader
from protocol.tree import Node, decode_tree
from syncd import faults
from syncd.apply.canon import TargetPolicy
from syncd.apply.engine import ApplyResult, scan_far
from syncd.apply.errors import DiskFull
from syncd.apply.journal import Journal, read_journal
from syncd.apply.resume import Resumed
from syncd.apply.room import StagingLimit, expire, make_room
from syncd.apply.routing import LiveBlobs, Routing, far_descent
from syncd.apply.staging import Staging
from syncd.errors import SyncdError
from syncd.gate.gated import gated_apply
from syncd.gate.inspection import GatePolicy
from syncd.gate.origin import Origin
from syncd.gate.resumed import resume_audited
from syncd.media.errors import MediaError, VolumeRefused
from syncd.media.farsite import FarSite
from syncd.media.layout import find_volumes
from syncd.media.ordering import Allowances, AppliedMark, start_problem
from syncd.media.parity.farside import complete_with_parity, split_parity
from syncd.media.progress import ImportProgress, clear_digests, save_digests
from syncd.media.status import Missing, missing, trees_missing
from syncd.media.volume import Volume, open_volume, peek, read_blobs
from syncd.plan.descent import Descent
from syncd.snapshot import SnapshotReader
from syncd.state import StateDir


@dataclass(slots=True)
class VolumeResult:
    path: Path
    status: str  # "imported", "skipped" (nothing to do) or "refused"
    volume: int | None = None
    export_id: str | None = None
    blobs: int = 0  # blobs staged from it
    bytes: int = 0
    problem: str = ""

    def as_json(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "status": self.status,
            "volume": self.volume,
            "export": self.export_id,
            "blobs_staged": self.blobs,
            "bytes_staged": self.bytes,
            "problem": self.problem,
        }


@dataclass(slots=True)
class ImportOutcome:
    status: str  # "applied", "up-to-date" (already applied), "staged" or "refused"
    progress: ImportProgress | None
    volumes: list[VolumeResult]
    notes: list[str] = field(default_factory=list)
    missing: Missing | None = None
    applied: ApplyResult | None = None
    resumed: Resumed = field(default_factory=Resumed)

    @property
    def refused(self) -> list[VolumeResult]:
        return [v for v in self.volumes if v.status == "refused"]


def import_volumes(
    root: Path,
    state: StateDir,
    folders: Sequence[Path],
    required_key: bytes | None,
    policy: TargetPolicy | None = None,
    *,
    allowed: Allowances | None = None,
    gate: GatePolicy | None = None,
    limit: StagingLimit | None = None,
) -> ImportOutcome:
    paths, parity = split_parity(find_volumes(folders))  # parity volumes: parity/farside.py
    with state.lock():
        resumed = resume_audited(root, state)
        scanned = scan_far(root, state)
        with SnapshotReader(scanned.snapshot_path) as current, Staging.open(state) as staging:
            run = _Run(
                root,
                state,
                current,
                staging,
                required_key,
                policy=policy,
                allowed=allowed,
                limit=limit,
            )
            run.gate = gate or GatePolicy()
            for path in ordered(paths):
                run.add(path)
            complete_with_parity(run, paths, parity)
            outcome = run.finish()
    outcome.resumed = resumed
    return outcome


def ordered(paths: Sequence[Path]) -> list[Path]:
    """Newest export first, then by volume number; unreadable ones last (refused later)."""
    headers = {path: peek(path) for path in paths}
    known = {path: h for path, h in headers.items() if h is not None}
    by_volume = sorted(known, key=lambda path: known[path].volume)
    # sorted() is stable with reverse=True too: volumes stay in order within an export.
    newest = sorted(
        by_volume, key=lambda path: (known[path].created_ns, known[path].export_id), reverse=True
    )
    return newest + [path for path in paths if path not in known]


class _Run:
    def __init__(
        self,
        root: Path,
        state: StateDir,
        current: SnapshotReader,
        staging: Staging,
        required_key: bytes | None,
        *,
        policy: TargetPolicy | None,
        allowed: Allowances | None = None,
        limit: StagingLimit | None = None,
    ) -> None:
        self.root, self.state, self.current, self.staging = root, state, current, staging
        self.required_key = required_key
        self.policy = policy or TargetPolicy()  # what the far operator lets a target hold
        self.limit = limit or StagingLimit()
        self.allowed = allowed or Allowances()  # --allow-rollback, --supersede
        self.site = FarSite.load(state)
        self.progress = ImportProgress.load(state)
        self.live = LiveBlobs(current)
        self.route = Routing(staging, self.live)
        self.lacking: dict[bytes, int] | None = None  # for the export in progress
        self.results: list[VolumeResult] = []
        self.notes: list[str] = []
        self.gate = GatePolicy()
        self.signers: dict[str, Signature | None] = {}  # for the audit log (syncd/gate/)

    # -- one volume ---------------------------------------------------------------------

    def add(self, path: Path) -> None:
        result = VolumeResult(path, "refused")
        self.results.append(result)
        try:
            volume = open_volume(path, self.required_key)
            header = volume.index.header
            result.volume, result.export_id = header.volume, header.export_id
            self.signers[header.export_id] = volume.index.signature
            if self._joins(volume):
                self._stage(volume, result)
                result.status = "imported"
            else:
                result.status = "skipped"
        except VolumeRefused as exc:
            result.problem = str(exc)

    def note_volume(self, path: Path, status: str, problem: str = "") -> None:
        """Record a volume handled outside `add` (a parity volume)."""
        self.results.append(VolumeResult(path, status, problem=problem))

    def _joins(self, volume: Volume) -> bool:
        """Whether to stage this volume; False when its export is already applied."""
        header = volume.index.header
        self._check_site(volume, header)
        progress = self.progress
        if progress is not None and progress.same_export(header):
            if not progress.agrees(header) and not self.allowed.supersede:
                raise volume.refuse(
                    "its index disagrees with the other volumes of its export (target, "
                    "volume count, creation time or delete flag); if this volume is the "
                    "genuine one, import it with --supersede"
                )
            if not progress.agrees(header):  # the operator vouches for this volume's header
                self._start(header)
                return True
            if progress.applied:
                self.notes.append(f"{volume.label}: export already applied here")
            return not progress.applied
        # Site, lineage, dates and the root's own note of its last import (ordering.py).
        problem = start_problem(header, progress, AppliedMark.read(self.root), self.allowed)
        if problem is not None:
            raise volume.refuse(problem)
        self._start(header)
        return True

    def _check_site(self, volume: Volume, header: VolumeHeader) -> None:
        if header.site is None or (self.site and self.site.site_id == header.site):
            return
        here = self.site.site_id.hex() if self.site else "none yet: no receipt was written"
        raise volume.refuse(
            f"it was exported for far site {header.site.hex()}; this site is {here}"
        )

    def _start(self, header: VolumeHeader) -> None:
        old = self.progress
        if old is not None and not old.applied:
            seen = ", ".join(str(n) for n in sorted(old.seen)) or "none"
            self.notes.append(
                f"export {header.export_id} supersedes export {old.export_id} (volumes seen: "
                f"{seen} of {old.volumes}); its verified staged blobs are kept"
            )
        clear_digests(self.state)
        self.progress = ImportProgress.start(header)
        self.progress.save(self.state)
        self.lacking = None

    def _stage(self, volume: Volume, result: VolumeResult) -> None:
        index = volume.index
        lacking = self._lacking(volume)
        for digest, data in read_blobs(volume, lacking.__contains__):
            if lacking.pop(digest, None) is not None:
                self.route.put(digest, data)
                result.blobs += 1
                result.bytes += len(data)
        self.staging.flush()
        save_digests(self.state, index.header.volume, (b.digest for b in index.blobs))
        assert self.progress is not None
        self.progress.seen.add(index.header.volume)
        self.progress.save(self.state)
        faults.reached("volume")
        if volume.problems:
            more = len(volume.problems) - 1
            extra = f" (and {more} more problem(s))" if more else ""
            raise volume.refuse(volume.problems[0] + extra)

    def _lacking(self, volume: Volume) -> dict[bytes, int]:
        """What the target lacks, from this volume's tree records (staged for the apply)."""
        if self.lacking is None:
            trees = volume.index.trees
            for key, record in trees.items():
                self.staging.add_tree(key, record)

            def children(tree: bytes) -> list[Node] | None:
                record = trees.get(tree)
                return None if record is None else decode_tree(record)

            self.lacking = self._descend(volume.index.header.target, children)
        return self.lacking

    def _descend(
        self, target: bytes, children: Callable[[bytes], list[Node] | None] | None
    ) -> dict[bytes, int]:
        descent = far_descent(
            target, self.current, self.staging, self.live, self.route, trees=children
        )
        _settle(descent, target)
        need = self.route.account(descent.wanted, self.state)
        room = make_room(self.staging, self.state, need, self.limit)
        self.notes += room.notes
        self.route.start()
        return dict(descent.wanted)

    # -- the end of the run -------------------------------------------------------------

    def finish(self) -> ImportOutcome:
        progress = self.progress
        outcome = ImportOutcome("refused", progress, self.results, self.notes)
        if progress is None:
            return outcome
        if progress.applied:
            expire(self.staging)
            outcome.status = "refused" if outcome.refused else "up-to-date"
            return outcome
        if self.lacking is None:
            self.lacking = self._descend(progress.target, None)
        outcome.missing = missing(self.state, progress, self.lacking)
        if self.lacking:
            outcome.status = "refused" if outcome.refused else "staged"
            return outcome
        outcome.applied = self._apply(progress)
        outcome.status = "applied"
        return outcome

    def _apply(self, progress: ImportProgress) -> ApplyResult:
        self.route.finish(self.root)
        self.staging.flush()

        def records(tree: bytes) -> bytes | None:
            return self.staging.tree_record(tree) or self.current.record(tree)

        signature = self.signers.get(progress.export_id)
        applied = gated_apply(
            self.root,
            self.state,
            progress.target,
            records,
            self.staging,
            delete=progress.delete,
            current=self.current,
            origin=Origin.of_export(self.state, progress.export_id, signature),
            gate=self.gate,
            policy=self.policy,
        )
        faults.reached("imported")
        progress.applied = True
        progress.save(self.state)
        clear_digests(self.state)
        return applied


class TreesNotStaged(MediaError):
    """A descent met a tree record that is neither staged nor in the volume's index."""


def _settle(descent: Descent, target: bytes) -> None:
    """Run a descent whose trees are all local (a volume's index or staging)."""
    while not descent.settled:
        if descent.next_requests(1 << 16):
            raise TreesNotStaged(
                f"the tree records of target {target.hex()[:16]} are not all staged here: "
                "import any volume of the export again"
            )


@dataclass(frozen=True, slots=True)
class StatusReport:
    progress: ImportProgress | None
    missing: Missing | None  # None when nothing is in progress (or it is applied)
    interrupted: Journal | None  # an apply was cut short (and perhaps failed since)
    stale: str = ""  # why the answer comes from the last saved scan, not a fresh one

    def describe_interrupted(self) -> str:
        journal = self.interrupted
        if journal is None:
            return ""
        if not journal.failures:
            return "an apply was interrupted: the next `syncd import` finishes it"
        return (
            f"an apply was interrupted, and failed {journal.failures} time(s) since (last: "
            f"{journal.failed}); the next `syncd import` retries it, and gives it up if it "
            "fails the same way again (the import then applies afresh)"
        )


def import_status(root: Path, state: StateDir) -> StatusReport:
    """What the export in progress still needs, from a fresh scan and the staging area."""
    if not root.is_dir():
        raise MediaError(f"{root}: no such directory (is --root right?)")
    if not state.path.is_dir():
        return StatusReport(None, None, None)  # nothing was ever imported here
    with state.lock():
        progress = ImportProgress.load(state)
        interrupted = _journal(state)
        if progress is None or progress.applied:
            return StatusReport(progress, None, interrupted)
        snapshot, stale = _status_snapshot(root, state)
        with SnapshotReader(snapshot) as current, Staging.open(state) as staging:
            live = LiveBlobs(current)
            descent = far_descent(progress.target, current, staging, live, None)
            try:
                _settle(descent, progress.target)
            except TreesNotStaged:
                return StatusReport(progress, trees_missing(progress), interrupted, stale)
            lacking = missing(state, progress, descent.wanted)
            return StatusReport(progress, lacking, interrupted, stale)


def _status_snapshot(root: Path, state: StateDir) -> tuple[Path, str]:
    """A fresh scan's snapshot, or on a full disk the last one saved, and why. --status is
    asked exactly when an import stopped for want of space, and a scan writes its
    snapshot onto the far root's own file system."""
    try:
        return scan_far(root, state).snapshot_path, ""
    except DiskFull:
        if not state.snapshot.is_file():
            raise
        saved = time.localtime(state.snapshot.stat().st_mtime)
        when = time.strftime("%Y-%m-%d %H:%M:%S", saved)
        return state.snapshot, (
            f"the far file system is full, so {root} was not scanned afresh: this answer "
            f"is from its last scan ({when}); free space and ask again for a fresh one"
        )


def _journal(state: StateDir) -> Journal | None:
    try:
        return read_journal(state)
    except SyncdError as exc:
        raise MediaError(f"{exc}: the next `syncd import` gives it up and goes on") from exc
