"""`gated_apply`: the apply, behind the inspection gate and recorded in the audit log.

0. Write the target snapshot (unless it was written while the blobs arrived:
   `prepare_apply`), and refuse a target with more entries than the file system could
   hold (syncd/apply/room.py): the steps below walk every entry.
1. Describe the change (the far side's live tree against the staged target: paths and
   image changes; pieces read from staging or live files) - computed here, on the far
   side, from verified content, not taken from what the sender claims.
2. With an inspection command: lay out the files, run it; a refusal (or a failure to
   run it) is logged and raised: nothing applied, staging kept.
3. Apply (syncd/apply/engine.py), then log the outcome: applied, or failed with why.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from protocol.manifest import PathChange, TransferManifest
from protocol.tree import Node, decode_tree
from syncd.apply.ahead import TargetAhead, stop_check, stoppable, write_ahead
from syncd.apply.aliases import Aliases
from syncd.apply.canon import TargetPolicy
from syncd.apply.durable import write_chunks_atomically
from syncd.apply.engine import ApplyResult, apply_target, far_canon
from syncd.apply.room import refuse_uncountable
from syncd.apply.routing import LiveBlobs
from syncd.apply.staging import Staging
from syncd.errors import SyncdError
from syncd.gate import audit
from syncd.gate.inspection import GatePolicy, InspectionRefused, inspect, manifest_head
from syncd.gate.origin import Origin
from syncd.media.farpieces import FarPieces
from syncd.media.images import TreeView
from syncd.media.manifest import change_json_chunks, describe_change, path_changes, sort_paths
from syncd.snapshot import SnapshotReader
from syncd.state import StateDir

PENDING = "pending.json"
# Paths listed while the blobs arrive, at most (~200 bytes each held): more would be held
# on top of the transfer's own memory (a cold push of a million files: some 200 MB), so
# a larger change is listed after the transfer, as before.
EARLY_PATHS = 65_536

log = logging.getLogger("syncd.gate")


def gated_apply(
    root: Path,
    state: StateDir,
    target: bytes,
    records: Callable[[bytes], bytes | None],
    staging: Staging,
    *,
    delete: bool,
    current: SnapshotReader,
    origin: Origin,
    gate: GatePolicy,
    policy: TargetPolicy | None = None,
    prepared: Prepared | None = None,
) -> ApplyResult:
    """apply_target's arguments (`policy`: what a target may hold), plus what the gate
    needs: the live snapshot the apply starts from, where the content comes from, and the
    operator's inspection command (`gate`); `prepared`: what `prepare_apply` worked out
    for this target while its blobs arrived."""
    if prepared is None or prepared.target.written.offered != target:
        prepared = Prepared(None, _target_ahead(state, target, records, policy))
    # Before the change is described: describing, like building, walks every entry.
    refuse_uncountable(state, prepared.target.written.summary, current.summary)
    pieces = FarPieces(root, staging, LiveBlobs(current))
    try:
        new = TreeView(_lookup(records), target, pieces.read)
        old = TreeView(_lookup(current.record), current.root, pieces.read)
        basis = f"far snapshot {current.root.hex()[:16]}"
        paths = prepared.take_paths()
        change = describe_change(new, old, basis, current.root, paths)
        del paths
        entry = audit.Entry.of(origin, current.root, target, change)
        head = manifest_head(origin, current.root, target)
        save_pending(state, head, change)
        if gate.inspect:
            try:
                verdict = inspect(state, gate, new, head, change)
            except InspectionRefused as exc:
                audit.append(state, _with(entry, "refused", problem=str(exc)))
                raise
            details = verdict.as_json(gate.inspect)
            entry = _with(entry, "applied", inspection=details)
            if verdict.code != 0:
                why = (
                    f"the inspection command exited with status {verdict.code}: nothing was "
                    "applied, the staged files are kept"
                )
                audit.append(state, _with(entry, "refused", problem=why))
                raise InspectionRefused(f"{why}\n{verdict.output.rstrip()}".rstrip())
    finally:
        pieces.close()
    # The description holds every path it names (a cold push of a million files: some
    # 250 MB); the audit entry keeps only its counts and images, so the apply that
    # follows does not carry it.
    del change, new, old
    try:
        result = apply_target(
            root,
            state,
            target,
            records,
            staging,
            delete=delete,
            policy=policy,
            ahead=prepared.target,
        )
    except SyncdError as exc:
        try:
            audit.append(state, _with(entry, "failed", problem=str(exc)))
        except audit.AuditError as logged:
            # A full disk fails the apply and then this entry: report the apply's own
            # error (it says what was kept and how it resumes), not the log's.
            log.warning("%s (the failed apply is not in the audit log)", logged)
        raise
    audit.append(state, _with(entry, "applied", after=result.root))
    clear_pending(state)
    return result


@dataclass(slots=True)
class Prepared:
    """What an apply needs of a target's tree records alone, worked out while a push's
    blobs arrive (syncd/session/server.py): the change's paths (None: more than
    EARLY_PATHS; the images need pieces, so they wait) and the target snapshot, written
    ahead (syncd/apply/ahead.py)."""

    paths: tuple[PathChange, ...] | None
    target: TargetAhead

    def take_paths(self) -> tuple[PathChange, ...] | None:
        """The paths, given up: at a million paths they are some 250 MB, which the apply
        that follows the description must not carry (nor this object's holders)."""
        paths, self.paths = self.paths, None
        return paths


def prepare_apply(
    state: StateDir,
    target: bytes,
    records: Callable[[bytes], bytes | None],
    current: SnapshotReader,
    *,
    policy: TargetPolicy | None,
    stop: threading.Event,
) -> Prepared:
    """gated_apply's work that reads no piece; raises Stopped once `stop` is set. Its
    errors are not the apply's: gated_apply redoes what this did not finish, and meets
    them where it always did."""
    ahead = _target_ahead(state, target, stoppable(records, stop), policy)
    check = stop_check(stop)
    new = TreeView(_lookup(records), target, _no_piece, visit=check)
    old = TreeView(_lookup(current.record), current.root, _no_piece, visit=check)
    listed = list(itertools.islice(path_changes(new, old), EARLY_PATHS + 1))
    return Prepared(None if len(listed) > EARLY_PATHS else sort_paths(listed), ahead)


def _target_ahead(
    state: StateDir,
    target: bytes,
    records: Callable[[bytes], bytes | None],
    policy: TargetPolicy | None,
) -> TargetAhead:
    """The target snapshot, written for apply_target to take over (syncd/apply/ahead.py)."""
    canon = far_canon(state, policy)
    with Aliases.load(state, canon.key()) as aliases:
        return write_ahead(state, target, records, canon, aliases)


def _no_piece(digest: bytes, length: int) -> bytes | None:
    return None


def pending_path(state: StateDir) -> Path:
    """The change staged for an apply that has not succeeded yet (`syncd show ROOT`)."""
    return state.path / PENDING


def save_pending(state: StateDir, head: dict[str, object], change: TransferManifest) -> None:
    try:
        write_chunks_atomically(pending_path(state), change_json_chunks(head, change))
    except OSError as exc:
        raise audit.AuditError(f"{pending_path(state)}: cannot write: {exc.strerror}") from exc


def clear_pending(state: StateDir) -> None:
    with contextlib.suppress(FileNotFoundError):
        pending_path(state).unlink()


def _with(
    entry: audit.Entry,
    status: str,
    *,
    problem: str = "",
    after: bytes | None = None,
    inspection: dict[str, object] | None = None,
) -> audit.Entry:
    return audit.Entry(
        entry.origin,
        status,
        entry.before,
        after,
        entry.target,
        entry.files,
        entry.images,
        inspection if inspection is not None else entry.inspection,
        problem,
    )


def _lookup(records: Callable[[bytes], bytes | None]) -> Callable[[bytes], list[Node] | None]:
    def lookup(tree: bytes) -> list[Node] | None:
        record = records(tree)
        return None if record is None else decode_tree(record)

    return lookup
