"""diskfull: a full far disk in the middle of a transfer or an apply, at many fill levels.

The far root (sample month 1) lives on a small tmpfs mounted for the campaign; a ballast
file leaves only so many bytes free, from a few kilobytes (the far side cannot even write
its scan) to enough for the whole update. Three ways to bring month 2:

- `apply`: everything staged up front, `apply_target` in this process (what runs out of
  space is the apply itself);
- `push`: `syncd push` as a CLI process, its far side the `syncd serve` child;
- `import`: `syncd import` as a CLI process, from volumes exported against the receipt.

Whatever the level, either the run succeeds (the far tree is month 2) or it fails with
the disk-full condition named (DiskFull; for the CLI, a non-zero exit and "no space left"
on stderr, no traceback), and then: the live tree is consistent (every listed tag
resolves, nothing partial visible), staging reopens with no durable byte lost, and once
the ballast is removed the rerun (resume_pending, or the same command) reaches month 2.
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from reliability.campaign import Context, Figure, Outcome
from reliability.farside import (
    Months,
    copy_far,
    equals,
    far_at_month1,
    make_months,
    month2_volumes,
    problems,
    run_syncd,
)
from syncd.apply import DiskFull, Staging, apply_target, resume_pending
from syncd.errors import SyncdError
from syncd.state import StateDir
from tests.test_apply_support import fill, records_of, small_tmpfs, stage_transfer

SIZE = 24 << 20  # the far file system: month 1 takes about 3 MiB of it
FULL_LEVELS = (*range(0, 1600, 32), 2048, 4096)  # KiB: every 32 KiB up to ~1.5 MiB
QUICK_LEVELS = (16, 240, 560)
SCENARIOS = ("apply", "push", "import")
DISK_FULL_WORDS = "no space left"


@dataclass
class Bed:
    months: Months
    base: Path  # the far root at month 1, with its state (its site id, for the import)
    volumes: tuple[Path, ...]
    mount: Path


@dataclass
class Tally:
    ends: Counter[str] = field(default_factory=Counter)  # "push: failed in apply" -> runs
    failures: list[str] = field(default_factory=list)


@contextmanager
def far_disk(scratch: Path) -> Iterator[Path]:
    with small_tmpfs(scratch / "mnt", SIZE) as mount:
        if mount is None:
            raise SystemExit("diskfull: cannot mount a tmpfs (the campaign must run as root)")
        yield mount


def prepare(scratch: Path, mount: Path) -> Bed:
    months = make_months(scratch / "sources")
    base = far_at_month1(months, scratch / "base")
    return Bed(months, base, month2_volumes(months, base, scratch), mount)


# -- one run at one level --------------------------------------------------------------


def in_process_apply(bed: Bed, far: Path) -> str | None:
    """The apply alone (all staged before the ballast): None, or the error's message (its
    type named unless it is DiskFull)."""
    state = StateDir(far)
    with Staging.open(state) as staging, records_of(bed.months.two) as snapshot:
        try:
            apply_target(far, state, bed.months.two.id, snapshot.record, staging, delete=True)
        except DiskFull as exc:
            return str(exc)
        except SyncdError as exc:
            return f"{type(exc).__name__}: {exc}"
    return None


def cli_run(bed: Bed, scenario: str, far: Path) -> tuple[int, str]:
    if scenario == "push":
        done = run_syncd("push", bed.months.two.root, far)
    else:
        done = run_syncd("import", *bed.volumes, "--root", far)
    return done.returncode, done.stderr


def attempt(bed: Bed, scenario: str, far: Path, where: str) -> tuple[bool, list[str]]:
    """One run on the nearly full disk: (did it fail?, what was wrong with how it failed)."""
    if scenario == "apply":
        message = in_process_apply(bed, far)
        if message is None:
            return False, []
        wrong = [] if DISK_FULL_WORDS in message.lower() else [f"{where}: {message}"]
        return True, wrong
    code, stderr = cli_run(bed, scenario, far)
    if code == 0:
        return False, []
    wrong = []
    if DISK_FULL_WORDS not in stderr.lower():
        wrong.append(f"{where}: exit {code} without naming the full disk: {stderr.strip()}")
    if "Traceback" in stderr:
        wrong.append(f"{where}: a traceback on stderr: {stderr.strip()[-300:]}")
    return True, wrong


def staging_intact(far: Path, where: str) -> list[str]:
    """Staging reopens after the failure, with nothing durable lost."""
    try:
        with Staging.open(StateDir(far)) as staging:
            lost = staging.recovery.lost_durable_bytes
    except SyncdError as exc:
        return [f"{where}: staging does not reopen: {exc}"]
    return [f"{where}: staging lost {lost} durable bytes"] if lost else []


def rerun(bed: Bed, scenario: str, far: Path, where: str) -> list[str]:
    """With space again, the same way finishes (an apply: its journal, or afresh)."""
    if scenario == "apply":
        try:
            if resume_pending(far, StateDir(far)) is None:
                in_process_apply(bed, far)
        except SyncdError as exc:
            return [f"{where}: resume failed: {exc}"]
        return []
    code, stderr = cli_run(bed, scenario, far)
    return [] if code == 0 else [f"{where}: rerun exit {code}: {stderr.strip()}"]


def where_it_failed(far: Path) -> str:
    return "in apply" if (StateDir(far).path / "journal").exists() else "before any live change"


def one_level(bed: Bed, tally: Tally, scenario: str, leave_kib: int) -> None:
    far = bed.mount / "far"
    if far.exists():
        shutil.rmtree(far)
    copy_far(bed.base, far)
    if scenario == "apply":
        stage_transfer(bed.months.two, far, everything=True).close()
    where = f"{scenario} with {leave_kib} KiB free"
    ballast = fill(bed.mount, leave_kib << 10)
    try:
        failed, wrong = attempt(bed, scenario, far, where)
        tally.failures += wrong
        if failed:
            tally.ends[f"{scenario}: failed {where_it_failed(far)}"] += 1
            tally.failures += problems(bed.months, far, f"{where}, after the failure")
            tally.failures += staging_intact(far, where)
        else:
            tally.ends[f"{scenario}: succeeded"] += 1
    finally:
        ballast.unlink()
    if failed:
        tally.failures += rerun(bed, scenario, far, where)
    tally.failures += equals(far, bed.months.two, f"{where}, at the end")
    print(f"diskfull: {where}: failed={failed}, {len(tally.failures)} failures", file=sys.stderr)


# -- the campaign ----------------------------------------------------------------------


def run(ctx: Context) -> Outcome:
    tally = Tally()
    levels = QUICK_LEVELS if ctx.quick else FULL_LEVELS
    with far_disk(ctx.scratch) as mount:
        bed = prepare(ctx.scratch, mount)
        for scenario in SCENARIOS:
            for leave in levels:
                one_level(bed, tally, scenario, leave)
    failed = sum(n for end, n in tally.ends.items() if "failed" in end)
    every_way = all(any(e.startswith(f"{s}: failed") for e in tally.ends) for s in SCENARIOS)
    figures = [Figure("fill levels", f"{len(levels)}: {levels[0]} to {levels[-1]} KiB free")]
    figures += [Figure(end, str(n)) for end, n in sorted(tally.ends.items())]
    figures += [
        Figure("runs that hit the full disk", str(failed), ">= 1 per way", every_way),
        Figure("failures", str(len(tally.failures)), "0", not tally.failures),
    ]
    return Outcome("diskfull", figures, tally.failures)
