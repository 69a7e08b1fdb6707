"""The far side's apply: make the live tree equal a target snapshot, safely.

1. The target's tree records go into one snapshot file in the state folder, so that the
   apply, and its resumption after a crash, is self-contained. They go in as this side
   writes them (canon.py: modes masked, times as the file system keeps them), and a
   target that holds what this side refuses (a symlink out of the root, a path over
   PATH_MAX) stops here, with nothing written (target.py).
2. The root is scanned afresh (the far side's own scan is the truth) and the ordered plan
   computed from it (syncd/plan/order.py).
3. Every piece of every file to write is proven available - staged, or in a live file
   the plan leaves alone - and pieces only held by files about to change are copied into
   staging. Anything missing stops the apply here, with nothing changed.
4. Staging is flushed and the journal written; only then does the live tree change, step
   by step (executor.py).
5. A final scan must equal the target (with delete=False: contain it). Then the journal,
   the staged blobs and the scratch folders go, and the offered tree ids that were
   written under other ids are remembered (aliases.py).

Resuming reruns steps 2-5 against the journal's target: what is already in place is
simply not in the new plan, so applying twice is harmless. An apply or resume that
fails (rather than being killed) notes how in the journal; resume.py gives up one that
fails twice the same way.

The scans take the state folder's lock (re-entrant within a process); the caller is
expected to hold it for the whole session, so that no other process applies meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from protocol.tree import DirNode, FileNode, Node
from syncd import faults
from syncd.apply.ahead import TargetAhead, adopt
from syncd.apply.aliases import Aliases, save_aliases
from syncd.apply.blobindex import BlobIndex
from syncd.apply.builder import Builder, Built
from syncd.apply.canon import Canon, TargetPolicy, probe_times
from syncd.apply.errors import ApplyError, TreeChanged
from syncd.apply.executor import Executor
from syncd.apply.incoming import content_key
from syncd.apply.journal import (
    TARGET_FILE,
    Journal,
    note_failure,
    read_journal,
    remove_journal,
    write_journal,
)
from syncd.apply.livetree import LiveTree, os_error
from syncd.apply.pieces import Copied, PieceReader, ensure_pieces
from syncd.apply.staging import Staging
from syncd.apply.target import write_target
from syncd.apply.workspace import Workspace
from syncd.apply.written import WrittenFiles
from syncd.errors import SnapshotFileError, SyncdError
from syncd.plan.order import Delete, MoveAside, Op, PlaceTree, WriteFile, plan_apply, touched
from syncd.scan.api import ScanFailed, ScanResult, scan_root
from syncd.scan.hashing import settle
from syncd.scan.problems import Reporter
from syncd.scan.scanner import KnownFiles, ScanOptions
from syncd.snapshot import SnapshotReader
from syncd.state import STATE_NAME, StateDir

log = logging.getLogger("syncd.apply")
_SHOWN = 5


@dataclass(frozen=True, slots=True)
class ApplyHooks:
    """`before_step(step, what)` runs before every live-tree mutation, numbered from 1."""

    before_step: Callable[[int, str], None]


@dataclass(frozen=True, slots=True)
class ApplyResult:
    root: bytes  # the tree's snapshot id afterwards (the target, unless delete=False kept extras)
    target: bytes  # the target as written here (canon.py): `root` when the tree equals it
    files_written: int
    files_deleted: int
    bytes_written: int
    symlinks_written: int = 0
    dirs_created: int = 0
    entries_deleted: int = 0  # deletions as the plan counts them: a directory is one
    pieces_copied: int = 0  # pieces copied into staging from files the apply replaced
    steps: int = 0
    resumed: bool = False
    seconds: float = 0.0


def apply_target(
    root: Path,
    state: StateDir,
    target: bytes,
    records: Callable[[bytes], bytes | None],
    staging: Staging,
    *,
    delete: bool,
    hooks: ApplyHooks | None = None,
    policy: TargetPolicy | None = None,
    ahead: TargetAhead | None = None,
) -> ApplyResult:
    """Make `root` equal the snapshot `target`, whose tree records `records` returns, as
    this side writes it under the operator's `policy`; `ahead`: its snapshot as written
    while the blobs arrived (ahead.py), taken over if it is this target under this canon."""
    started = time.monotonic()
    state.ensure()
    remove_journal(state)  # a cut-short apply of another target is superseded by this one
    canon = far_canon(state, policy)
    written = adopt(state, ahead, target, canon)
    if written is None:
        with Aliases.load(state, canon.key()) as aliases:
            written = write_target(state.path / TARGET_FILE, target, records, canon, aliases)
    with _open_target(state, written.summary.root) as snapshot:
        journal = Journal(written.summary.root, delete)
        run = _Apply(root, state, snapshot, staging, journal, hooks=hooks)
        result = run.run(resumed=False, started=started)
    if result.root == result.target:
        _remember(state, canon, written.aliases)
    return result


def _remember(state: StateDir, canon: Canon, aliases: list[tuple[bytes, bytes]]) -> None:
    """Save the aliases of an apply that is done: a failure here costs the next session a
    longer descent, never the apply."""
    try:
        with SnapshotReader(state.snapshot) as final:
            save_aliases(state, canon.key(), aliases, final.record)
    except (OSError, SnapshotFileError) as exc:
        log.warning("the far side's aliases were not saved (%s): the next push compares more", exc)


def held_aliases(state: StateDir, policy: TargetPolicy | None) -> Aliases:
    """The offered trees this side holds as it wrote them, under `policy` (aliases.py)."""
    return Aliases.load(state, far_canon(state, policy).key())


def far_canon(state: StateDir, policy: TargetPolicy | None) -> Canon:
    """How this side writes a target: the operator's policy, the root's file system."""
    state.ensure()
    try:
        times = probe_times(state.path)
    except OSError as exc:
        raise os_error(str(state.path), exc, "probing the file system's times") from exc
    return Canon(policy or TargetPolicy(), times)


def resume_pending(
    root: Path, state: StateDir, *, staging: Staging | None = None, hooks: ApplyHooks | None = None
) -> ApplyResult | None:
    """Finish an apply a crash cut short, if the journal says there is one."""
    journal = read_journal(state)
    if journal is None:
        return None
    started = time.monotonic()
    active = Staging.open(state) if staging is None else staging
    try:
        with _open_target(state, journal.target) as snapshot:
            run = _Apply(root, state, snapshot, active, journal, hooks=hooks)
            return run.run(resumed=True, started=started)
    finally:
        if staging is None:
            active.close()


def scan_far(
    root: Path, state: StateDir, options: ScanOptions | None = None, report: Reporter | None = None
) -> ScanResult:
    """The far side's own scan. Its state files go to the far root's file system, so an
    OSError (a full disk above all) is an apply error naming the state folder, not a
    traceback: DiskFull when there is no space left."""
    try:
        return scan_root(root, state, options, report)
    except ScanFailed as exc:
        raise os_error(str(state.path), exc.cause, "scanning the root") from exc


@contextlib.contextmanager
def _open_target(state: StateDir, target: bytes) -> Iterator[SnapshotReader]:
    path = state.path / TARGET_FILE
    try:
        snapshot = SnapshotReader(path)
    except SnapshotFileError as exc:
        raise ApplyError(f"the target snapshot of the apply is unreadable: {exc}") from exc
    with snapshot:
        if snapshot.root != target:
            raise ApplyError(f"{path} holds {snapshot.root.hex()}, not the target {target.hex()}")
        yield snapshot


@dataclass(slots=True)
class _Changes:
    built: Built
    copied: Copied
    files_deleted: int = 0
    entries_deleted: int = 0
    steps: int = 0
    # What the apply wrote, by its stat now, so the check that follows need not read
    # those bytes again (ScanOptions.known).
    written: WrittenFiles = field(default_factory=WrittenFiles)


class _Apply:
    def __init__(
        self,
        root: Path,
        state: StateDir,
        target: SnapshotReader,
        staging: Staging,
        journal: Journal,
        *,
        hooks: ApplyHooks | None,
    ) -> None:
        self.root = root
        self.state = state
        self.target = target
        self.staging = staging
        self.journal = journal  # what to write before the first live change
        self.delete = journal.delete
        self.hooks = hooks

    def run(self, *, resumed: bool, started: float) -> ApplyResult:
        live = LiveTree(self.root)
        workspace = Workspace(self.state)
        faults.reached("apply")
        try:
            workspace.reset()
            try:
                changes = self._change(live, workspace)
                root = self._verify(changes.written)
            except SyncdError as exc:
                note_failure(self.state, self.target.root, exc)
                # What was built but not renamed in is of no use to a resume (it starts
                # from an empty workspace), and on a full disk it holds the space and
                # inodes that the next session's own scan needs to write its state.
                with contextlib.suppress(OSError):
                    workspace.remove()
                raise
            faults.reached("verified")
            remove_journal(self.state)
            self.staging.clear()
            faults.reached("cleared")
            workspace.remove()
            (self.state.path / TARGET_FILE).unlink(missing_ok=True)
        finally:
            live.close()
            workspace.close()
        built = changes.built
        return ApplyResult(
            root=root,
            target=self.target.root,
            files_written=built.files,
            files_deleted=changes.files_deleted,
            bytes_written=built.bytes,
            symlinks_written=built.symlinks,
            dirs_created=built.dirs,
            entries_deleted=changes.entries_deleted,
            pieces_copied=changes.copied.pieces,
            steps=changes.steps,
            resumed=resumed,
            seconds=time.monotonic() - started,
        )

    def _change(self, live: LiveTree, workspace: Workspace) -> _Changes:
        self._scan()
        with SnapshotReader(self.state.snapshot) as current:
            ops = plan_apply(
                self.target.tree, self.target.root, current.tree, current.root, delete=self.delete
            )
            self._refuse_state_folder(ops)
            if not ops:
                return _Changes(Built(), Copied(0, 0))
            files = _files_to_write(ops, self.target) if current.summary.files else iter(())
            wanted = _unstaged(files, self.staging)
            index = BlobIndex.build(current, touched(ops), wanted)
            files_deleted = _files_removed(ops, current)
        reader = PieceReader(self.staging, index, live)
        try:
            uses: Counter[bytes] = Counter()
            to_build = _not_assembled(_files_to_write(ops, self.target), self.staging, uses)
            copied = ensure_pieces(to_build, self.staging, index, reader)
            self.staging.flush()
            write_journal(self.state, self.journal)
            faults.reached("journal")
            written = WrittenFiles()
            builder = Builder(reader, self.target.tree, self.staging.incoming, uses, written)
            hook = self.hooks.before_step if self.hooks else None
            executor = Executor(live, workspace, builder, hook)
            executor.run(ops)
        finally:
            reader.close()
        _stat_written(self.root, ops, written)
        return _Changes(
            builder.built, copied, files_deleted, executor.deleted, executor.steps, written
        )

    def _scan(self, known: KnownFiles | None = None) -> bytes:
        return scan_far(self.root, self.state, ScanOptions(known=known)).summary.root

    def _refuse_state_folder(self, ops: list[Op]) -> None:
        """A target may neither put anything where this side keeps its state nor remove a
        directory holding it."""
        inside = self.state.excluded_relpath()
        for path in {STATE_NAME, *([inside] if inside else [])}:
            if _lookup(self.target, path) is not None:
                raise ApplyError(
                    f"the target has an entry at {path!r}, where {self.root} keeps its syncd "
                    "state: refusing to apply it"
                )
        for op in ops:
            if inside and isinstance(op, Delete | MoveAside) and inside.startswith(op.path + "/"):
                raise ApplyError(
                    f"the target removes {op.path!r}, which holds the syncd state folder "
                    f"{self.state.path}: refusing to apply it"
                )

    def _verify(self, written: WrittenFiles) -> bytes:
        """The tree's id after the apply, which must be the target (with delete=False, a
        tree holding the target and extras): nothing would be left to plan."""
        if written:  # a stat younger than that is not trusted: its file would be read again
            settle(written.latest_ctime_ns)
        scanned = self._scan(written)
        if scanned == self.target.root:
            return scanned
        with SnapshotReader(self.state.snapshot) as final:
            target = self.target
            left = plan_apply(target.tree, target.root, final.tree, final.root, delete=self.delete)
        if not left:
            return scanned
        shown = ", ".join(f"{type(op).__name__} {op.path}" for op in left[:_SHOWN])
        raise TreeChanged(
            f"{self.root} does not equal the target {self.target.root.hex()[:16]} after the "
            f"apply ({len(left)} differences left: {shown}): the tree changed during the "
            "apply, or this side cannot reproduce the target; the next session retries it "
            "once, and gives it up if it fails the same way"
        )


def _lookup(snapshot: SnapshotReader, path: str) -> Node | None:
    tree: bytes | None = snapshot.root
    node: Node | None = None
    for name in path.split("/"):
        if tree is None:
            return None
        node = next((n for n in snapshot.tree(tree) if n.name == name), None)
        if node is None:
            return None
        tree = node.tree if isinstance(node, DirNode) else None
    return node


def _files_to_write(ops: list[Op], target: SnapshotReader) -> Iterator[tuple[str, FileNode]]:
    for op in ops:
        if isinstance(op, WriteFile):
            yield op.path, op.node
        elif isinstance(op, PlaceTree):
            for path, node in target.walk(op.tree, op.path):
                if isinstance(node, FileNode):
                    yield path, node


def _unstaged(files: Iterator[tuple[str, FileNode]], staging: Staging) -> set[bytes]:
    """The pieces the build reads that no pack holds: those of `files` not assembled
    already. Only these are looked for in the live tree: a repair of a few files in a
    million indexes a few pieces, a push whose pieces all came over the wire none."""
    return {
        digest
        for _, node in files
        if not _assembled(node, staging)
        for digest, _ in node.recipe
        if not staging.has_blob(digest)
    }


def _assembled(node: FileNode, staging: Staging) -> bool:
    """Whether a finished work file holds the node's content (incoming.py): the build
    links or copies it in instead of reading its pieces."""
    return bool(node.recipe) and staging.incoming.complete(node.recipe)


def _not_assembled(
    files: Iterator[tuple[str, FileNode]], staging: Staging, uses: Counter[bytes]
) -> Iterator[tuple[str, FileNode]]:
    """The files to build from pieces, one at a time (a list of a million nodes costs a
    gigabyte); counts in `uses` how many files each assembled content serves, complete
    once this is exhausted."""
    for path, node in files:
        if _assembled(node, staging):
            uses[content_key(node.recipe)] += 1
        else:
            yield path, node


def _stat_written(root: Path, ops: list[Op], written: WrittenFiles) -> None:
    """Record the stat of each file renamed into place on its own, as it is now (the
    rename moved its ctime; the files of placed trees were recorded as built). The check
    then compares what it must, the bytes written, which the build verified piece by
    piece, and not how they were cut (SPEC.md 3.1 leaves the cut to the sender)."""
    for op in ops:
        if not isinstance(op, WriteFile):
            continue
        try:
            st = os.lstat(root / op.path)
        except OSError:
            continue  # the check will find out what happened to it
        if stat.S_ISREG(st.st_mode) and st.st_size == op.node.size:
            written.add(st, op.node.recipe)


def _files_removed(ops: list[Op], current: SnapshotReader) -> int:
    count = 0
    for op in ops:
        if isinstance(op, Delete | MoveAside):
            if isinstance(op.node, FileNode):
                count += 1
            elif isinstance(op.node, DirNode):
                count += sum(isinstance(n, FileNode) for _, n in current.walk(op.node.tree))
    return count
