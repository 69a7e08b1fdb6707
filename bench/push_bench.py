"""The push benchmark: `syncd push` against `rsync -a --delete` over SSH, one run.

Both go through the same OpenSSH sshd on a loopback port (tests/sshd.py), both with the
client's default ssh settings, and each pair alternates (A B A B ...) after one
untimed warm-up. Far trees are prepared untimed before every run: empty for the cold
push, otherwise a hard-linked copy of a master copy of the far tree (both tools
replace files by rename, so the master is never changed), which syncd's far side has
scanned once, as it would have after its previous apply. The master is a real copy,
never the push source itself: linking moves the ctime of every inode it shares, and
the source's own stat cache would then (rightly) read everything again.

Figures (targets from the push issue):
- month-2 bytes on the wire / bytes truly new in month 2 (<= 1.03), also for rsync and
  for shipping oc-mirror's cumulative (non-differential) archives;
- month-2 push wall time / rsync's (<= 0.8), and the same over a 100 Mbit/s link
  (`month2-tbf`: sshd, the push and rsync all run in a network namespace whose loopback
  is rate-limited by tbf, bench/netns.py; <= 0.55: syncd ships half rsync's bytes);
- no-change push of a >= 200k-link registry tree: wire bytes (<= 4 KB) and wall time /
  rsync's (<= 0.5);
- cold push of month 1 / rsync's wall time (<= 1.0);
- cold push of the registry link tree (`coldlinks`: a registry is mostly small link
  files, so this one is bound by per-file work and durability, not bytes) / rsync's
  wall time (<= 1.0).

"Truly new" is the distinct new content: every file of month 2 (cache and working-dir)
and every member of its archives whose bytes appear nowhere in month 1, counted once
(a new layer is both a cache file and an archive member), plus the tar headers of new
archive members.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import linktree, netns
from bench.common import (
    QUIET,
    SYNCD_STATE,
    Command,
    Row,
    Series,
    alternate,
    arguments,
    bytes_row,
    freeze_code,
    make_log,
    ratio_row,
    remote_syncd,
    remover,
    report_rows,
    run_timed,
    settle,
)
from bench.linktree import LinkTreeSpec
from bench.samples import cumulative_archive_bytes, month_trees, truly_new
from syncd.sample import LARGE, SMALL
from tests.sshd import SSHServer

log = make_log("push-bench")


def link_tree(workdir: Path, links: int) -> Path:
    return linktree.cached(workdir, f"linktree-{links}", LinkTreeSpec(links=links), log)


# -- commands ---------------------------------------------------------------------------


class Setup:
    """An sshd and the commands that reach it; with a `prefix` (`ip netns exec NAME`),
    sshd and every timed command run behind it."""

    def __init__(
        self, workdir: Path, code: Path, scratch: Path | None = None, prefix: tuple[str, ...] = ()
    ) -> None:
        self.workdir = workdir
        self.code = code
        self.scratch = scratch or workdir / "push"
        self.prefix = prefix
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(parents=True)
        self.sshd = SSHServer.start(self.scratch / "sshd", prefix=prefix)
        self.env = self.sshd.env()
        self.env["PYTHONPATH"] = str(code)
        self.python = sys.executable
        self.series: list[dict[str, Any]] = []
        self.masters: set[Path] = set()
        self.ssh = (
            f"ssh -F {self.sshd.ssh_dir / 'config'} -o UserKnownHostsFile={self.sshd.known_hosts}"
        )

    def close(self) -> None:
        self.sshd.stop()

    def syncd_push(self, name: str, src: Path, far: Path, prepare: Callable[[], None]) -> Command:
        out = self.scratch / f"{name}.json"
        remote = remote_syncd(self.python, self.code)
        argv = [
            *self.prefix,
            self.python,
            "-m",
            "syncd",
            "push",
            str(src),
            f"ssh://far{far}",
            "--json",
            "--remote-syncd",
            remote,
        ]
        return Command(name, argv, env=self.env, prepare=prepare, stdout=out)

    def rsync(self, name: str, src: Path, far: Path, prepare: Callable[[], None]) -> Command:
        out = self.scratch / f"{name}.txt"
        argv = [
            *self.prefix,
            "rsync",
            "-a",
            "--delete",
            "--stats",
            "-e",
            self.ssh,
            "--exclude",
            f"/{SYNCD_STATE}",
            f"{src}/",
            f"far:{far}/",
        ]
        return Command(name, argv, env=self.env, prepare=prepare, stdout=out)

    def far_copy(self, master: Path, far: Path, *, scanned: bool) -> Callable[[], None]:
        """A `prepare`: `far` becomes a hard-linked copy of `master` (optionally scanned by
        syncd, as a far side is after its previous apply)."""

        def prepare() -> None:
            shutil.rmtree(far, ignore_errors=True)
            if master is not None:
                subprocess.run(["cp", "-al", str(master), str(far)], check=True)
                shutil.rmtree(far / SYNCD_STATE, ignore_errors=True)
                if scanned:
                    time.sleep(0.05)  # ctimes the hard links moved settle, as in life
                    argv = [self.python, "-m", "syncd", "scan", str(far)]
                else:
                    # rsync's far side in its steady state too: its metadata read once.
                    argv = ["find", str(far), "-printf", ""]
                subprocess.run(argv, env=self.env, check=True, capture_output=True)

        return prepare

    def master(self, tree: Path) -> Path:
        """A real copy of `tree` to hard-link far copies from (see the module docstring),
        made once per run."""
        master = self.scratch / f"master-{tree.name}"
        if master not in self.masters:
            shutil.rmtree(master, ignore_errors=True)
            # The tree's real path: `cp -a` of a symlinked tree copies the link, and far
            # copies of it would then be the tree itself, which pushes would overwrite.
            subprocess.run(["cp", "-a", str(tree.resolve()), str(master)], check=True)
            shutil.rmtree(master / SYNCD_STATE, ignore_errors=True)
            self.masters.add(master)
        return master


def syncd_wire(setup: Setup, name: str) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((setup.scratch / f"{name}.json").read_text())
    return summary


def rsync_wire(setup: Setup, name: str) -> int:
    text = (setup.scratch / f"{name}.txt").read_text()
    sent = int(re.search(r"Total bytes sent: ([\d,]+)", text).group(1).replace(",", ""))  # type: ignore[union-attr]
    received = int(re.search(r"Total bytes received: ([\d,]+)", text).group(1).replace(",", ""))  # type: ignore[union-attr]
    return sent + received


# -- the runs ---------------------------------------------------------------------------


PHASES = ("cold", "month2", "month2-tbf", "nochange", "coldlinks")
TBF = netns.Tbf()  # the month2-tbf link: 100 Mbit/s
LINK = "100 Mbit/s (tbf, netns)"
LINK_CHECK_BYTES = 100_000_000  # sent through the shaped link's ssh to measure it


def run(
    workdir: Path,
    runs: int,
    quick: bool,
    phases: tuple[str, ...] = PHASES,
    links: int | None = None,
) -> tuple[list[Row], dict[str, Any]]:
    # A push's far side (sshd, `syncd serve`, rsync's receiver) is part of the work, not
    # another process's noise: wait for an idle machine before each run, but do not
    # count the far side's CPU as a disturbance.
    QUIET.retries = 0
    code, digest = freeze_code(workdir)
    spec, default_links = (SMALL, 20_000) if quick else (LARGE, 200_000)
    links = links or default_links
    months = {"cold", "month2", "month2-tbf"} & set(phases)
    name = "ocmirror-small" if quick else "ocmirror-large"
    one, two = month_trees(workdir, spec, name, log) if months else (workdir, workdir)
    tree_k = link_tree(workdir, links)
    setup = Setup(workdir, code)
    rows: list[Row] = []
    data: dict[str, Any] = {"code": digest, "runs": runs}
    try:
        sources = (one, two, tree_k) if months else (tree_k,)
        for src in sources:  # the sources' own state is warm, as on a connected host
            argv = [setup.python, "-m", "syncd", "scan", str(src)]
            subprocess.run(argv, env=setup.env, check=True, capture_output=True)
        if "cold" in phases:
            rows += _cold(setup, one, runs, data)
        if "month2" in phases:
            rows += _month2(setup, one, two, runs, data)
        if "month2-tbf" in phases:
            rows += _month2_tbf(setup, one, two, runs, data)
        if "nochange" in phases:
            rows += _no_change(setup, tree_k, links, runs, data)
        if "coldlinks" in phases:
            rows += _cold_links(setup, tree_k, links, runs)
        data["series"] = setup.series
    finally:
        setup.close()
    return rows, data


def _pair(
    setup: Setup,
    name: str,
    src: Path,
    far_of: Callable[[Path, bool], Callable[[], None]],
    runs: int,
) -> tuple[Series, Series]:
    s = setup.scratch
    a = setup.syncd_push(f"{name}-syncd", src, s / "far-syncd", far_of(s / "far-syncd", True))
    b = setup.rsync(f"{name}-rsync", src, s / "far-rsync", far_of(s / "far-rsync", False))
    result = alternate(a, b, runs, log=log)
    data_series = [x.as_json() for x in result]
    setup.series += data_series
    return result


def _cold(setup: Setup, one: Path, runs: int, data: dict[str, Any]) -> list[Row]:
    log("cold push of month 1 (far side empty)")
    a, b = _pair(setup, "cold", one, lambda far, _: remover(far), runs)
    return [ratio_row("cold push of month 1 / rsync (wall)", a, b, 1.0)]


def _cold_links(setup: Setup, tree: Path, links: int, runs: int) -> list[Row]:
    log(f"cold push of {tree.name} (far side empty)")
    a, b = _pair(setup, "coldk", tree, lambda far, _: remover(far), runs)
    return [ratio_row(f"cold push of {links // 1000}k links / rsync (wall)", a, b, 1.0)]


def _update(
    setup: Setup, name: str, master: Path, src: Path, runs: int
) -> tuple[Series, Series, dict[str, Any]]:
    """Alternating pushes of `src` onto hard-linked copies of `master` (scanned for
    syncd); the pair and the wire bytes of each side's last run."""
    a, b = _pair(
        setup, name, src, lambda far, scanned: setup.far_copy(master, far, scanned=scanned), runs
    )
    summary = syncd_wire(setup, f"{name}-syncd")
    wire = {
        "syncd_wire": summary["wire_bytes_sent"] + summary["wire_bytes_received"],
        "rsync_wire": rsync_wire(setup, f"{name}-rsync"),
        "syncd_summary": summary,
    }
    return a, b, wire


def _month2(setup: Setup, one: Path, two: Path, runs: int, data: dict[str, Any]) -> list[Row]:
    log("month-2 push (far side holds month 1)")
    a, b, wire = _update(setup, "m2", setup.master(one), two, runs)
    new = truly_new(one, two)
    ours, theirs = wire["syncd_wire"], wire["rsync_wire"]
    cumulative = cumulative_archive_bytes(two)
    data["month2"] = {"truly_new": new, "cumulative_archives": cumulative, **wire}
    return [
        ratio_row("month-2 push / rsync (wall)", a, b, 0.8),
        bytes_row("month-2 wire bytes / truly new: syncd", ours, new["total"], 1.03),
        bytes_row("month-2 wire bytes / truly new: rsync -a", theirs, new["total"], None),
        bytes_row("month-2 cumulative archives / truly new", cumulative, new["total"], None),
    ]


def _month2_tbf(setup: Setup, one: Path, two: Path, runs: int, data: dict[str, Any]) -> list[Row]:
    """The month-2 pair again, sshd, push and rsync all inside a network namespace whose
    loopback is limited to 100 Mbit/s (bench/netns.py); skipped where that cannot be
    made."""
    log(f"month-2 push over a {TBF.rate} link (tbf on lo in a network namespace)")
    master = setup.master(one)  # shared with `month2`
    try:
        with netns.shaped_link(TBF) as link:
            shaped = Setup(setup.workdir, setup.code, setup.scratch / "tbf", link.prefix)
            try:
                measured = _link_check(shaped)
                a, b, wire = _update(shaped, "m2tbf", master, two, runs)
            finally:
                shaped.close()
                setup.series += shaped.series
    except netns.Unavailable as exc:
        log(f"SKIPPED month2-tbf: no rate-limited link here: {exc}")
        data["month2_tbf"] = {"skipped": str(exc)}
        return []
    data["month2_tbf"] = {"link": link.as_json() | measured, **wire}
    rate = measured["ssh_bytes_per_second"]
    return [
        ratio_row(f"month-2 push / rsync over SSH, {LINK} (wall)", a, b, 0.55),
        bytes_row(
            f"month-2 over {LINK}: wire bytes, syncd / rsync -a",
            wire["syncd_wire"],
            wire["rsync_wire"],
            None,
        ),
        Row(
            f"{LINK}: {LINK_CHECK_BYTES / 1e6:.0f} MB through ssh (MB/s; nominal)",
            f"{rate / 1e6:.2f} MB/s",
            f"{TBF.rate_bytes / 1e6:.2f} MB/s",
            rate / TBF.rate_bytes,
            f"{rate / TBF.rate_bytes:.3f}",
            "report",
            None,
        ),
    ]


def _link_check(shaped: Setup) -> dict[str, Any]:
    """Time LINK_CHECK_BYTES sent through ssh over the shaped link: the rate really
    holds (an unshaped loopback carries ssh at hundreds of MB/s here)."""
    pipe = f"head -c {LINK_CHECK_BYTES} /dev/zero | {shaped.ssh} far 'cat > /dev/null'"
    argv = [*shaped.prefix, "sh", "-c", pipe]
    timed = run_timed(Command("link-check", argv, env=shaped.env), log)
    rate = LINK_CHECK_BYTES / timed.seconds
    log(f"  shaped link: {LINK_CHECK_BYTES / 1e6:.0f} MB through ssh at {rate / 1e6:.2f} MB/s")
    return {
        "check_bytes": LINK_CHECK_BYTES,
        "check_seconds": round(timed.seconds, 3),
        "ssh_bytes_per_second": round(rate),
    }


def _no_change(setup: Setup, tree: Path, links: int, runs: int, data: dict[str, Any]) -> list[Row]:
    log(f"no-change push of {tree.name}")
    a, b, nc = _update(setup, "nc", setup.master(tree), tree, runs)
    wire, theirs = nc["syncd_wire"], nc["rsync_wire"]
    return [
        ratio_row(f"no-change push of {links // 1000}k links / rsync (wall)", a, b, 0.5),
        Row(
            "no-change push: wire bytes (syncd; rsync)",
            f"{wire} B",
            f"{theirs} B",
            wire / 4096,
            f"{wire} B",
            "<= 4 KB",
            wire <= 4096,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__, runs=3)
    parser.add_argument("--only", choices=PHASES, action="append", help="run only these parts")
    parser.add_argument(
        "--links", type=int, help="links in the registry tree (default 200,000; quick 20,000)"
    )
    args = parser.parse_args(argv)
    settle(args, log)
    phases = tuple(args.only) if args.only else PHASES
    rows, data = run(args.workdir, max(1, args.runs), args.quick, phases, args.links)
    suffix = "-" + "-".join(phases) if args.only else ""
    suffix += f"-{args.links // 1000}k" if args.links else ""
    report_rows("push", args, rows, data, suffix)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
