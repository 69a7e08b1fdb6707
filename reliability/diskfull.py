"""diskfull: a far disk that fills up at every phase of a push, an import and a receipt.

The far root (sample month 1 and its bulk archives, reliability/farside.py) lives on a
small file system mounted for the campaign: a tmpfs of SIZE, and for the live steps also
a loop-mounted ext4 (where a rename can need a new directory block). Two sweeps:

- **levels**: a ballast file leaves L KiB free before the run, from a few KiB (the far
  side cannot even write its scan) to enough for the whole update; month 2 is brought
  three ways: `apply` (everything staged up front, `apply_target` in this process),
  `push` (`syncd push` as a CLI process, its far side the `syncd serve` child) and
  `import` (`syncd import` from volumes exported against the far side's receipt), and
  `receipt` (`syncd receipt`, its state files and its output on the full disk);
- **phases**: the far process itself fills the disk (`SYNCD_FAULT_FILL`, syncd/faults.py)
  the Nth time it reaches a point - a tree record or a blob staged, staging flushed, a
  volume recorded, the apply started, the journal written, each live step (so building
  and renaming), the apply verified, staging cleared, the import applied - after its own
  space check has passed; N walks 1, 1+stride, ... until a run no longer reaches it.

A run either succeeds (the far tree is month 2) or fails naming the full disk (refused
up front: "not enough space"; or "no space left" where it ran out), non-zero, no
traceback; then the live tree is consistent (every listed tag resolves, nothing partial
visible), staging reopens with no durable byte lost, and `import --status` claims no
damaged volume. Then space is freed - the ballast removed, or on tmpfs the file system
grown by `mount -o remount,size=` with the ballast still there - and the same command
must complete with no other step, the far tree's fresh scan equal to month 2; some of
those ends are served by docker-registry and every tag pulled with skopeo.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
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
    oracle_problems,
    problems,
    run_syncd,
)
from syncd import faults
from syncd.apply import DiskFull, Staging, apply_target, resume_pending
from syncd.errors import SyncdError
from syncd.state import StateDir
from tests.test_apply_support import fill, records_of, small_tmpfs, stage_transfer

SIZE = 24 << 20  # the far file system: month 1 takes about 4 MiB of it
FULL_LEVELS = (*range(0, 1600, 64), 2048, 4096, 8192)  # KiB free before the run
QUICK_LEVELS = (240,)
LEVEL_WAYS = ("apply", "push", "import", "receipt")
QUICK_WAYS = ("push", "import")
DISK_FULL_WORDS = ("no space left", "not enough space")
LEAVE = (0, 48 << 10, 400 << 10)  # bytes a phase fill leaves free, drawn per run
MAX_N = 10_000

# (file system, way, point, stride): every point the far process reaches, walked.
FULL_PHASES: tuple[tuple[str, str, str, int], ...] = (
    ("tmpfs", "push", "tree", 12),
    ("tmpfs", "push", "blob", 8),
    ("tmpfs", "push", "flush", 1),
    ("tmpfs", "push", "apply", 1),
    ("tmpfs", "push", "journal", 1),
    ("tmpfs", "push", "step", 4),
    ("tmpfs", "push", "verified", 1),
    ("tmpfs", "push", "cleared", 1),
    ("tmpfs", "import", "tree", 24),
    ("tmpfs", "import", "blob", 8),
    ("tmpfs", "import", "flush", 1),
    ("tmpfs", "import", "volume", 1),
    ("tmpfs", "import", "journal", 1),
    ("tmpfs", "import", "step", 4),
    ("tmpfs", "import", "verified", 1),
    ("tmpfs", "import", "imported", 1),
    ("ext4", "push", "step", 6),
    ("ext4", "import", "step", 6),
    ("ext4", "push", "blob", 12),
)
QUICK_PHASES: tuple[tuple[str, str, str, int], ...] = (
    ("tmpfs", "push", "step", 60),
    ("tmpfs", "import", "blob", 90),
)


@dataclass
class Bed:
    months: Months
    base: Path  # the far root at month 1, with its state (its site id, for the import)
    volumes: tuple[Path, ...]
    scratch: Path


@dataclass
class Disk:
    """A small far file system: `grow` frees space without touching what it holds."""

    mount: Path
    kind: str  # "tmpfs" or "ext4"

    def grow(self) -> bool:
        """Make the file system larger (tmpfs only); False when it cannot."""
        if self.kind != "tmpfs":
            return False
        done = subprocess.run(
            ["mount", "-o", f"remount,size={2 * SIZE}", str(self.mount)],
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def reset(self) -> None:
        """Ballast gone, the original size back."""
        for name in ("ballast", faults.BALLAST):
            (self.mount / name).unlink(missing_ok=True)
        if self.kind == "tmpfs":
            subprocess.run(
                ["mount", "-o", f"remount,size={SIZE}", str(self.mount)],
                capture_output=True,
                check=False,
            )


@dataclass
class Tally:
    ends: Counter[str] = field(default_factory=Counter)  # "push: failed in apply" -> runs
    runs: int = 0
    freed_by_growing: int = 0
    oracle_pulls: int = 0
    oracle_every: int = 10
    failures: list[str] = field(default_factory=list)

    def oracle_due(self) -> bool:
        return self.runs % self.oracle_every == 1


@contextlib.contextmanager
def tmpfs_disk(scratch: Path) -> Iterator[Disk]:
    with small_tmpfs(scratch / "mnt", SIZE) as mount:
        if mount is None:
            raise SystemExit("diskfull: cannot mount a tmpfs (the campaign must run as root)")
        yield Disk(mount, "tmpfs")


@contextlib.contextmanager
def ext4_disk(scratch: Path) -> Iterator[Disk]:
    """A loop-mounted ext4 of SIZE, no blocks reserved for root (we run as root)."""
    image, mount = scratch / "ext4.img", scratch / "ext4"
    mount.mkdir(parents=True, exist_ok=True)
    with image.open("wb") as out:
        out.truncate(SIZE)
    made = subprocess.run(
        ["mkfs.ext4", "-q", "-m", "0", "-F", str(image)], capture_output=True, check=False
    )
    mounted = made.returncode == 0 and (
        subprocess.run(
            ["mount", "-o", "loop", str(image), str(mount)], capture_output=True, check=False
        ).returncode
        == 0
    )
    if not mounted:
        raise SystemExit(f"diskfull: cannot mount an ext4 image: {made.stderr!r}")
    try:
        yield Disk(mount, "ext4")
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        image.unlink(missing_ok=True)


def prepare(scratch: Path) -> Bed:
    months = make_months(scratch / "sources")
    base = far_at_month1(months, scratch / "base")
    return Bed(months, base, month2_volumes(months, base, scratch), scratch)


def names_full_disk(text: str) -> bool:
    return any(word in text.lower() for word in DISK_FULL_WORDS)


# -- one run ---------------------------------------------------------------------------


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


def command(bed: Bed, way: str, far: Path) -> tuple[str | Path, ...]:
    if way == "push":
        return ("push", bed.months.two.root, far)
    if way == "receipt":
        return ("receipt", "--root", far, "--to", far.parent / "receipt")
    return ("import", *bed.volumes, "--root", far)


def attempt(
    bed: Bed, way: str, far: Path, where: str, env: dict[str, str] | None = None
) -> tuple[bool, list[str]]:
    """One run on the (nearly) full disk: (did it fail?, what was wrong with how)."""
    if way == "apply":
        message = in_process_apply(bed, far)
        if message is None:
            return False, []
        return True, [] if names_full_disk(message) else [f"{where}: {message}"]
    done = run_syncd(*command(bed, way, far), env=env)
    if done.returncode == 0:
        return False, []
    wrong = []
    if not names_full_disk(done.stderr):
        wrong.append(f"{where}: exit {done.returncode} not naming the full disk: {done.stderr}")
    if "Traceback" in done.stderr:
        wrong.append(f"{where}: a traceback on stderr: {done.stderr.strip()[-300:]}")
    return True, wrong


def after_failure(bed: Bed, way: str, far: Path, where: str) -> list[str]:
    """What must hold once a run failed on the full disk."""
    found = problems(bed.months, far, f"{where}, after the failure")
    try:
        with Staging.open(StateDir(far)) as staging:
            lost = staging.recovery.lost_durable_bytes
    except SyncdError as exc:
        return [*found, f"{where}: staging does not reopen: {exc}"]
    if lost:
        found.append(f"{where}: staging lost {lost} durable bytes")
    if way == "import":
        found += status_truth(far, where)
    return found


def status_truth(far: Path, where: str) -> list[str]:
    """`import --status` answers (or, on a disk too full for its own scan, says so), and
    claims no damaged volume: none was damaged."""
    done = run_syncd("import", "--status", "--root", far)
    wrong = []
    answered = done.returncode in (0, 1) or (done.returncode == 2 and names_full_disk(done.stderr))
    if not answered or "Traceback" in done.stderr:
        wrong.append(f"{where}: import --status exit {done.returncode}: {done.stderr}")
    if "damaged" in done.stdout or "in no volume" in done.stdout:
        wrong.append(f"{where}: import --status claims what is false: {done.stdout.strip()}")
    return wrong


def rerun(bed: Bed, way: str, far: Path, where: str) -> list[str]:
    """With space again, the same way finishes (an apply: its journal, or afresh)."""
    if way == "apply":
        try:
            if resume_pending(far, StateDir(far)) is None:
                in_process_apply(bed, far)
        except SyncdError as exc:
            return [f"{where}: resume failed: {exc}"]
        return []
    done = run_syncd(*command(bed, way, far))
    return [] if done.returncode == 0 else [f"{where}: rerun exit {done.returncode}: {done.stderr}"]


def where_it_failed(far: Path) -> str:
    return "in apply" if (StateDir(far).path / "journal").exists() else "before any live change"


def fresh_far(bed: Bed, disk: Disk, way: str) -> Path:
    far = disk.mount / "far"
    if far.exists():
        shutil.rmtree(far)
    (disk.mount / "receipt").unlink(missing_ok=True)
    copy_far(bed.base, far)
    if way == "apply":
        stage_transfer(bed.months.two, far, everything=True).close()
    return far


def free_space(disk: Disk, tally: Tally) -> None:
    """Every other run grows a tmpfs instead of removing the ballast."""
    if tally.runs % 2 == 0 and disk.grow():
        tally.freed_by_growing += 1
        return
    disk.reset()


def finish(bed: Bed, tally: Tally, disk: Disk, way: str, far: Path, where: str) -> None:
    """After a failed run: free space, rerun, and check the end."""
    free_space(disk, tally)
    tally.failures += rerun(bed, way, far, where)
    disk.reset()
    check_end(bed, tally, way, far, where)


def check_end(bed: Bed, tally: Tally, way: str, far: Path, where: str) -> None:
    if way == "receipt":
        if not (far.parent / "receipt").is_file():
            tally.failures.append(f"{where}: no receipt at the end")
        return
    tally.failures += equals(far, bed.months.two, f"{where}, at the end")
    if tally.oracle_due():
        tally.oracle_pulls += 1
        tally.failures += oracle_problems(far, f"{where}, at the end")


# -- the sweeps ------------------------------------------------------------------------


def one_level(bed: Bed, tally: Tally, disk: Disk, way: str, leave_kib: int) -> None:
    far = fresh_far(bed, disk, way)
    where = f"{way} with {leave_kib} KiB free"
    tally.runs += 1
    fill(disk.mount, leave_kib << 10)
    failed, wrong = attempt(bed, way, far, where)
    tally.failures += wrong
    conclude(bed, tally, disk, (f"levels, {way}", far, where), failed=failed)


def conclude(
    bed: Bed, tally: Tally, disk: Disk, run: tuple[str, Path, str], *, failed: bool, end: str = ""
) -> None:
    """After a run on the full disk: the checks of a failure, space freed and the rerun,
    or the end of a success; counted under `run`'s label."""
    label, far, where = run
    way = label.rpartition(" ")[2]
    if failed:
        tally.ends[f"{label}: failed {where_it_failed(far)}"] += 1
        tally.failures += after_failure(bed, way, far, where)
        finish(bed, tally, disk, way, far, where)
    else:
        tally.ends[f"{label}: succeeded{end}"] += 1
        disk.reset()
        check_end(bed, tally, way, far, where)
    print(f"diskfull: {where}: failed={failed}, {len(tally.failures)} failures", file=sys.stderr)


def walk_phase(
    bed: Bed, tally: Tally, disk: Disk, phase: tuple[str, str, int], ctx: Context
) -> None:
    """Fill the disk at the point's 1st, (1+stride)th, ... arrival until a run no longer
    reaches it."""
    way, point, stride = phase
    rng = ctx.rng(f"diskfull-{disk.kind}-{way}-{point}")
    for n in range(1, MAX_N, stride):
        far = fresh_far(bed, disk, way)
        leave = rng.choice(LEAVE)
        where = f"{way} on {disk.kind}, disk full at {point}:{n} ({leave >> 10} KiB left)"
        env = {faults.FILL_ENV: f"{point}:{n}:{leave}:{disk.mount}"}
        tally.runs += 1
        failed, wrong = attempt(bed, way, far, where, env)
        reached = (disk.mount / faults.BALLAST).exists()
        tally.failures += wrong
        end = "" if reached else " (point not reached)"
        conclude(bed, tally, disk, (f"phases, {way}", far, where), failed=failed, end=end)
        if not reached:
            return
    tally.failures.append(f"{way}: {point} reached more than {MAX_N} times")


def run(ctx: Context) -> Outcome:
    tally = Tally(oracle_every=8 if ctx.quick else 10)
    levels = QUICK_LEVELS if ctx.quick else FULL_LEVELS
    phases = QUICK_PHASES if ctx.quick else FULL_PHASES
    bed = prepare(ctx.scratch)
    with tmpfs_disk(ctx.scratch) as disk:
        for way in QUICK_WAYS if ctx.quick else LEVEL_WAYS:
            for leave in levels:
                one_level(bed, tally, disk, way, leave)
        for kind, way, point, stride in phases:
            if kind == "tmpfs":
                walk_phase(bed, tally, disk, (way, point, stride), ctx)
    ext4 = [p for p in phases if p[0] == "ext4"]
    if ext4:
        with ext4_disk(ctx.scratch) as disk:
            for _, way, point, stride in ext4:
                walk_phase(bed, tally, disk, (way, point, stride), ctx)
    return outcome(tally, levels)


def outcome(tally: Tally, levels: tuple[int, ...]) -> Outcome:
    failed = sum(n for end, n in tally.ends.items() if "failed" in end)
    least = 5 if levels == QUICK_LEVELS else 100
    figures = [Figure("fill levels", f"{len(levels)}: {levels[0]} to {levels[-1]} KiB free")]
    figures += [Figure(end, str(n)) for end, n in sorted(tally.ends.items())]
    figures += [
        Figure("runs", str(tally.runs), f">= {least}", tally.runs >= least),
        Figure("runs that hit the full disk", str(failed)),
        Figure("space freed by growing the tmpfs (ballast kept)", str(tally.freed_by_growing)),
        Figure("oracle pulls (docker-registry + skopeo)", str(tally.oracle_pulls)),
        Figure("failures", str(len(tally.failures)), "0", not tally.failures),
    ]
    return Outcome("diskfull", figures, tally.failures)
