"""crash, signals: SIGINT and SIGTERM of `syncd push`, `syncd import` and `syncd export`.

The kill -9 walks (crash.py) stop the far side; an operator stops the command itself,
with Ctrl-C or `systemctl stop`/`kill`. Each run here is the command as a user starts
it, given SIGINT or SIGTERM after a delay drawn from the seeded generator over the
command's lifetime in an unstopped run (measured first), so stops land in the scan, the
handshake, the transfer (the push runs at --bwlimit, so most of its life is transfer),
the apply and the clean-up. SIGINT goes to the command's whole process group, as a
terminal's Ctrl-C does (a push's local far side runs in its own session, outside it).

After each stop:
- the exit status is 128 + the signal (130, 143), or 0 when the run had ended first
  (counted apart, and checked like any finished run);
- the last line of stderr says what stopped it and what was kept;
- the time from the signal to the exit is at most 2 s;
- push and import: the far tree is consistent (crash.py's checks); the far side of a
  stopped push is waited for (an apply it had begun runs to its end); then a rerun must
  complete and equal month 2;
- export: nothing that looks like a complete export is left; a rerun completes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from reliability import crash
from reliability.campaign import Context, Figure
from reliability.farside import equals, problems, run_syncd
from tests.pushutil import syncd_env

STOP_BAR = 2.0  # seconds from the signal to the exit, at most
BWLIMIT = ("--bwlimit", "150k")  # month 2 then takes a few seconds to send
SCENARIOS = ("push", "import", "export")
_WAIT = 300.0


@dataclass
class SignalTally:
    stops: dict[str, int] = field(default_factory=dict)  # "push SIGINT" -> stopped runs
    finished_first: int = 0  # the signal came after the run had ended
    before_start: int = 0  # it came while Python was starting, before syncd's code ran
    slowest: float = 0.0  # seconds from a signal to the exit
    failures: list[str] = field(default_factory=list)


def signal_stops(bed: crash.Bed, ctx: Context, count: int) -> tuple[list[Figure], list[str]]:
    """`count` stops per scenario, SIGINT and SIGTERM in turn: figures and failures."""
    tally = SignalTally()
    rng = ctx.rng("crash-signals")
    for number, scenario in enumerate(SCENARIOS):
        span = _lifetime(bed, scenario)
        for n in range(count):
            signum = signal.SIGINT if (number + n) % 2 == 0 else signal.SIGTERM
            _one_stop(bed, tally, scenario, signum, rng.uniform(0.0, span))
    stopped = sum(tally.stops.values())
    figures = [Figure(f"signal stops: {name}", str(k)) for name, k in sorted(tally.stops.items())]
    figures += [
        Figure("signal stops, all", str(stopped), ">= 1", stopped >= 1),
        Figure(
            "slowest signal -> exit (s)",
            f"{tally.slowest:.2f}",
            f"<= {STOP_BAR:g}",
            tally.slowest <= STOP_BAR,
        ),
        Figure("signals after the run had ended (not counted)", str(tally.finished_first)),
        Figure(
            "signals while Python started (default action, not counted)", str(tally.before_start)
        ),
    ]
    return figures, tally.failures


def _command(bed: crash.Bed, scenario: str, far: Path) -> list[str]:
    if scenario == "export":
        return ["export", str(bed.months.two.root), "--to", str(far), "--full"]
    args = crash.command(bed, scenario, far, None)
    return [*args, *BWLIMIT] if scenario == "push" else args


def _fresh(bed: crash.Bed, scenario: str) -> Path:
    if scenario != "export":
        return crash.fresh_far(bed)
    media = bed.work / "signal-media"
    shutil.rmtree(media, ignore_errors=True)
    return media


def _start(args: list[str]) -> subprocess.Popen[str]:
    """The command in a process group of its own (a terminal's foreground group)."""
    return subprocess.Popen(
        [sys.executable, "-m", "syncd", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=syncd_env(),
        process_group=0,
    )


def _lifetime(bed: crash.Bed, scenario: str) -> float:
    run = _start(_command(bed, scenario, _fresh(bed, scenario)))
    started = time.monotonic()
    run.communicate(timeout=_WAIT)
    return max(0.2, time.monotonic() - started)


def _one_stop(bed: crash.Bed, tally: SignalTally, scenario: str, signum: int, delay: float) -> None:
    far = _fresh(bed, scenario)
    run = _start(_command(bed, scenario, far))
    time.sleep(delay)
    servers = crash.serve_children(run.pid)  # a push's far side, waited for afterwards
    sent = time.monotonic()
    try:
        if signum == signal.SIGINT:
            os.killpg(run.pid, signum)
        else:
            run.send_signal(signum)
    except ProcessLookupError:
        pass
    _, err = run.communicate(timeout=_WAIT)
    took = time.monotonic() - sent
    name = signal.Signals(signum).name
    where = f"{scenario} given {name} after {delay * 1000:.0f} ms"
    for pid in servers:
        _wait_gone(pid)
    if run.returncode == 0:
        tally.finished_first += 1
        tally.failures += _rerun(bed, scenario, far, where)
        return
    if _before_start(run.returncode, signum, err):
        # Python was still starting (syncd's own code not yet running): the signal's
        # default or Python's KeyboardInterrupt ended it. Nothing was done.
        tally.before_start += 1
        tally.failures += _rerun(bed, scenario, far, where)
        return
    key = f"{scenario} {name}"
    tally.stops[key] = tally.stops.get(key, 0) + 1
    tally.slowest = max(tally.slowest, took)
    lines = [line for line in err.splitlines() if line.strip()]
    if run.returncode != 128 + signum:
        tally.failures.append(f"{where}: exit {run.returncode}, not {128 + signum}: {err[-500:]}")
    elif not lines or f"interrupted by {name}" not in lines[-1]:
        tally.failures.append(f"{where}: no line saying what was kept: {err[-500:]}")
    if took > STOP_BAR:
        tally.failures.append(f"{where}: {took:.2f} s from the signal to the exit")
    if scenario != "export":
        tally.failures += problems(bed.months, far, where)
    tally.failures += _rerun(bed, scenario, far, where)
    print(f"crash signals: {where}: exit {run.returncode} in {took:.2f} s", file=sys.stderr)


def _before_start(code: int | None, signum: int, err: str) -> bool:
    if code == -signum:
        return True  # killed by the default action (a shell shows 128 + N)
    lines = err.strip().splitlines()
    return code == 1 and bool(lines) and lines[-1] == "KeyboardInterrupt" and "syncd/" not in err


def _rerun(bed: crash.Bed, scenario: str, far: Path, where: str) -> list[str]:
    if scenario == "export":
        if far.exists():
            whole = [p for p in far.iterdir() if not p.name.endswith(".partial")]
            if any(not (p / "vol-0001" / "index").is_file() for p in whole):
                return [f"{where}: a folder that looks like a complete export is not one"]
        done = run_syncd(*_command(bed, scenario, far))
        return [] if done.returncode == 0 else [f"{where}: rerun: {done.stderr.strip()[-500:]}"]
    done = run_syncd(*crash.command(bed, scenario, far, None))
    if done.returncode != 0:
        return [f"{where}: rerun exit {done.returncode}: {done.stderr.strip()[-500:]}"]
    return equals(far, bed.months.two, f"{where}, after the rerun")


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + _WAIT
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie has ended
