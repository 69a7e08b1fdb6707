"""scale: a registry tree of a million files scanned, diffed and pushed in bounded memory.

The tree is registry storage shaped like distribution's (bench/linktree.py): hundreds of
repositories, each with `_layers/sha256/<hex>/link`, `_manifests/revisions/sha256/<hex>/
link`, `_manifests/tags/<tag>/{current,index/sha256/<hex>}/link`, plus every manifest's
JSON as a blob `blobs/sha256/<xx>/<hex>/data`. Link files are 71 bytes and each sits in a
directory of its own, so the tree has about as many directories as files. It is built
once and cached beside a `.ready` marker (bench/common.py `cached_tree`) under
$SYNCD_SCALE_TREES (default /tmp/syncd-scale-tree); the campaign never writes into it:
every state folder and far root lives in the scratch.

At two sizes, N link files (>= 1,000,000 files in all) and N/10, each step is a real
`python -m syncd` process:

1. cold `syncd scan SRC --state S` (S empty); 2. the no-change rescan (must hash 0 bytes
and give the same snapshot id); 3. cold `syncd push SRC FAR` to an empty far root; 4. the
no-change push (0 blobs sent); then `syncd scan FAR` must give the source's snapshot id;
5. EDITS entries of the far tree changed (a third of the link files rewritten, a third of
the link directories deleted, a third added), FAR rescanned, and `syncd diff` of the
two snapshot files must name exactly those entries; 6. the push that repairs them, after
which FAR's scan id is the source's again.

Peak RSS is each process's own high-water mark: the command runs under GNU time
(`/usr/bin/time -f %M`), whose wait4 rusage cannot include this campaign's pages (a
child forked from here would carry them across exec). For a push that figure is the
larger of the client and the far `serve` (the client reaps it), so the far side runs
under a GNU time of its own (`--remote-syncd "/usr/bin/time ... python -m syncd"`) and the
client's own figure is its VmHWM, sampled every POLL_SECONDS until it exits. Entries are
files + directories as the snapshot counts them (there are no symlinks).

Bounded memory: the peak per entry at both sizes, and the growth from N/10 to N per
added entry, which is what a bigger tree costs. Targets: a scan (cold or not) stays
<= SCAN_TARGET bytes per file at N and per added file from N/10 to N; push and diff are
reported.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import linktree
from bench.linktree import LinkTreeSpec
from reliability.campaign import Context, Figure, Outcome
from syncd.state import STATE_NAME
from tests.pushutil import syncd_env

FULL_LINKS = 880_000  # link files: with the manifest blobs, just over 1,000,000 files
QUICK_LINKS = 2_000
SMALLER = 10  # the second size is N / SMALLER
FULL_EDITS, QUICK_EDITS = 3_000, 30
MIN_FULL_FILES = 1_000_000
SCAN_TARGET = 500  # bytes of peak RSS per file: the bar for a scan
TREES_ENV = "SYNCD_SCALE_TREES"
TREES = Path("/tmp/syncd-scale-tree")
GNU_TIME = "/usr/bin/time"
POLL_SECONDS = 0.05
TIMEOUT = 3 * 3600.0  # one command, at most: a cold push of 2M entries takes minutes
V2 = "docker/registry/v2"


def log(text: str) -> None:
    print(f"scale: {text}", file=sys.stderr, flush=True)


# -- running one command, measured -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    name: str
    seconds: float
    peak_rss: int  # bytes: the command and the children it reaped (GNU time; exact)
    own_peak: int  # bytes: the command process alone (VmHWM, sampled)
    far_peak: int | None  # bytes: a push's far `serve`, by its own GNU time
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.stdout)
        return parsed


class Runner:
    """Runs `python -m syncd ...` children one at a time, each measured alone."""

    def __init__(self, out: Path) -> None:
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.exact = os.access(GNU_TIME, os.X_OK)  # else peaks are bounds from above
        self.syncd = [sys.executable, "-m", "syncd"]

    def _timed(self, usage: Path) -> list[str]:
        return [GNU_TIME, "-f", "%M", "-o", str(usage)] if self.exact else []

    def far_command(self, name: str) -> str:
        """The --remote-syncd of a push: the far `serve` under a GNU time of its own."""
        return shlex.join([*self._timed(self.out / f"{name}.far"), *self.syncd])

    def run(self, name: str, *args: str | Path) -> Run:
        return self.command(name, [*self.syncd, *map(str, args)])

    def command(self, name: str, command: list[str]) -> Run:
        usage, far = self.out / f"{name}.usage", self.out / f"{name}.far"
        argv = [*self._timed(usage), *command]
        stdout, stderr = self.out / f"{name}.out", self.out / f"{name}.err"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            started = time.monotonic()
            child = subprocess.Popen(argv, stdout=out, stderr=err, env=syncd_env())
            status, rss, own = reap(child.pid, via_launcher=self.exact, started=started)
            seconds = time.monotonic() - started
            child.returncode = code = os.waitstatus_to_exitcode(status)
        peak = read_kib(usage) if self.exact else None
        return Run(
            name,
            seconds,
            peak if peak is not None else rss,
            own,
            read_kib(far),
            code,
            stdout.read_text(),
            stderr.read_text(),
        )


def reap(pid: int, *, via_launcher: bool, started: float) -> tuple[int, int, int]:
    """Wait for `pid`, sampling the command's VmHWM meanwhile (GNU time's child when
    `via_launcher`): (wait status, wait4's peak RSS in bytes, the sampled peak)."""
    command = None if via_launcher else pid
    own = 0
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage.ru_maxrss * 1024, own
        if command is None:
            command = child_of(pid)
        if command is not None:
            own = max(own, vm_hwm(command))
        if time.monotonic() - started > TIMEOUT:
            for victim in (command, pid):
                if victim is not None:
                    os.kill(victim, signal.SIGKILL)
        time.sleep(POLL_SECONDS)


def child_of(pid: int) -> int | None:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def vm_hwm(pid: int) -> int:
    """The process's RSS high-water mark in bytes (0 once it is gone or a zombie)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def read_kib(path: Path) -> int | None:
    """GNU time's %M (KiB, the last line: a failed command's status line comes first)."""
    try:
        return int(path.read_text().split()[-1]) * 1024
    except (OSError, IndexError, ValueError):
        return None


# -- the trees -------------------------------------------------------------------------


def source_tree(ctx: Context, links: int) -> Path:
    """The generated tree for `links`: in the scratch for CI's slice, else cached."""
    cache = ctx.scratch if ctx.quick else Path(os.environ.get(TREES_ENV, TREES))
    spec = LinkTreeSpec(links=links, seed=ctx.seed)
    return linktree.cached(cache, f"linktree-{links}-{ctx.seed}", spec, log)


@dataclass(frozen=True, slots=True)
class Edits:
    """How the far tree was changed, as `syncd diff SRC FAR --json` must report it."""

    expected: frozenset[tuple[str, str]]  # (path, change)


def repositories(root: Path) -> list[Path]:
    """Every repository folder (the ones holding `_layers`), in name order."""
    found: list[Path] = []
    stack = [root / V2 / "repositories"]
    while stack:
        folder = stack.pop()
        if (folder / "_layers").is_dir():
            found.append(folder)
        else:
            stack += sorted((p for p in folder.iterdir() if p.is_dir()), reverse=True)
    return sorted(found)


def pick_layer_links(rng: random.Random, repos: list[Path], count: int) -> list[Path]:
    """`count` distinct `_layers/sha256/<hex>` folders from repositories drawn at random."""
    listed: dict[Path, list[Path]] = {}
    chosen: set[Path] = set()
    while len(chosen) < count:
        layers = rng.choice(repos) / "_layers/sha256"
        if layers not in listed:
            listed[layers] = sorted(layers.iterdir())
        chosen.add(rng.choice(listed[layers]))
    return sorted(chosen)


def new_link(rng: random.Random) -> bytes:
    return f"sha256:{rng.getrandbits(256):064x}".encode()


def edit_far(far: Path, rng: random.Random, count: int) -> Edits:
    """Rewrite, delete and add `count // 3` link entries each. The parent folders' mtimes
    are put back, so that the diff names exactly the edited entries."""
    third = count // 3
    picked = pick_layer_links(rng, repositories(far), 2 * third)
    rewrite, delete = picked[:third], picked[third:]
    parents = {p.parent: p.parent.stat().st_mtime_ns for p in picked}
    expected: set[tuple[str, str]] = set()
    for folder in rewrite:
        (folder / "link").write_bytes(new_link(rng))
        expected.add((folder.relative_to(far).as_posix() + "/link", "differs"))
    for folder in delete:
        shutil.rmtree(folder)
        expected.add((folder.relative_to(far).as_posix(), "only_in_a"))
    for parent in rng.choices(sorted(parents), k=third):
        added = parent / f"{rng.getrandbits(256):064x}"
        added.mkdir()
        (added / "link").write_bytes(new_link(rng))
        expected.add((added.relative_to(far).as_posix(), "only_in_b"))
    for parent, mtime in parents.items():
        os.utime(parent, ns=(mtime, mtime))
    return Edits(frozenset(expected))


# -- one size, step by step ------------------------------------------------------------


@dataclass
class Size:
    key: str  # in file names: "small", "large"
    label: str  # in figures: "N/10", "N"
    links: int
    files: int = 0
    dirs: int = 0
    bytes: int = 0
    runs: dict[str, Run] = field(default_factory=dict)

    @property
    def entries(self) -> int:
        return self.files + self.dirs


class Exercise:
    """The steps at one size, in order, each checked; a failed step ends the size."""

    def __init__(self, ctx: Context, size: Size, runner: Runner) -> None:
        self.ctx, self.size, self.runner = ctx, size, runner
        self.root = source_tree(ctx, size.links)
        work = ctx.scratch / size.key
        self.state, self.far = work / "src-state", work / "far"
        self.source_snapshot = Path()
        self.failures: list[str] = []

    def fail(self, text: str) -> None:
        self.failures.append(f"{self.size.label}: {text}")
        log(f"FAILURE: {self.size.label}: {text}")

    def step(self, name: str, *args: str | Path, far: bool = False, code: int = 0) -> Run | None:
        key = f"{self.size.key}-{name.replace(' ', '-')}"
        if far:
            args = (*args, "--remote-syncd", self.runner.far_command(key))
        run = self.runner.run(key, *args)
        far_text = "" if run.far_peak is None else f", far serve {mib(run.far_peak)}"
        log(
            f"{self.size.label} {name}: exit {run.code}, {run.seconds:.1f} s, peak RSS "
            f"{mib(run.peak_rss)} (own {mib(run.own_peak)}{far_text})"
        )
        if run.code != code:
            self.fail(f"{name}: exit {run.code} (wanted {code}): {run.stderr.strip()[-600:]}")
            return None
        self.size.runs[name] = run
        return run

    def all(self) -> None:
        snapshot = self.scans()
        if snapshot is None:
            return
        if self.push("cold push", snapshot, "applied") is None:
            return
        pushed = self.push("no-change push", snapshot, "up-to-date")
        if pushed is not None and pushed["blobs_sent"]:
            self.fail(f"no-change push: sent {pushed['blobs_sent']} blobs")
        self.rsync_no_change()
        self.far_equals(snapshot, "after the cold push")
        if self.diff():
            self.push("repair push", snapshot, "applied")
            self.far_equals(snapshot, "after the repair push")

    def scans(self) -> str | None:
        """The cold scan and the no-change rescan; the snapshot id, if both held."""
        scan = ("scan", self.root, "--state", self.state, "--json")
        cold = self.step("cold scan", *scan)
        if cold is None:
            return None
        first = cold.json()
        self.size.files, self.size.dirs, self.size.bytes = (
            first["files"],
            first["dirs"],
            first["bytes"],
        )
        self.source_snapshot = Path(first["snapshot_file"])
        if not first["complete"] or first["problems"]:
            self.fail(f"cold scan: incomplete or problems: {first['problems'][:3]}")
        again = self.step("no-change rescan", *scan)
        if again is None:
            return None
        second = again.json()
        if second["hashed_bytes"] or second["snapshot"] != first["snapshot"]:
            self.fail(
                f"no-change rescan: hashed {second['hashed_bytes']} bytes, snapshot "
                f"{second['snapshot']} (cold: {first['snapshot']})"
            )
        snapshot: str = first["snapshot"]
        return snapshot

    def push(self, name: str, snapshot: str, status: str) -> dict[str, Any] | None:
        run = self.step(
            name, "push", self.root, self.far, "--state", self.state, "--json", far=True
        )
        if run is None:
            return None
        summary = run.json()
        if summary["status"] != status or summary["far_after"] != snapshot:
            self.fail(f"{name}: {summary['status']}, far {summary['far_after']} (want {status})")
            return None
        return summary

    def rsync_no_change(self) -> None:
        """rsync's own no-change run over the same pair, the no-change push's baseline
        (local, as the push is: sender and receiver over a pipe). It runs on a copy of
        the far tree (a real one: hard links would move every far file's ctime, and the
        far side's next scan would read them all again), after one untimed run that
        brings over what rsync keeps and syncd does not (directory times): the timed run
        is rsync's steady state."""
        copy = self.far.with_name("far-rsync")
        subprocess.run(["cp", "-a", str(self.far), str(copy)], check=True)
        shutil.rmtree(copy / STATE_NAME)
        exclude = f"/{STATE_NAME}"
        argv = ["rsync", "-a", "--delete", "--exclude", exclude, f"{self.root}/", f"{copy}/"]
        try:
            subprocess.run(argv, check=True, capture_output=True)
            run = self.runner.command(f"{self.size.key}-rsync-no-change", argv)
            log(f"{self.size.label} rsync no-change: exit {run.code}, {run.seconds:.1f} s")
            if run.code != 0:
                self.fail(f"rsync no-change: exit {run.code}: {run.stderr.strip()[-300:]}")
            else:
                self.size.runs[RSYNC_STEP] = run
        finally:
            shutil.rmtree(copy)

    def far_equals(self, snapshot: str, when: str) -> Path | None:
        """The far tree's own scan (its state: FAR/.syncd, the far side's): its snapshot
        file, or None after naming a difference from `snapshot`."""
        run = self.step(f"far scan {when}", "scan", self.far, "--json")
        if run is None:
            return None
        scanned = run.json()
        if snapshot and scanned["snapshot"] != snapshot:
            self.fail(f"far scan {when}: snapshot {scanned['snapshot']}, source {snapshot}")
            return None
        return Path(scanned["snapshot_file"])

    def diff(self) -> bool:
        """Edit the far tree; `syncd diff` of the two snapshot files must name exactly the
        edited entries (exit 1: they differ)."""
        edits = edit_far(self.far, self.ctx.rng(self.size.key), edit_count(self.ctx))
        far_snapshot = self.far_equals("", "after the edits")
        if far_snapshot is None:
            return False
        run = self.step("diff", "diff", self.source_snapshot, far_snapshot, "--json", code=1)
        if run is None:
            return False
        got = {(c["path"], c["change"]) for c in run.json()["changes"]}
        if got != edits.expected:
            missing, extra = edits.expected - got, got - edits.expected
            self.fail(
                f"diff: {len(missing)} edits not named, {len(extra)} changes not made: "
                f"{sorted(missing)[:3]} {sorted(extra)[:3]}"
            )
            return False
        return True


def edit_count(ctx: Context) -> int:
    return QUICK_EDITS if ctx.quick else FULL_EDITS


# -- figures ---------------------------------------------------------------------------


def mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


# (figure, the step's run, which peak: "peak" exact, "own" the client alone, "far" serve)
MEASURED = (
    ("cold scan", "cold scan", "peak"),
    ("no-change rescan", "no-change rescan", "peak"),
    ("cold push: client", "cold push", "own"),
    ("cold push: far serve", "cold push", "far"),
    ("no-change push: client", "no-change push", "own"),
    ("no-change push: far serve", "no-change push", "far"),
    ("diff of the two snapshot files", "diff", "peak"),
    ("repair push: client", "repair push", "own"),
    ("repair push: far serve", "repair push", "far"),
)
SCANS = ("cold scan", "no-change rescan")
RSYNC_STEP = "rsync no-change"


def peak_of(run: Run, which: str) -> int | None:
    if which == "far":
        return run.far_peak
    if which == "peak":
        return run.peak_rss
    # The client alone: GNU time's figure is the larger of it and the far side's, so it
    # is the client's exactly when the far side's is lower; else the sampled VmHWM.
    if run.far_peak is not None and run.far_peak < run.peak_rss:
        return run.peak_rss
    return run.own_peak


def tree_figure(size: Size, quick: bool) -> Figure:
    value = (
        f"{size.files:,} files + {size.dirs:,} dirs = {size.entries:,} entries, "
        f"{size.bytes / 1e6:.1f} MB ({size.links:,} link files asked)"
    )
    if quick or size.key == "small":
        return Figure(f"tree at {size.label}", value)
    return Figure(
        f"tree at {size.label}", value, f">= {MIN_FULL_FILES:,} files", size.files >= MIN_FULL_FILES
    )


def step_figure(size: Size, name: str, step: str, which: str, quick: bool) -> Figure | None:
    run = size.runs.get(step)
    peak = None if run is None else peak_of(run, which)
    if run is None or peak is None or not size.files:
        return None
    value = (
        f"{run.seconds:.1f} s; peak RSS {mib(peak)} = {peak / size.entries:.0f} B/entry, "
        f"{peak / size.files:.0f} B/file"
    )
    if quick or name not in SCANS or size.key == "small":
        return Figure(f"{name} at {size.label}", value)
    per_file = peak / size.files
    return Figure(
        f"{name} at {size.label}", value, f"<= {SCAN_TARGET} B/file", per_file <= SCAN_TARGET
    )


def growth_figure(
    small: Size, large: Size, name: str, step: str, which: str, quick: bool
) -> Figure | None:
    runs = small.runs.get(step), large.runs.get(step)
    if runs[0] is None or runs[1] is None:
        return None
    peaks = peak_of(runs[0], which), peak_of(runs[1], which)
    if peaks[0] is None or peaks[1] is None or large.files <= small.files:
        return None
    grown = peaks[1] - peaks[0]
    per_entry = grown / (large.entries - small.entries)
    per_file = grown / (large.files - small.files)
    value = (
        f"{mib(peaks[0])} -> {mib(peaks[1])} ({peaks[1] / peaks[0]:.2f}x for "
        f"{large.entries / small.entries:.1f}x the entries): {per_entry:.0f} B per added "
        f"entry, {per_file:.0f} B per added file"
    )
    title = f"{name}: growth from {small.label} to {large.label}"
    if quick or name not in SCANS:
        return Figure(title, value)
    return Figure(title, value, f"<= {SCAN_TARGET} B per added file", per_file <= SCAN_TARGET)


def rsync_figure(size: Size) -> Figure | None:
    """The no-change push's time over rsync's on the same pair (issue 17's bar: 0.5)."""
    ours, theirs = size.runs.get("no-change push"), size.runs.get(RSYNC_STEP)
    if ours is None or theirs is None or theirs.seconds <= 0:
        return None
    value = (
        f"{ours.seconds:.1f} s / {theirs.seconds:.1f} s = {ours.seconds / theirs.seconds:.2f} "
        f"(rsync -a --delete, no change; peak RSS {mib(theirs.peak_rss)})"
    )
    return Figure(f"no-change push / rsync no-change at {size.label}", value)


def figures(small: Size, large: Size, ctx: Context, failures: list[str]) -> list[Figure]:
    out = [tree_figure(size, ctx.quick) for size in (large, small)]
    for name, step, which in MEASURED:
        rows = [
            step_figure(large, name, step, which, ctx.quick),
            step_figure(small, name, step, which, ctx.quick),
            growth_figure(small, large, name, step, which, ctx.quick),
        ]
        out += [row for row in rows if row is not None]
    out += [row for row in (rsync_figure(size) for size in (large, small)) if row is not None]
    edits = edit_count(ctx) // 3 * 3
    out += [
        Figure("far entries edited, then named exactly by `syncd diff`", f"{edits:,} per size"),
        Figure("failures", str(len(failures)), "0", not failures),
    ]
    return out


# -- the campaign ----------------------------------------------------------------------


def sizes(ctx: Context) -> tuple[Size, Size]:
    links = QUICK_LINKS if ctx.quick else FULL_LINKS
    return Size("small", f"N/{SMALLER}", links // SMALLER), Size("large", "N", links)


def run(ctx: Context) -> Outcome:
    runner = Runner(ctx.scratch / "runs")
    failures: list[str] = []
    if not runner.exact:
        failures.append(f"no {GNU_TIME}: peak RSS would include this process's pages")
    small, large = sizes(ctx)
    for size in (small, large):  # the small one first: a broken step fails fast
        exercise = Exercise(ctx, size, runner)
        exercise.all()
        failures += exercise.failures
    return Outcome("scale", figures(small, large, ctx, failures), failures)
