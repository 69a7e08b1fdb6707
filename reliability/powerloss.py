"""powerloss: the journal and the fsync order survive the loss of every unsynced write.

A far root at sample month 1, with month 2 staged (as a finished transfer leaves it), is
brought to month 2 by a real apply, in this process, on tmpfs, while every fsync is
recorded (reliability/fsmodel.py states the model). Then for every prefix of that fsync
sequence - a power loss right after the k-th fsync - crash states are written out as
real trees:

- the worst case: only what the first k fsyncs made durable;
- mixed states: each file and directory, independently, as durable or as it was when
  the next fsync came (any of the unsynced changes since may have reached the disk).

Each state must be consistent before any recovery (every listed tag resolves, tags
between month 1's and month 2's, nothing partial visible); without a journal its tree
must be exactly month 1 or month 2. Then the recovery a far side runs at start-up
(`resume_pending`, or a fresh apply from the recovered staging when no journal survived)
must bring it to month 2: its fresh scan equal to month 2's snapshot, every tag resolving.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from reliability.campaign import Context, Figure, Outcome
from reliability.farside import Months, copy_far, equals, far_at_month1, make_months, problems
from reliability.fsmodel import Images, Recorder, materialize, mixed
from syncd.apply import Staging, apply_target, executor, resume_pending
from syncd.state import StateDir
from tests.test_apply_support import records_of, registry_problems, scan_id, stage_transfer

QUICK_PREFIXES = 12
MIXED_PER_PREFIX = (1, 3)  # quick, full


@dataclass
class Tally:
    prefixes: int = 0
    states: int = 0
    resumed: int = 0  # states in which a journal survived and resume_pending finished
    reapplied: int = 0  # states with no journal and month 1: applied afresh
    already: int = 0  # states with no journal and month 2 already
    failures: list[str] = field(default_factory=list)


def prepare(scratch: Path) -> tuple[Months, Path]:
    months = make_months(scratch / "sources")
    base = far_at_month1(months, scratch / "base")
    stage_transfer(months.two, base).close()
    return months, base


def record(months: Months, base: Path, shm: Path) -> Recorder:
    """The real apply from month 1 to month 2, every fsync recorded."""
    far = copy_far(base, shm / "recorded")
    with Recorder(far) as recorder, built_one_by_one():
        reapply(far, months)
    assert scan_id(far) == months.two.id, "the recorded apply did not reach month 2"
    return recorder


@contextlib.contextmanager
def built_one_by_one() -> Iterator[None]:
    """Each entry built right before its rename, as in an apply larger than the
    executor's look-ahead (AHEAD entries): else the sample's few entries are all built,
    and one syncfs covers them, before the first live step, and the crash points between
    the steps vanish."""
    saved = executor.AHEAD
    executor.AHEAD = 0
    try:
        yield
    finally:
        executor.AHEAD = saved


def reapply(far: Path, months: Months) -> None:
    state = StateDir(far)
    with Staging.open(state) as staging, records_of(months.two) as snapshot:
        apply_target(far, state, months.two.id, snapshot.record, staging, delete=True)


def recover(far: Path, months: Months, tally: Tally, where: str) -> list[str]:
    """What a far side does at start-up, then an apply if nothing was pending."""
    try:
        if resume_pending(far, StateDir(far)) is not None:
            tally.resumed += 1
        else:
            before = scan_id(far)
            if before not in (months.one.id, months.two.id):
                return [f"{where}: no journal, yet the tree is neither month 1 nor month 2"]
            if before == months.one.id:
                tally.reapplied += 1
                reapply(far, months)
            else:
                tally.already += 1
    except Exception as exc:  # any failure to recover is a finding, not a crash
        return [f"{where}: recovery failed: {type(exc).__name__}: {exc}"]
    found = equals(far, months.two, f"{where}, recovered")
    return found + [f"{where}, recovered: {p}" for p in registry_problems(far)]


def replay(images: Images, recorder: Recorder, months: Months, dest: Path, where: str) -> Tally:
    tally = Tally(states=1)
    materialize(images, recorder.root_ino, dest)
    try:
        tally.failures += problems(months, dest, f"{where}, before recovery")
        tally.failures += recover(dest, months, tally, where)
    finally:
        shutil.rmtree(dest)
    return tally


def chosen_prefixes(count: int, ctx: Context) -> Iterator[int]:
    """Every prefix 0..count; the quick slice a seeded few, always the first and last."""
    if not ctx.quick:
        yield from range(count + 1)
        return
    inner = ctx.rng("powerloss-prefixes").sample(range(1, count), QUICK_PREFIXES)
    yield from sorted({0, *inner, count})


def states(recorder: Recorder, k: int, mixes: int, ctx: Context) -> Iterator[tuple[str, Images]]:
    """The crash states after the k-th fsync: the worst one, then `mixes` mixed ones."""
    durable = recorder.durable_after(k)
    yield "worst", durable
    rng = ctx.rng(f"powerloss-mixed-{k}")
    for n in range(mixes):
        yield f"mixed {n + 1}", mixed(durable, recorder.currents[k], rng)


def merge(total: Tally, one: Tally) -> None:
    total.states += one.states
    total.resumed += one.resumed
    total.reapplied += one.reapplied
    total.already += one.already
    total.failures += one.failures


def run(ctx: Context) -> Outcome:
    months, base = prepare(ctx.scratch)
    with tempfile.TemporaryDirectory(prefix="syncd-powerloss-", dir="/dev/shm") as folder:
        shm = Path(folder)
        recorder = record(months, base, shm)
        total = Tally()
        count = len(recorder.events)
        mixes = MIXED_PER_PREFIX[0 if ctx.quick else 1]
        for k in chosen_prefixes(count, ctx):
            total.prefixes += 1
            label = f"after fsync {k}/{count}" + (f" ({recorder.events[k - 1][1]})" if k else "")
            for kind, images in states(recorder, k, mixes, ctx):
                merge(total, replay(images, recorder, months, shm / "state", f"{label}, {kind}"))
            print(f"powerloss: {label}: {len(total.failures)} failures", file=sys.stderr)
    return outcome(total, count)


def outcome(total: Tally, fsyncs: int) -> Outcome:
    figures = [
        Figure("fsyncs recorded in the apply", str(fsyncs)),
        Figure("prefixes replayed", str(total.prefixes)),
        Figure("crash states replayed", str(total.states)),
        Figure("states finished by resume_pending (journal survived)", str(total.resumed)),
        Figure("states with no journal, month 1: applied afresh", str(total.reapplied)),
        Figure("states with no journal, month 2 already", str(total.already)),
        Figure("failures", str(len(total.failures)), "0", not total.failures),
    ]
    return Outcome("powerloss", figures, total.failures)
