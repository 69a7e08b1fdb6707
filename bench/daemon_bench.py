"""The daemon benchmark: what an idle daemon costs, and how fast it delivers a new month.

Two far sites over the loopback OpenSSH sshd of tests/sshd.py (alias `far`), the sample
month trees of bench/samples.py (SMALL by default, LARGE with --large).

Figures:
- idle daemon, nothing changing, `--idle` seconds (default 60): CPU seconds it used
  (utime + stime from /proc/PID/stat) and the scans it started (from its log): target
  near zero, and no rescan;
- month 2 lands (generate_month writes it into the watched root, as oc-mirror would):
  from the tree going quiet (the daemon's `scan-start`, right when its quiet time ran
  out) to both sites applied (`push-done` of the later one), against a manual
  `syncd push` to each site in turn (incremental scan included, as a user would run it):
  target <= 1.2. Sites are configured with verify = false for this figure, since the
  manual push does not verify; the same with the far sides' parity check on is reported.

Every run starts from the same state, prepared untimed: the source is a copy of month 1
whose state folder holds its month-1 scan, and each far side a hard-linked copy of month 1
scanned by syncd (as after its previous apply).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    Row,
    arguments,
    freeze_code,
    make_log,
    remote_syncd,
    report_rows,
    settle,
)
from bench.samples import month_trees
from syncd.sample import LARGE, SMALL, generate_month
from tests.daemonutil import parse_logfmt
from tests.sshd import SSHServer

# The daemon's quiet time in these runs: long enough that the sample generator's pauses
# (it builds images and archives between writes) do not look like the end of a month.
QUIET = 3.0
TIMEOUT = 900.0


log = make_log("daemon-bench")


class Bench:
    def __init__(self, workdir: Path, code: Path, large: bool) -> None:
        self.scratch = workdir / "daemon"
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(parents=True)
        self.spec = LARGE if large else SMALL
        self.one, _ = month_trees(
            workdir, self.spec, "ocmirror-large" if large else "ocmirror-small", log
        )
        self.sshd = SSHServer.start(self.scratch / "sshd")
        self.code = code
        self.env = dict(self.sshd.env(), PYTHONPATH=str(code))
        self.env.pop("NOTIFY_SOCKET", None)
        self.python = sys.executable
        self.src = self.scratch / "src"
        self.fars = {name: self.scratch / f"far-{name}" for name in ("a", "b")}

    def close(self) -> None:
        self.sshd.stop()

    def syncd(self, *args: str) -> None:
        argv = [self.python, "-m", "syncd", *args]
        subprocess.run(argv, env=self.env, check=True, capture_output=True, timeout=TIMEOUT)

    def prepare(self) -> None:
        """Source = month 1 with its scan; far sides = month 1, scanned."""
        for path in (self.src, *self.fars.values(), self.scratch / "state"):
            shutil.rmtree(path, ignore_errors=True)
        subprocess.run(["cp", "-a", str(self.one), str(self.src)], check=True)
        shutil.rmtree(self.src / ".syncd", ignore_errors=True)
        self.syncd("scan", str(self.src))
        for far in self.fars.values():
            subprocess.run(["cp", "-al", str(self.one), str(far)], check=True)
            shutil.rmtree(far / ".syncd", ignore_errors=True)
            self.syncd("scan", str(far))
        os.sync()

    def config(self, *, verify: bool) -> Path:
        remote = remote_syncd(self.python, self.code)
        lines = [
            "[source]",
            f'root = "{self.src}"',
            f'quiet = "{QUIET}s"',
            "[retry]",
            'first = "1s"',
            'max = "5s"',
        ]
        for name, far in self.fars.items():
            lines += [
                f"[sites.{name}]",
                f'target = "ssh://far{far}"',
                f'remote_syncd = "{remote}"',
                f"verify = {'true' if verify else 'false'}",
            ]
        path = self.scratch / "syncd.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    @contextmanager
    def daemon(self, config: Path, name: str) -> Iterator[Daemon]:
        daemon = Daemon(self, config, self.scratch / f"{name}.log")
        try:
            yield daemon
        finally:
            daemon.stop()


class Daemon:
    def __init__(self, bench: Bench, config: Path, log_file: Path) -> None:
        self.log_file = log_file
        argv = [bench.python, "-m", "syncd", "daemon", "--config", str(config)]
        with log_file.open("wb") as err:
            self.process = subprocess.Popen(
                argv, env=bench.env, stdin=subprocess.DEVNULL, stdout=err, stderr=err
            )

    def events(self) -> list[dict[str, str]]:
        return [parse_logfmt(line) for line in self.log_file.read_text().splitlines() if line]

    def wait(self, event: str, count: int, **fields: str) -> list[dict[str, str]]:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            hits = [
                e
                for e in self.events()
                if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
            ]
            if len(hits) >= count:
                return hits
            if self.process.poll() is not None:
                raise RuntimeError(f"the daemon exited:\n{self.log_file.read_text()[-3000:]}")
            time.sleep(0.02)
        raise RuntimeError(f"timed out waiting for {event}")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)


def _stamp(event: dict[str, str]) -> float:
    return datetime.strptime(event["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def idle(bench: Bench, seconds: float) -> dict[str, Any]:
    bench.prepare()
    with bench.daemon(bench.config(verify=True), "idle") as daemon:
        daemon.wait("site-complete", 1, site="a")
        daemon.wait("site-complete", 1, site="b")
        time.sleep(2)  # let the first scan's and pushes' threads wind down
        scans = len([e for e in daemon.events() if e.get("event") == "scan-start"])
        before = daemon.cpu_seconds()
        time.sleep(seconds)
        used = daemon.cpu_seconds() - before
        rescans = len([e for e in daemon.events() if e.get("event") == "scan-start"]) - scans
    log(f"idle {seconds:.0f} s: {used:.3f} CPU s, {rescans} rescans")
    return {"seconds": seconds, "cpu_seconds": used, "rescans": rescans}


def daemon_month_two(bench: Bench, *, verify: bool) -> dict[str, float]:
    """Month 2 lands in the watched root: (quiet -> applied, last write -> applied)."""
    bench.prepare()
    with bench.daemon(bench.config(verify=verify), "month2") as daemon:
        for site in bench.fars:
            daemon.wait("site-complete", 1, site=site)
        generate_month(bench.src, 2, bench.spec, via_registry=False)
        written = time.time()
        # The scan that started once the month was fully written, and its snapshot.
        start = _after(daemon, "scan-start", written)
        snapshot = _after(daemon, "scan-done", _stamp(start))["snapshot"]
        done = [daemon.wait("site-complete", 1, site=s, snapshot=snapshot)[0] for s in bench.fars]
        early = len([e for e in daemon.events() if e.get("event") == "scan-start"]) - 2
    quiet_at, applied_at = _stamp(start), max(_stamp(e) for e in done)
    return {
        "from_quiet": applied_at - quiet_at,
        "from_last_write": applied_at - written,
        "early_scans": early,  # scans during the generation (quiet too short): expect 0
    }


def _after(daemon: Daemon, event: str, moment: float) -> dict[str, str]:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        hits = [e for e in daemon.events() if e.get("event") == event and _stamp(e) >= moment]
        if hits:
            return hits[0]
        time.sleep(0.02)
    raise RuntimeError(f"no {event} after the month was written")


def manual_month_two(bench: Bench) -> float:
    bench.prepare()
    generate_month(bench.src, 2, bench.spec, via_registry=False)
    os.sync()
    remote = remote_syncd(bench.python, bench.code)
    started = time.perf_counter()
    for far in bench.fars.values():
        bench.syncd("push", str(bench.src), f"ssh://far{far}", "--json", "--remote-syncd", remote)
    return time.perf_counter() - started


def run(
    workdir: Path, runs: int, large: bool, idle_seconds: float
) -> tuple[list[Row], dict[str, Any]]:
    code, digest = freeze_code(workdir)
    bench = Bench(workdir, code, large)
    data: dict[str, Any] = {"code": digest, "runs": runs, "quiet": QUIET, "spec": bench.spec.images}
    try:
        data["idle"] = idle(bench, idle_seconds)
        ours, theirs, checked = [], [], []
        for i in range(runs):
            ours.append(daemon_month_two(bench, verify=False))
            theirs.append(manual_month_two(bench))
            checked.append(daemon_month_two(bench, verify=True))
            log(
                f"[{i + 1}/{runs}] daemon {ours[-1]}, manual {theirs[-1]:.3f} s, "
                f"with verify {checked[-1]}"
            )
        data["daemon"], data["manual"], data["daemon_verify"] = ours, theirs, checked
    finally:
        bench.close()
    return _rows(data), data


def _rows(data: dict[str, Any]) -> list[Row]:
    idle_data = data["idle"]
    manual = statistics.median(data["manual"])
    daemon = statistics.median(r["from_quiet"] for r in data["daemon"])
    verified = statistics.median(r["from_quiet"] for r in data["daemon_verify"])
    raw = statistics.median(r["from_last_write"] for r in data["daemon"])
    return [
        Row(
            f"idle daemon, {idle_data['seconds']:.0f} s: CPU seconds (rescans)",
            f"{idle_data['cpu_seconds']:.3f} s ({idle_data['rescans']})",
            "0",
            idle_data["cpu_seconds"],
            f"{idle_data['cpu_seconds']:.3f}",
            "near 0; 0 rescans",
            idle_data["cpu_seconds"] < 0.5 and idle_data["rescans"] == 0,
        ),
        Row(
            "month 2: quiet -> both sites applied / manual push to each in turn",
            f"{daemon:.3f} s",
            f"{manual:.3f} s",
            daemon / manual,
            f"{daemon / manual:.2f}",
            "<= 1.2",
            daemon / manual <= 1.2,
        ),
        Row(
            "the same, with the far sides' parity check (verify = true)",
            f"{verified:.3f} s",
            f"{manual:.3f} s",
            verified / manual,
            f"{verified / manual:.2f}",
            "report",
            None,
        ),
        Row(
            f"month 2: last write -> both applied (quiet = {QUIET:g} s) / manual",
            f"{raw:.3f} s",
            f"{manual:.3f} s",
            raw / manual,
            f"{raw / manual:.2f}",
            "report",
            None,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__, runs=3)
    parser.add_argument("--idle", type=float, default=60.0, help="idle measurement (seconds)")
    parser.add_argument("--large", action="store_true", help="LARGE month trees (default SMALL)")
    args = parser.parse_args(argv)
    if args.quick:  # one run, 15 s idle
        args.runs, args.idle = 1, 15.0
    settle(args, log)
    rows, data = run(args.workdir, max(1, args.runs), args.large, args.idle)
    data = report_rows("daemon", args, rows, data)
    log(json.dumps({"rows": data["rows"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
