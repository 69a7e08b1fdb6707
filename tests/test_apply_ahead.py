"""The apply's preparation while a push's blobs arrive: the target snapshot written ahead
(syncd/apply/ahead.py), the change's paths (syncd/gate/gated.py `prepare_apply`), and the
session's worker that runs them (syncd/session/early.py)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest

from protocol.tree import DirNode, encode_tree, tree_id
from syncd.apply import Staging, apply_target
from syncd.apply.ahead import NEXT_FILE, Stopped, TargetAhead
from syncd.apply.canon import TargetPolicy
from syncd.apply.errors import NoRoom
from syncd.apply.journal import TARGET_FILE
from syncd.gate.gated import Prepared, gated_apply, pending_path, prepare_apply
from syncd.gate.inspection import GatePolicy
from syncd.gate.origin import Origin
from syncd.session.early import Early
from syncd.snapshot import SnapshotReader
from syncd.state import StateDir
from tests.test_apply_support import (
    Source,
    copy_tree,
    scan_id,
    stage_transfer,
)


@pytest.fixture(scope="module")
def months(tiny_months: dict[int, Path], tmp_path_factory: pytest.TempPathFactory) -> list[Source]:
    """Months 1 and 2 of the TINY sample, scanned (copies: the session's are shared)."""
    base = tmp_path_factory.mktemp("months")
    copies = [base / str(month) for month in (1, 2)]
    for month, root in enumerate(copies, 1):
        copy_tree(tiny_months[month], root)
    return [Source(root, scan_id(root)) for root in copies]


@pytest.fixture
def month1(months: list[Source]) -> Source:
    return months[0]


@pytest.fixture
def month2(months: list[Source]) -> Source:
    return months[1]


def far_at(tmp_path: Path, source: Source) -> tuple[Path, StateDir]:
    far = tmp_path / "far"
    copy_tree(source.root, far)
    state = StateDir(far)
    scan_id(far)  # the far side's own snapshot, as a session has it
    return far, state


def prepare(
    state: StateDir, source: Source, staging: Staging, policy: TargetPolicy | None = None
) -> Prepared:
    with SnapshotReader(state.snapshot) as current:
        return prepare_apply(
            state,
            source.id,
            staging.tree_record,
            current,
            policy=policy,
            stop=threading.Event(),
        )


def test_a_target_written_ahead_is_taken_over_by_its_apply(
    tmp_path: Path, month1: Source, month2: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    far, state = far_at(tmp_path, month1)
    staging = stage_transfer(month2, far)
    prepared = prepare(state, month2, staging)
    assert (state.path / NEXT_FILE).is_file()
    assert prepared.paths  # month 2 adds and removes files

    def no_second_pass(*args: object, **kwargs: object) -> None:
        raise AssertionError("the apply wrote the target snapshot again")

    monkeypatch.setattr("syncd.apply.engine.write_target", no_second_pass)
    result = apply_target(
        far, state, month2.id, staging.tree_record, staging, delete=True, ahead=prepared.target
    )
    assert result.root == month2.id == scan_id(far)
    assert not (state.path / NEXT_FILE).exists()
    assert not (state.path / TARGET_FILE).exists()  # removed with the journal, as always


def test_a_target_written_ahead_under_another_canon_is_not_taken_over(
    tmp_path: Path, month1: Source, month2: Source
) -> None:
    """Modes kept (--preserve-modes) are another canon: the apply writes its own snapshot
    under the policy it applies with, and the file written ahead goes."""
    far, state = far_at(tmp_path, month1)
    staging = stage_transfer(month2, far)
    other = prepare(state, month2, staging, TargetPolicy(preserve_modes=True))
    result = apply_target(
        far, state, month2.id, staging.tree_record, staging, delete=True, ahead=other.target
    )
    assert result.root == month2.id == scan_id(far)
    assert not (state.path / NEXT_FILE).exists()


def test_a_target_written_ahead_for_another_target_is_not_taken_over(
    tmp_path: Path, month1: Source, month2: Source
) -> None:
    far, state = far_at(tmp_path, month1)
    staging = stage_transfer(month2, far)
    ahead = prepare(state, month2, staging).target
    wrong = TargetAhead(ahead.canon, type(ahead.written)(ahead.written.summary, month1.id))
    result = apply_target(
        far, state, month2.id, staging.tree_record, staging, delete=True, ahead=wrong
    )
    assert result.root == month2.id == scan_id(far)
    assert not (state.path / NEXT_FILE).exists()


@pytest.mark.parametrize("early_paths", [65_536, 1])
def test_paths_listed_ahead_describe_the_change_as_the_gate_would(
    tmp_path: Path,
    month1: Source,
    month2: Source,
    early_paths: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pending change an inspection command reads is the same, paths listed ahead
    or not (the images are still read after the transfer, from the pieces), and when
    more paths changed than are listed ahead (then listed after, as without)."""
    monkeypatch.setattr("syncd.gate.gated.EARLY_PATHS", early_paths)
    described: list[dict[str, object]] = []
    for ahead in (False, True):
        far, state = far_at(tmp_path / str(ahead), month1)
        staging = stage_transfer(month2, far)
        prepared = prepare(state, month2, staging) if ahead else None
        if prepared is not None:
            assert (prepared.paths is None) == (early_paths == 1)
        seen = tmp_path / f"seen-{ahead}.json"
        gate = GatePolicy(inspect=f"cp {pending_path(state)} {seen}")
        with SnapshotReader(state.snapshot) as current:
            gated_apply(
                far,
                state,
                month2.id,
                staging.tree_record,
                staging,
                delete=True,
                current=current,
                origin=Origin.of_push(),
                gate=gate,
                prepared=prepared,
            )
        assert scan_id(far) == month2.id
        change = json.loads(seen.read_text())
        for key in ("at", "before"):  # when, and the far snapshot's own id
            change.pop(key, None)
        described.append(change)
    assert described[0] == described[1]
    assert described[0]["paths"] and described[0]["images"]


def test_a_stopped_preparation_leaves_nothing(
    tmp_path: Path, month1: Source, month2: Source
) -> None:
    far, state = far_at(tmp_path, month1)
    staging = stage_transfer(month2, far)
    stop = threading.Event()
    stop.set()
    with SnapshotReader(state.snapshot) as current, pytest.raises(Stopped):
        prepare_apply(state, month2.id, staging.tree_record, current, policy=None, stop=stop)
    assert sorted(p.name for p in state.path.glob(f"{TARGET_FILE}*")) == []


def test_a_session_ending_stops_the_worker_and_removes_its_file(tmp_path: Path) -> None:
    """close() returns once the worker has stopped at its next record, not when it would
    have finished, and what it wrote goes."""
    state = StateDir(tmp_path)
    state.ensure()
    started = threading.Event()

    def work(stop: threading.Event) -> Prepared:
        (state.path / NEXT_FILE).write_bytes(b"half")
        started.set()
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        raise Stopped

    async def session() -> float:
        early = Early(work, state)
        early.start()
        await asyncio.to_thread(started.wait, 10)
        clock = time.monotonic()
        await early.close()
        assert await early.result() is None
        return time.monotonic() - clock

    assert asyncio.run(session()) < 30
    assert not (state.path / NEXT_FILE).exists()


def test_a_failed_preparation_gives_no_result(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.ensure()

    def work(stop: threading.Event) -> Prepared:
        raise OSError(28, "No space left on device")

    async def session() -> Prepared | None:
        early = Early(work, state)
        early.start()
        try:
            return await early.result()
        finally:
            await early.close()

    assert asyncio.run(session()) is None


def stage_repeated_target(staging: Staging) -> bytes:
    """A target of 10^9 empty folders (a/b*/c*/d*, 1,000 of each) from 5 staged records."""
    tree = encode_tree([])
    for name in ("d", "c", "b"):
        staging.add_tree(tree_id(tree), tree)
        tree = encode_tree([DirNode(f"{name}{i:04d}", 0o755, tree_id(tree)) for i in range(1000)])
    staging.add_tree(tree_id(tree), tree)
    top = encode_tree([DirNode("a", 0o755, tree_id(tree))])
    staging.add_tree(tree_id(top), top)
    return tree_id(top)


def empty_far(tmp_path: Path) -> tuple[Path, StateDir]:
    far = tmp_path / "far"
    far.mkdir()
    scan_id(far)
    return far, StateDir(far)


def test_a_target_repeating_one_subtree_is_stopped_at_once(tmp_path: Path) -> None:
    """Such a target's walk reads no record after the first few (they are recent), and
    must still stop when its session ends."""
    _, state = empty_far(tmp_path)
    staging = Staging.open(state)
    target = stage_repeated_target(staging)
    stop = threading.Event()
    ended: list[BaseException] = []

    def work() -> None:
        with SnapshotReader(state.snapshot) as current:
            try:
                prepare_apply(state, target, staging.tree_record, current, policy=None, stop=stop)
            except BaseException as exc:
                ended.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    time.sleep(1)
    stop.set()
    worker.join(30)
    assert not worker.is_alive()
    assert len(ended) == 1 and isinstance(ended[0], Stopped)
    staging.close()


def test_a_target_with_more_entries_than_inodes_is_refused_before_it_is_described(
    tmp_path: Path,
) -> None:
    """Describing it for the gate, like building it, would walk 10^9 folders while the
    root stays locked; it is refused as soon as its snapshot says how many it holds."""
    far, state = empty_far(tmp_path)
    staging = Staging.open(state)
    target = stage_repeated_target(staging)
    with SnapshotReader(state.snapshot) as current, pytest.raises(NoRoom) as refused:
        gated_apply(
            far,
            state,
            target,
            staging.tree_record,
            staging,
            delete=True,
            current=current,
            origin=Origin.of_push(),
            gate=GatePolicy(),
        )
    assert "1,001,001,001 files, folders and symlinks" in str(refused.value)
    assert "nothing was changed" in str(refused.value)
    assert sorted(p.name for p in far.iterdir()) == [".syncd"]
    assert not pending_path(state).exists()
    staging.close()
