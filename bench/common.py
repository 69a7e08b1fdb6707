"""Shared benchmark helpers: timed subprocesses, alternating runs, a tree cache, tables.

A timed run is one child process: wall time from just before the spawn to its reaping
(`os.wait4`), and peak RSS from the rusage of the command's own wait4 (for a shell
pipeline, the largest process in it: a parent's rusage carries the maximum of its
waited-for children).

Linux keeps a process's RSS high-water mark across exec, and a forked (or vforked)
child starts out with its parent's pages: `ru_maxrss` of a child of this ~30 MiB Python
process is never below ~30 MiB, whatever it execs. So the command is started through
GNU time (`/usr/bin/time -f %M`, ~1 MiB), which forks it, reaps it with wait4 and writes
its `ru_maxrss`; its floor is ~1 MiB instead. Without GNU time, the direct child's
wait4 figure is used and marked as an upper bound. Two commands
are compared by running them alternately (A B A B ...) after one untimed warm-up each,
so that drift in the machine's load hits both alike, and by taking medians.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

DEFAULT_WORKDIR = Path("/tmp/syncd-bench")
REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SYNCD_STATE = ".syncd"
LOAD_THRESHOLD = 0.5  # a full run first waits for a 1-minute load average below this


def make_log(tag: str) -> Callable[[str], None]:
    """A benchmark's progress log: stderr, stamped, so stdout keeps only the table."""

    def log(text: str) -> None:
        print(f"[{tag} {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    return log


@dataclass(frozen=True, slots=True)
class Command:
    """A command to time; `prepare` runs untimed just before each run."""

    name: str
    argv: Sequence[str]
    env: dict[str, str] | None = None
    prepare: Callable[[], None] | None = None
    stdout: Path | None = None  # where stdout goes (default: /dev/null)


@dataclass(frozen=True, slots=True)
class Run:
    seconds: float
    peak_rss: int  # bytes
    user: float
    system: float
    exact: bool = True  # False: peak RSS is wait4's figure, floored by the launcher's RSS
    others_cpu: float = 0.0  # CPU seconds the rest of the machine used during the run
    disturbed: bool = False  # others_cpu was high: other processes competed with this run
    io_stall: float = 0.0  # seconds some task (this command or another) waited on I/O


@dataclass(slots=True)
class Series:
    name: str
    runs: list[Run] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def peak_rss(self) -> int:
        return round(statistics.median(r.peak_rss for r in self.runs))

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "median_seconds": round(self.seconds, 4),
            "median_peak_rss": self.peak_rss,
            "seconds": [round(r.seconds, 4) for r in self.runs],
            "peak_rss": [r.peak_rss for r in self.runs],
            "user": [round(r.user, 3) for r in self.runs],
            "system": [round(r.system, 3) for r in self.runs],
            "peak_rss_exact": all(r.exact for r in self.runs),
            "others_cpu": [r.others_cpu for r in self.runs],
            "disturbed": [r.disturbed for r in self.runs],
            "io_stall": [r.io_stall for r in self.runs],
        }


class CommandFailed(RuntimeError):
    pass


GNU_TIME = "/usr/bin/time"


def _launcher(usage_file: Path) -> list[str]:
    if not os.access(GNU_TIME, os.X_OK):
        return []
    return [GNU_TIME, "-f", "%M %U %S", "-o", str(usage_file)]


def _read_usage(usage_file: Path) -> tuple[int, float, float] | None:
    """(peak RSS bytes, user s, system s) as GNU time wrote them (last line)."""
    try:
        last = usage_file.read_text().strip().splitlines()[-1]
        rss, user, system = last.split()
        return int(rss) * 1024, float(user), float(system)
    except (OSError, IndexError, ValueError):
        return None


@dataclass(slots=True)
class Quiet:
    """How runs guard against other processes (other sessions' tests, say).

    Before each run: wait until the whole machine is idle (busy below `idle_share` of
    all CPUs over `sample` seconds). After it: the CPU time everything else used during
    the run (/proc/stat's busy time less the command's own user + system time) is the
    run's `others_cpu`; a run where it exceeds `disturbed_share` of the wall time (and
    0.1 s) is disturbed, and `alternate` runs it again, up to `retries` times.
    """

    enabled: bool = True
    idle_share: float = 0.1
    sample: float = 0.5
    patience: float = 120.0
    disturbed_share: float = 0.2
    retries: int = 3


QUIET = Quiet()
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_busy_seconds() -> float:
    """CPU time all CPUs together have spent busy since boot (/proc/stat), in seconds."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields)
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def io_stall_seconds() -> float:
    """Time some task has been stalled on I/O since boot (/proc/pressure/io), in seconds."""
    try:
        line = Path("/proc/pressure/io").read_text().split("\n", 1)[0]
        return int(line.rsplit("total=", 1)[1]) / 1e6
    except (OSError, IndexError, ValueError):
        return 0.0


def wait_until_idle(log: Callable[[str], None] | None = None) -> float:
    """Wait until the machine is idle (see Quiet); return the busy share seen last."""
    cpus = os.cpu_count() or 1
    deadline = time.monotonic() + QUIET.patience
    told = False
    while True:
        before = cpu_busy_seconds()
        time.sleep(QUIET.sample)
        share = (cpu_busy_seconds() - before) / (QUIET.sample * cpus)
        if share < QUIET.idle_share or time.monotonic() > deadline:
            return share
        if log is not None and not told:
            log(f"  other processes keep {share:.0%} of the CPUs busy; waiting")
            told = True


def run_timed(command: Command, log: Callable[[str], None] | None = None) -> Run:
    """Run `command` once (after its untimed `prepare`, a sync and, if QUIET.enabled,
    a wait for an idle machine) and measure it."""
    if command.prepare is not None:
        command.prepare()
    # Write back what earlier runs left dirty, so that no run pays for another's writes.
    os.sync()
    if QUIET.enabled:
        wait_until_idle(log)
    busy_before, stall_before = cpu_busy_seconds(), io_stall_seconds()
    out: IO[bytes] | int
    out = command.stdout.open("wb") if command.stdout else subprocess.DEVNULL
    usage_file = Path(tempfile.gettempdir()) / f"syncd-bench-usage-{os.getpid()}"
    usage_file.unlink(missing_ok=True)
    argv = _launcher(usage_file) + list(command.argv)
    try:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, env=command.env)
        # Read stderr before reaping: a chatty child must not block on a full pipe.
        assert proc.stderr is not None
        errors = proc.stderr.read()
        proc.stderr.close()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        busy = cpu_busy_seconds() - busy_before
        io_stall = io_stall_seconds() - stall_before
    finally:
        if not isinstance(out, int):
            out.close()
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        text = errors.decode(errors="replace")[-2000:]
        raise CommandFailed(f"{command.name}: exit {code}: {' '.join(command.argv)}\n{text}")
    measured = _read_usage(usage_file)
    usage_file.unlink(missing_ok=True)
    if measured is None:  # no GNU time: an upper bound that includes this process's pages
        rss, user, system = usage.ru_maxrss * 1024, usage.ru_utime, usage.ru_stime
        exact = False
    else:
        (rss, user, system), exact = measured, True
    others = max(0.0, busy - user - system)
    disturbed = _disturbed(others, seconds)
    return Run(seconds, rss, user, system, exact, round(others, 3), disturbed, round(io_stall, 3))


def _disturbed(others_cpu: float, seconds: float) -> bool:
    return others_cpu > max(0.1, QUIET.disturbed_share * seconds)


def alternate(
    a: Command, b: Command, runs: int, *, log: Callable[[str], None]
) -> tuple[Series, Series]:
    """One untimed warm-up of each, then `runs` timed runs of each, alternating A B A B.

    A disturbed run (see Quiet) is run again, up to QUIET.retries times.
    """
    run_timed(a, log)
    run_timed(b, log)
    series_a, series_b = Series(a.name), Series(b.name)
    for i in range(runs):
        for command, series in ((a, series_a), (b, series_b)):
            series.runs.append(_undisturbed_run(command, f"[{i + 1}/{runs}]", log))
    return series_a, series_b


def _undisturbed_run(command: Command, label: str, log: Callable[[str], None]) -> Run:
    for attempt in range(QUIET.retries + 1):
        result = run_timed(command, log)
        log(
            f"  {label} {command.name}: {result.seconds:.3f} s, "
            f"peak RSS {result.peak_rss / 2**20:.1f} MiB, others {result.others_cpu:.2f} s CPU, "
            f"I/O stall {result.io_stall:.2f} s" + (" (disturbed)" if result.disturbed else "")
        )
        if not (QUIET.enabled and result.disturbed) or attempt == QUIET.retries:
            return result
    raise AssertionError("unreachable")


def repeat(command: Command, runs: int, log: Callable[[str], None] | None = None) -> Series:
    series = Series(command.name)
    for i in range(runs):
        series.runs.append(_undisturbed_run(command, f"[{i + 1}/{runs}]", log or (lambda _: None)))
    return series


class Pairs:
    """Alternating pairs of commands, each pair's figures kept under its key."""

    def __init__(self, runs: int, log: Callable[[str], None]) -> None:
        self.runs = runs
        self.log = log
        self.figures: dict[str, Any] = {}

    def pair(self, key: str, a: Command, b: Command) -> tuple[Series, Series]:
        self.log(f"{key}: {a.name} vs {b.name}, {self.runs} runs each, alternating")
        sa, sb = alternate(a, b, self.runs, log=self.log)
        ratio = sa.seconds / sb.seconds
        self.figures[key] = {
            "syncd": sa.as_json(),
            "baseline": sb.as_json(),
            "ratio": round(ratio, 4),
        }
        self.log(f"{key}: {sa.seconds:.3f} s / {sb.seconds:.3f} s = {ratio:.2f}")
        return sa, sb

    def startup(self, python: str, env: dict[str, str], command: str) -> tuple[Series, Series]:
        """syncd COMMAND's fixed cost against the bare interpreter (figures["startup"])."""
        self.log(f"start-up: `python -m syncd {command} --help` vs `python -c pass`")
        started, bare = alternate(*startup_commands(python, env, command), self.runs, log=self.log)
        self.figures["startup"] = {"syncd": started.as_json(), "python": bare.as_json()}
        return started, bare


def stat_walk(name: str, root: Path) -> Command:
    """`find ROOT -printf '%s %T@\\n'`: a stat of every entry, the baseline of a walk."""
    return Command(name, ["find", str(root), "-printf", r"%s %T@\n"])


def read_result(path: Path) -> dict[str, Any]:
    """The JSON a `syncd ... --json` run wrote to its stdout file."""
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def startup_commands(python: str, env: dict[str, str], command: str) -> tuple[Command, Command]:
    """`python -m syncd COMMAND --help` (start-up and the command's imports) and
    `python -c pass` (the interpreter alone)."""
    argv = [python, "-m", "syncd", command, "--help"]
    return (
        Command(f"python -m syncd {command} --help", argv, env=env),
        Command("python -c pass", [python, "-c", "pass"]),
    )


# -- trees generated once and reused -------------------------------------------------


def cached_tree(
    workdir: Path,
    name: str,
    params: dict[str, Any],
    build: Callable[[Path], None],
    *,
    log: Callable[[str], None],
) -> Path:
    """`workdir/trees/name`, built by `build(path)` unless a marker says it already is.

    The marker lives beside the tree (not in it, so it is not scanned) and records the
    parameters; a tree built with other parameters, or left half-built, is rebuilt.
    """
    trees = workdir / "trees"
    root, marker = trees / name, trees / f"{name}.ready"
    want = json.dumps(params, sort_keys=True)
    if root.is_dir() and marker.is_file() and marker.read_text() == want:
        return root
    log(f"building tree {root} (once; reused by later runs)")
    trees.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    (trees / f"{name}.snapshot").unlink(missing_ok=True)
    tmp = trees / f"{name}.tmp"
    for old in (root, tmp):
        if old.exists():
            shutil.rmtree(old)
    started = time.monotonic()
    build(tmp)
    tmp.rename(root)
    marker.write_text(want)
    log(f"built {root} in {time.monotonic() - started:.1f} s")
    return root


def freeze_code(workdir: Path, packages: Sequence[str] = ("syncd", "protocol")) -> tuple[Path, str]:
    """Copy the packages' sources to `workdir/code` and return it with a digest of them.

    The commands under test import from the copy, so that edits to the working tree
    during a run cannot mix two versions (or break an import) between runs.
    """
    code = workdir / "code"
    if code.exists():
        shutil.rmtree(code)
    code.mkdir(parents=True)
    digest = hashlib.sha256()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in packages:
        shutil.copytree(REPO / name, code / name, ignore=ignore)
        for path in sorted((code / name).rglob("*")):
            if path.is_file():
                digest.update(str(path.relative_to(code)).encode() + b"\0")
                digest.update(path.read_bytes())
    return code, digest.hexdigest()[:16]


def remote_syncd(python: str, code: Path) -> str:
    """The `--remote-syncd` command that runs the far side from the frozen `code` too.

    sshd builds the far command's environment itself (PYTHONPATH is not passed on), so a
    bare `python -m syncd` there imports whatever the interpreter's environment holds,
    such as an editable install of another checkout: a benchmark of a branch then
    measured the branch's client against main's far side.
    """
    return f"env PYTHONPATH={shlex.quote(str(code))} {shlex.quote(python)} -m syncd"


def remover(path: Path) -> Callable[[], None]:
    """A `prepare` that deletes `path` (a far root, an output folder) before each run."""

    def prepare() -> None:
        shutil.rmtree(path, ignore_errors=True)

    return prepare


def remove_state(root: Path) -> Callable[[], None]:
    """A `prepare` that deletes the tree's syncd state folder: the next scan is cold."""
    return remover(root / SYNCD_STATE)


# -- the machine ---------------------------------------------------------------------


def machine(directory: Path) -> dict[str, Any]:
    def tool(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
        except OSError:
            return "?"
        return done.stdout.strip() or "?"

    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {
        "nproc": os.cpu_count(),
        "ram_bytes": pages,
        "kernel": platform.release(),
        "cpu": _cpu_model(),
        "fs_type": tool(["findmnt", "-no", "FSTYPE", "-T", str(directory)]),
        "python": sys.version.split()[0],
        "b3sum": tool(["b3sum", "--version"]),
        "find": tool(["find", "--version"]).splitlines()[0] if shutil.which("find") else "?",
        "load_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def wait_for_quiet(threshold: float, patience: float, log: Callable[[str], None]) -> float:
    """Wait (up to `patience` seconds) for the 1-minute load average to drop below
    `threshold`; return the load seen last."""
    deadline = time.monotonic() + patience
    load = os.getloadavg()[0]
    while load >= threshold and time.monotonic() < deadline:
        log(f"load average {load:.2f} >= {threshold}; waiting for the machine to be quiet")
        time.sleep(15)
        load = os.getloadavg()[0]
    if load >= threshold:
        log(f"warning: load average still {load:.2f}; figures may be noisy")
    return load


# -- output --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    figure: str
    syncd: str
    baseline: str
    ratio: float
    ratio_text: str
    target: str
    met: bool | None  # None: reported only

    def as_json(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "syncd": self.syncd,
            "baseline": self.baseline,
            "ratio": round(self.ratio, 4),
            "target": self.target,
            "met": self.met,
        }


def markdown_table(rows: Sequence[Row]) -> str:
    head = ["figure", "syncd", "baseline", "ratio", "target", "met?"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        met = "—" if r.met is None else ("yes" if r.met else "**no**")
        cells = [r.figure, r.syncd, r.baseline, r.ratio_text, r.target, met]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seconds_text(series: Series) -> str:
    low = min(r.seconds for r in series.runs)
    high = max(r.seconds for r in series.runs)
    digits = 3 if series.seconds < 1 else 2
    return f"{series.seconds:.{digits}f} s ({low:.{digits}f}..{high:.{digits}f})"


def mib(value: float) -> str:
    return f"{value / 2**20:.1f} MiB"


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def machine_text(info: dict[str, Any]) -> str:
    """The machine and the load a run saw, for a report's first paragraph."""
    return (
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['ram_bytes'] / 2**30:.1f} GiB RAM, "
        f"kernel {info['kernel']}, {info['fs_type']} at the work folder; Python "
        f"{info['python']}, {info['b3sum']}; load average {info['load_at_start']} at start, "
        f"{info.get('load_before_measuring', '?')} when measuring began, "
        f"{info['load_at_end']} at end; syncd sources sha256 {info['code_digest']}."
    )


def ratio_row(figure: str, a: Series, b: Series, target: float | None) -> Row:
    """Wall time of `a` over `b`; lower is better."""
    ratio = a.seconds / b.seconds
    return Row(
        figure=figure,
        syncd=seconds_text(a),
        baseline=seconds_text(b),
        ratio=ratio,
        ratio_text=f"{ratio:.2f}",
        target="report" if target is None else f"<= {target:g}",
        met=None if target is None else ratio <= target,
    )


def startup_row(command: str, started: Series, bare: Series) -> Row:
    extra = started.seconds - bare.seconds
    return Row(
        figure=f"syncd {command} start-up: python -m syncd {command} --help (python -c pass)",
        syncd=seconds_text(started),
        baseline=seconds_text(bare),
        ratio=extra,
        ratio_text=f"+{extra * 1000:.0f} ms",
        target="report",
        met=None,
    )


def derived_row(figure: str, syncd: float, baseline: float) -> Row:
    """A ratio of medians after subtracting other medians: approximate, reported only."""
    ratio = syncd / baseline
    return Row(figure, f"{syncd:.3f} s", f"{baseline:.3f} s", ratio, f"{ratio:.2f}", "report", None)


def bytes_row(figure: str, ours: int, base: int, target: float | None) -> Row:
    ratio = ours / base
    return Row(
        figure,
        f"{ours / 1e6:.1f} MB",
        f"{base / 1e6:.1f} MB",
        ratio,
        f"{ratio:.3f}",
        "report" if target is None else f"<= {target:g}",
        None if target is None else ratio <= target,
    )


# -- the command line and the result files -------------------------------------------


def arguments(doc: str | None, *, runs: int | None) -> argparse.ArgumentParser:
    """The options every benchmark takes: --workdir, --runs, --quick, --no-wait."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"where trees are generated and kept (default {DEFAULT_WORKDIR})",
    )
    parser.add_argument("--runs", type=int, default=runs, help="timed runs of each command")
    parser.add_argument("--quick", action="store_true", help="small trees: checks the harness")
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help=f"do not wait for the load average to drop below {LOAD_THRESHOLD}",
    )
    return parser


def settle(
    args: argparse.Namespace, log: Callable[[str], None], patience: float = 900
) -> float | None:
    """How a run treats other processes (see Quiet): `--no-wait` ignores them, `--quick`
    only exercises the guard (it checks the harness, it measures nothing), and a full run
    first waits for the load average to drop. Returns the load seen last, if waited."""
    QUIET.enabled = not args.no_wait
    if args.quick:
        QUIET.sample, QUIET.patience, QUIET.retries = 0.2, 2.0, 1
        return None
    if args.no_wait:
        return None
    return round(wait_for_quiet(LOAD_THRESHOLD, patience, log), 2)


def report_rows(
    kind: str, args: argparse.Namespace, rows: Sequence[Row], data: dict[str, Any], suffix: str = ""
) -> dict[str, Any]:
    """Print the rows' table and save it with `data`, the machine and the rows (the
    benches that report one table); returns what was saved as JSON."""
    table = markdown_table(rows)
    print(table)
    saved = {"machine": machine(args.workdir), "rows": [r.as_json() for r in rows], **data}
    save_results(kind, args, table + "\n", saved, suffix)
    return saved


def save_results(
    kind: str, args: argparse.Namespace, text: str, data: dict[str, Any], suffix: str = ""
) -> Path:
    """bench/results/KIND-DATE[-quick][SUFFIX].md and .json; returns the path sans suffix."""
    stem = f"{kind}-{datetime.now(UTC):%Y-%m-%d}" + ("-quick" if args.quick else "") + suffix
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.md").write_text(text)
    write_json(RESULTS / f"{stem}.json", data)
    return RESULTS / stem
