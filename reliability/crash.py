"""crash: kill -9 of the far side during a real push, and of `syncd import`, everywhere.

The far root holds sample month 1; `syncd push` brings month 2 (the far side being the
`syncd serve --stdio` child the local-path target starts, or for a few points the one
OpenSSH starts), and `syncd import` brings month 2 from volumes exported against the far
side's receipt. Each run is killed at one point:

- deterministic points: `SYNCD_FAULT=POINT:N` (syncd/faults.py) makes the far process
  SIGKILL itself the Nth time it stages a tree record or a blob, flushes staging, finishes
  a volume, starts an apply, has written the journal, takes a live step, has verified,
  has cleared, or (import) has applied; N walks 1, 1+stride, ... until the run completes
  unkilled, so every point the run reaches is visited (all of them with stride 1);
- random points: a real `kill -9` after a random delay (of the serve child, or of the
  importer), drawn from the seeded generator.

After each kill the far tree must be consistent (every listed tag resolves, tags between
month 1's and month 2's, nothing partial: the checks of tests/test_apply_support.py); on
sampled points docker-registry + skopeo pull every listed tag. Then a rerun of the same
command must succeed and the far tree's fresh scan must equal month 2's snapshot.

Two more slices: link drops at random bytes (reliability/linkdrop.py: the link to the
far side drops, its serve gets EOF, SIGHUP, or over SSH loses its sshd session; every
blob that arrived whole must be kept, and what the rerun sends again is measured against
what had not arrived), and abandoned sessions and volumes (reliability/abandon.py:
pushes and imports left half-way at random, after which an honest push or import must
complete).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from reliability import abandon, linkdrop
from reliability.campaign import Context, Figure, Outcome
from reliability.farside import (
    Months,
    copy_far,
    equals,
    far_at_month1,
    make_months,
    month2_volumes,
    oracle_problems,
    problems,
    run_syncd,
    start_syncd,
)
from syncd.faults import ENV
from tests.pushutil import PROJECT
from tests.sshd import SSHServer

STAGING_POINTS = ("tree", "blob", "flush", "volume")
APPLY_POINTS = ("apply", "journal", "step", "verified", "cleared", "imported")
MAX_N = 100_000  # a point reached more often than this means the run never ends


@dataclass
class Bed:
    """Month 1 and 2, the far root at month 1, month 2 on volumes, the scratch folder."""

    months: Months
    base: Path
    volumes: tuple[Path, ...]
    work: Path
    ssh: SSHServer | None = None


@dataclass
class Tally:
    points: Counter[str] = field(default_factory=Counter)  # category -> kill points
    oracle_pulls: int = 0
    missed: int = 0  # random kills that came after the process had ended
    failures: list[str] = field(default_factory=list)
    oracle_every: int = 25
    runs: int = 0
    drops: linkdrop.Drops = field(default_factory=linkdrop.Drops)
    abandoned: abandon.Tally = field(default_factory=abandon.Tally)

    def oracle_due(self) -> bool:
        self.runs += 1
        return self.runs % self.oracle_every == 1


def prepare(scratch: Path) -> Bed:
    months = make_months(scratch / "sources")
    base = far_at_month1(months, scratch / "base")
    return Bed(months, base, month2_volumes(months, base, scratch), scratch / "work")


# -- one interrupted run ---------------------------------------------------------------


def command(bed: Bed, scenario: str, far: Path, fault: str | None) -> list[str]:
    """The command line of the run; `fault` goes to the far process only."""
    if scenario == "import":
        return ["import", *map(str, bed.volumes), "--root", str(far)]
    src = str(bed.months.two.root)
    if scenario == "ssh":
        assert bed.ssh is not None
        # OpenSSH passes no environment through: the far command line sets it.
        remote = f"env {ENV}={fault or ''} PYTHONPATH={PROJECT} {sys.executable} -m syncd"
        target = f"ssh://root@127.0.0.1:{bed.ssh.port}{far}"
        return ["push", src, target, "--remote-syncd", remote]
    return ["push", src, str(far)]


def environment(bed: Bed, scenario: str, fault: str | None) -> dict[str, str]:
    env = bed.ssh.env() if scenario == "ssh" and bed.ssh else {}
    if fault and scenario != "ssh":
        env[ENV] = fault  # the local serve child inherits it
    return env


def fresh_far(bed: Bed) -> Path:
    far = bed.work / "far"
    if far.exists():
        shutil.rmtree(far)
    return copy_far(bed.base, far)


def faulted_run(bed: Bed, scenario: str, far: Path, fault: str) -> bool:
    """Run with the fault armed; True when it was killed (the run did not finish)."""
    done = run_syncd(*command(bed, scenario, far, fault), env=environment(bed, scenario, fault))
    if scenario == "import":
        return done.returncode == -signal.SIGKILL
    return done.returncode != 0


def after_kill(bed: Bed, tally: Tally, scenario: str, far: Path, where: str) -> None:
    """The checks after a kill, then the rerun that must complete."""
    tally.failures += problems(bed.months, far, where)
    if tally.oracle_due():
        tally.oracle_pulls += 1
        tally.failures += oracle_problems(far, where)
    done = run_syncd(*command(bed, scenario, far, None), env=environment(bed, scenario, None))
    if done.returncode != 0:
        tally.failures.append(f"{where}: rerun exit {done.returncode}: {done.stderr.strip()}")
    tally.failures += equals(far, bed.months.two, f"{where}, after the rerun")


def category(scenario: str, point: str) -> str:
    side = "import" if scenario == "import" else "push"
    kind = "staging" if point in STAGING_POINTS else "apply"
    suffix = " (ssh)" if scenario == "ssh" else ""
    return f"{side} {kind}{suffix}"


def walk_point(bed: Bed, tally: Tally, scenario: str, point: str, stride: int) -> None:
    """Kill at the point's 1st, (1+stride)th, ... arrival until a run finishes unkilled."""
    for n in range(1, MAX_N, stride):
        far = fresh_far(bed)
        where = f"{scenario} killed at {point}:{n}"
        if not faulted_run(bed, scenario, far, f"{point}:{n}"):
            tally.failures += equals(far, bed.months.two, f"{scenario} past {point}:{n - 1}")
            return
        tally.points[category(scenario, point)] += 1
        after_kill(bed, tally, scenario, far, where)
        print(f"crash: {where}: {len(tally.failures)} failures so far", file=sys.stderr)
    tally.failures.append(f"{scenario}: {point} reached more than {MAX_N} times")


# -- random timing ---------------------------------------------------------------------


def serve_children(pid: int) -> list[int]:
    """The `syncd serve` children of `pid` (it forks other helpers too, briefly)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in task.read_text().split()]
    return [child for child in found if _is_serve(child)]


def _is_serve(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"serve" in argv


def far_process(bed: Bed, scenario: str, run: subprocess.Popen[str]) -> int | None:
    """The process to kill: the importer itself, or the push's serve child (once up)."""
    if scenario == "import":
        return run.pid
    while run.poll() is None:
        serve = serve_children(run.pid)
        if serve:
            return serve[0]
        time.sleep(0.005)
    return None


def timed_kill(bed: Bed, scenario: str, far: Path, delay: float) -> bool:
    """Start the run, kill -9 the far process `delay` s after it exists; killed?"""
    run = start_syncd(*command(bed, scenario, far, None))
    target = far_process(bed, scenario, run)
    if target is not None:
        time.sleep(delay)
        with contextlib.suppress(ProcessLookupError):  # it may have just ended
            os.kill(target, signal.SIGKILL)
        run.communicate()
        return run.returncode != 0
    run.communicate()
    return False


def calibrate(bed: Bed, scenario: str) -> float:
    """How long the far process lives in an unkilled run (the range of the delays)."""
    far = fresh_far(bed)
    run = start_syncd(*command(bed, scenario, far, None))
    far_process(bed, scenario, run)
    started = time.monotonic()
    run.communicate()
    return time.monotonic() - started


def random_kills(bed: Bed, tally: Tally, scenario: str, count: int, ctx: Context) -> None:
    rng = ctx.rng(f"crash-random-{scenario}")
    span = calibrate(bed, scenario)
    for _ in range(count):
        delay = rng.uniform(0, span)
        far = fresh_far(bed)
        if not timed_kill(bed, scenario, far, delay):
            tally.missed += 1
            tally.failures += equals(far, bed.months.two, f"{scenario} not killed at {delay}")
            continue
        tally.points[f"random {scenario}"] += 1
        after_kill(bed, tally, scenario, far, f"{scenario} killed after {delay * 1000:.0f} ms")


# -- the campaign ----------------------------------------------------------------------

# (scenario, point, stride): the full run. Staging points are many (one per record), so
# every few; live steps every one.
FULL: tuple[tuple[str, str, int], ...] = (
    ("push", "tree", 10),
    ("push", "blob", 8),
    ("push", "flush", 1),
    ("push", "apply", 1),
    ("push", "journal", 1),
    ("push", "step", 1),
    ("push", "verified", 1),
    ("push", "cleared", 1),
    ("import", "tree", 20),
    ("import", "blob", 10),
    ("import", "flush", 1),
    ("import", "volume", 1),
    ("import", "journal", 1),
    ("import", "step", 2),
    ("import", "verified", 1),
    ("import", "cleared", 1),
    ("import", "imported", 1),
    ("ssh", "blob", 60),
    ("ssh", "step", 20),
    ("ssh", "verified", 1),
)
QUICK: tuple[tuple[str, str, int], ...] = (
    ("push", "blob", 200),
    ("push", "journal", 1),
    ("push", "step", 65),
    ("push", "cleared", 1),
    ("import", "volume", 4),
    ("import", "step", 80),
    ("import", "imported", 1),
)


def walks(ctx: Context) -> Iterator[tuple[str, str, int]]:
    yield from QUICK if ctx.quick else FULL


def run(ctx: Context) -> Outcome:
    bed = prepare(ctx.scratch)
    tally = Tally(oracle_every=8 if ctx.quick else 25)
    server = None if ctx.quick else SSHServer.start(ctx.scratch / "sshd")
    bed.ssh = server
    try:
        for scenario, point, stride in walks(ctx):
            walk_point(bed, tally, scenario, point, stride)
        for scenario in ("push", "import"):
            random_kills(bed, tally, scenario, 1 if ctx.quick else 15, ctx)
        link_drops(bed, tally, ctx)
        tally.abandoned = abandon.run_rounds(
            bed.months,
            bed.base,
            bed.work.parent,
            ctx.rng("abandon"),
            rounds=1 if ctx.quick else 12,
            variants=2 if ctx.quick else abandon.VARIANTS,
        )
        tally.failures += tally.abandoned.failures
        signal_figures = _signal_stops(bed, tally, ctx)
    finally:
        if server is not None:
            server.stop()
    result = outcome(bed, tally, quick=ctx.quick)
    result.figures += signal_figures
    return result


def _signal_stops(bed: Bed, tally: Tally, ctx: Context) -> list[Figure]:
    """SIGINT and SIGTERM of the commands themselves (reliability/crash_signals.py)."""
    from reliability.crash_signals import signal_stops  # noqa: PLC0415 - it imports this module

    figures, failures = signal_stops(bed, ctx, 1 if ctx.quick else 12)
    tally.failures += failures
    return figures


def link_drops(bed: Bed, tally: Tally, ctx: Context) -> None:
    """Drops at random bytes of a push's stream: locally (EOF, SIGHUP), and over SSH
    with the sshd session killed (full run)."""
    rng = ctx.rng("crash-link-drops")
    ways = [("local", mode) for mode in linkdrop.MODES]
    if bed.ssh is not None:
        ways.append(("ssh", "sshd"))
    record = bed.work.parent / "link-record.json"
    for way, mode in ways:
        far = fresh_far(bed)
        target, env = str(far), {}
        if way == "ssh":
            assert bed.ssh is not None
            target, env = f"ssh://root@127.0.0.1:{bed.ssh.port}{far}", bed.ssh.env()
        forwarded, total = linkdrop.calibrate(bed.months.two.root, target, record, env)
        for _ in range(1 if ctx.quick else (30 if way == "local" else 15)):
            far = fresh_far(bed)
            at = rng.randrange(1, forwarded)
            linkdrop.one_drop(bed.months, far, target, record, at, mode, total, env, tally.drops)
    tally.failures += tally.drops.failures


def outcome(bed: Bed, tally: Tally, *, quick: bool) -> Outcome:
    # The far tree of the last rerun, served and pulled once more: the end state.
    tally.oracle_pulls += 1
    tally.failures += oracle_problems(bed.work / "far", "the end")
    total = sum(tally.points.values())
    least = 10 if quick else 50
    figures = [Figure(f"kill points: {name}", str(n)) for name, n in sorted(tally.points.items())]
    drops, left = tally.drops, tally.abandoned
    figures += [Figure(f"link drops: {mode}", str(n)) for mode, n in sorted(drops.by_mode.items())]
    figures += [
        Figure(
            "link drops: bytes resent / bytes remaining",
            f"{drops.ratio:.3f} ({drops.resent} / {drops.remaining}; {drops.cut_waste} B of "
            "cut blobs sent again)",
            "<= 1.05",
            drops.ratio <= 1.05,
        ),
    ]
    figures += [Figure(f"abandoned: {how}", str(n)) for how, n in sorted(left.abandoned.items())]
    figures += [
        Figure(f"honest {way} after abandoned sessions", f"{n} rounds")
        for way, n in sorted(left.rounds.items())
    ]
    figures += [
        Figure("distinct kill points", str(total), f">= {least}", total >= least),
        Figure(
            "oracle pulls (docker-registry + skopeo)", str(tally.oracle_pulls + left.oracle_pulls)
        ),
        Figure("random kills after the process ended (not counted)", str(tally.missed)),
        Figure("failures", str(len(tally.failures)), "0", not tally.failures),
    ]
    return Outcome("crash", figures, tally.failures)
