"""How fast `syncd scan` is, as ratios to standard tools measured in the same run.

Two trees, generated once under the work folder and reused:

- L: an oc-mirror-like root (cache + content/, ~2.5 GB, 2,212 files) from
  `syncd.sample.generate_month(root, 1, LARGE)`. Cold scan vs `find | xargs b3sum`
  (both hash every byte); no-change rescan vs `find -printf '%s %T@\\n'` (both stat).
- K: registry storage with >= 200,000 link files (bench/linktree.py). The same two
  pairs, plus the scans' peak RSS per file.

Each pair runs A B A B ... after one untimed warm-up of each (page cache warm for
both); the figures are medians. `syncd scan` runs as a user runs it: a fresh
`python -m syncd` process, interpreter start-up included; a cold scan first deletes
ROOT/.syncd (untimed). The commands import syncd from a copy of its sources taken at
the start (work folder/code), so that edits made during a run cannot mix versions. Run:

    PYTHONPATH=/work/main /tmp/v/bin/python -m bench.scan_bench [--quick] [--workdir DIR]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from bench import common, linktree
from bench.common import (
    REPO,
    Command,
    CommandFailed,
    Pairs,
    Row,
    Series,
    arguments,
    derived_row,
    freeze_code,
    machine,
    machine_text,
    make_log,
    markdown_table,
    mib,
    ratio_row,
    read_result,
    remove_state,
    repeat,
    run_timed,
    save_results,
    settle,
    startup_row,
    stat_walk,
    write_json,
)
from bench.samples import Sizes, month_one, sizes_for

SETTLE_SECONDS = 1.5  # > 1 s after the first scan, so that directory ctimes are old
log = make_log("scan-bench")


class Bench(Pairs):
    def __init__(self, workdir: Path, python: str, runs: int, code: Path) -> None:
        super().__init__(runs, log)
        self.workdir = workdir
        self.python = python
        self.out = workdir / "out"
        self.out.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, PYTHONPATH=str(code))

    # -- commands ---------------------------------------------------------------------

    def scan(self, name: str, root: Path, *, cold: bool) -> Command:
        return Command(
            name=name,
            argv=[self.python, "-m", "syncd", "scan", str(root), "--json"],
            env=self.env,
            prepare=remove_state(root) if cold else None,
            stdout=self.out / f"{name}.json",
        )

    def scan_result(self, name: str) -> dict[str, Any]:
        return read_result(self.out / f"{name}.json")

    @staticmethod
    def hash_all(name: str, root: Path) -> Command:
        script = (
            'set -o pipefail; find "$1" -path "$1/.syncd" -prune -o -type f -print0 '
            "| xargs -0 b3sum > /dev/null"
        )
        return Command(name, ["bash", "-c", script, "bench", str(root)])

    def import_only(self) -> Command:
        return Command(
            "import syncd.scan.api", [self.python, "-c", "import syncd.scan.api"], env=self.env
        )

    def check_unchanged(self, tag: str, root: Path, snapshot: str) -> None:
        """Trees are reused across runs: warn if one no longer has the snapshot id its
        first benchmark saw (ids cover names, modes, sizes, mtimes and bytes)."""
        record = root.parent / f"{root.name}.snapshot"
        if not record.is_file():
            record.write_text(snapshot)
        elif record.read_text() != snapshot:
            log(
                f"warning: tree {tag} ({root}) has another snapshot id than when first "
                "benchmarked: it was changed (delete it to regenerate), or syncd's "
                "snapshot encoding was"
            )
            self.figures[f"{tag}_tree_changed"] = True

    def tree(self, tag: str, root: Path) -> tuple[Series, Series, Series, Series, dict[str, Any]]:
        """Cold pair, then (after a settled first scan) the no-change rescan pair."""
        cold_name, rescan_name = f"{tag}-cold-scan", f"{tag}-rescan"
        cold, hashed = self.pair(
            f"{tag}_cold",
            self.scan(cold_name, root, cold=True),
            self.hash_all(f"{tag}: find | xargs b3sum", root),
        )
        first = self.scan_result(cold_name)
        self.check_unchanged(tag, root, first["snapshot"])
        run_timed(self.scan(rescan_name, root, cold=False))  # the cache the rescans use
        time.sleep(SETTLE_SECONDS)
        rescan, walked = self.pair(
            f"{tag}_rescan",
            self.scan(rescan_name, root, cold=False),
            stat_walk(f"{tag}: find -printf", root),
        )
        again = self.scan_result(rescan_name)
        if again["snapshot"] != first["snapshot"]:
            log(f"warning: {tag}: the rescan's snapshot differs from the cold scan's")
        if again["hashed_bytes"]:
            log(f"warning: {tag}: the no-change rescan hashed {again['hashed_bytes']} bytes")
        tree = {
            "root": str(root),
            "files": first["files"],
            "dirs": first["dirs"],
            "bytes": first["bytes"],
            "snapshot": first["snapshot"],
            "rescan_hashed_bytes": again["hashed_bytes"],
            "rescan_snapshot_equal": again["snapshot"] == first["snapshot"],
        }
        self.figures[f"{tag}_tree"] = tree
        return cold, hashed, rescan, walked, tree


def frozen_working_code(workdir: Path, python: str, patience: float = 900) -> tuple[Path, str]:
    """A copy of the sources whose `syncd scan --help` runs; the working tree may be caught
    in the middle of an edit, so wait and copy again until it works (or give up)."""
    deadline = time.monotonic() + patience
    while True:
        code, digest = freeze_code(workdir)
        check = Command(
            "syncd scan --help",
            [python, "-m", "syncd", "scan", "--help"],
            env=dict(os.environ, PYTHONPATH=str(code)),
        )
        try:
            run_timed(check)
        except CommandFailed as exc:
            if time.monotonic() > deadline:
                raise
            last = str(exc).strip().splitlines()[-1]
            log(f"the working tree's syncd does not start ({last}); copying again in 30 s")
            time.sleep(30)
        else:
            return code, digest


def build_trees(workdir: Path, sizes: Sizes) -> tuple[Path, Path]:
    tree_l = month_one(workdir, sizes.ocmirror, sizes.ocmirror_name, log)
    link_spec = linktree.LinkTreeSpec(links=sizes.links)
    tree_k = linktree.cached(workdir, f"linktree-{sizes.links}", link_spec, log)
    return tree_l, tree_k


def rss_row(figure: str, peak: int, base: int, files: int, target: float | None) -> Row:
    per_file = (peak - base) / files
    return Row(
        figure=figure,
        syncd=mib(peak),
        baseline=f"{files:,} files" + (f"; less {mib(base)}" if base else ""),
        ratio=per_file,
        ratio_text=f"{per_file:.0f} B/file",
        target="report" if target is None else f"<= {target:g} B/file",
        met=None if target is None else per_file <= target,
    )


def measure(bench: Bench, tree_l: Path, tree_k: Path) -> list[Row]:
    l_cold, l_hash, l_rescan, l_walk, l_info = bench.tree("L", tree_l)
    k_cold, k_hash, k_rescan, k_walk, k_info = bench.tree("K", tree_k)
    log("RSS of `python -c 'import syncd.scan.api'`")
    imported = repeat(bench.import_only(), bench.runs, log)
    bench.figures["import_rss"] = imported.as_json()
    files, base = k_info["files"], imported.peak_rss
    started, bare = bench.startup(bench.python, bench.env, "scan")
    rows = [
        ratio_row(
            f"L cold scan / find\\|xargs b3sum ({l_info['files']:,} files, "
            f"{l_info['bytes'] / 1e9:.2f} GB)",
            l_cold,
            l_hash,
            1.0,
        ),
        derived_row(
            "L cold scan less syncd start-up / find\\|xargs b3sum (derived)",
            l_cold.seconds - started.seconds,
            l_hash.seconds,
        ),
        ratio_row("L no-change rescan / find -printf", l_rescan, l_walk, None),
        ratio_row(f"K no-change rescan / find -printf ({files:,} files)", k_rescan, k_walk, 1.3),
        ratio_row("K cold scan / find\\|xargs b3sum", k_cold, k_hash, None),
        startup_row("scan", started, bare),
        rss_row("K rescan peak RSS per file", k_rescan.peak_rss, 0, files, 500),
        rss_row("K cold scan peak RSS per file", k_cold.peak_rss, 0, files, 500),
        rss_row("K rescan (peak RSS - import RSS) per file", k_rescan.peak_rss, base, files, None),
        rss_row("K cold scan (peak RSS - import RSS) per file", k_cold.peak_rss, base, files, None),
        rss_row(
            "K rescan (peak RSS - `syncd scan --help` RSS) per file",
            k_rescan.peak_rss,
            started.peak_rss,
            files,
            None,
        ),
    ]
    bench.figures["L_cold_GBps"] = round(l_info["bytes"] / l_cold.seconds / 1e9, 3)
    bench.figures["L_b3sum_GBps"] = round(l_info["bytes"] / l_hash.seconds / 1e9, 3)
    return rows


def report_markdown(
    sizes: Sizes, info: dict[str, Any], figures: dict[str, Any], rows: list[Row]
) -> str:
    lines = [
        f"# syncd scan benchmark ({sizes.label}, {time.strftime('%Y-%m-%d %H:%M')})",
        "",
        machine_text(info),
        "",
        f"Medians of {sizes.runs} alternating runs after one warm-up each (range in brackets). "
        f"Each run waited for an idle machine: {info['quiet']}. "
        f"Runs kept although disturbed: {_disturbed_kept(figures)}.",
        "",
        markdown_table(rows),
        "",
    ]
    for tag in ("L", "K"):
        t = figures[f"{tag}_tree"]
        lines.append(
            f"- Tree {tag}: {t['root']}: {t['files']:,} files, {t['dirs']:,} dirs, "
            f"{t['bytes']:,} bytes; rescan hashed {t['rescan_hashed_bytes']} bytes, "
            f"same snapshot: {t['rescan_snapshot_equal']}."
        )
    lines.append(
        f"- L cold scan {figures['L_cold_GBps']} GB/s, find | xargs b3sum "
        f"{figures['L_b3sum_GBps']} GB/s."
    )
    lines.append(
        f"- import syncd.scan.api: peak RSS {mib(figures['import_rss']['median_peak_rss'])}."
    )
    for key in ("L_cold", "L_rescan", "K_cold", "K_rescan"):
        f = figures[key]
        lines.append(
            f"- {key}: syncd peak RSS {mib(f['syncd']['median_peak_rss'])}, "
            f"baseline peak RSS {mib(f['baseline']['median_peak_rss'])}."
        )
    return "\n".join(lines) + "\n"


def _disturbed_kept(figures: dict[str, Any]) -> str:
    kept = [
        f"{series['name']} x{sum(series['disturbed'])}"
        for figure in figures.values()
        if isinstance(figure, dict)
        for series in figure.values()
        if isinstance(series, dict) and any(series.get("disturbed", ()))
    ]
    return ", ".join(kept) or "none"


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__, runs=None)
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the JSON here")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs syncd")
    parser.add_argument(
        "--patience",
        type=float,
        default=1800,
        help="seconds to wait for a quiet machine before measuring anyway (default 1800)",
    )
    args = parser.parse_args(argv)
    sizes = sizes_for(args.quick, args.runs)
    runs = sizes.runs
    workdir: Path = args.workdir.resolve()

    tree_l, tree_k = build_trees(workdir, sizes)
    info = machine(workdir)
    if (load := settle(args, log, args.patience)) is not None:
        info["load_before_measuring"] = load
    code, info["code_digest"] = frozen_working_code(workdir, args.python)
    log(f"syncd runs from a copy of {REPO} in {code} (sources sha256 {info['code_digest']})")
    info["quiet"] = (
        f"busy < {common.QUIET.idle_share:.0%} of the CPUs over {common.QUIET.sample} s, "
        f"re-run (up to {common.QUIET.retries}x) when others used > "
        f"{common.QUIET.disturbed_share:.0%} of the run's wall time in CPU"
        if common.QUIET.enabled
        else "off"
    )
    bench = Bench(workdir, args.python, runs, code)
    rows = measure(bench, tree_l, tree_k)
    info["load_at_end"] = [round(x, 2) for x in os.getloadavg()]

    text = report_markdown(sizes, info, bench.figures, rows)
    print(text)
    data = {
        "kind": "syncd scan benchmark",
        "sizes": sizes.label,
        "runs": runs,
        "machine": info,
        "rows": [r.as_json() for r in rows],
        "figures": bench.figures,
    }
    written = save_results("scan", args, text, data)
    if args.json:
        write_json(args.json, data)
    log(f"wrote {written}.md and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
