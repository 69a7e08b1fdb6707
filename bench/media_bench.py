"""The media benchmark: `syncd export` and `syncd import` against `cp -r`, and the size
of a month-2 export made against the far side's receipt.

Trees are bench/samples.py's (`ocmirror-large-m1`/`-m2`, `--quick`: `ocmirror-small-*`),
generated once under WORKDIR/trees. Everything this benchmark writes goes to
WORKDIR/media (the exporting side's state too, via --state, so the shared trees'
own state folders are not touched). Pairs alternate (A B A B ...) after one untimed
warm-up each; before every run, untimed: the output folder is removed and `sync` runs.

Figures (targets from the media issue):
- month-2 export bytes / bytes truly new in month 2 (<= 1.03): everything written to
  the media (indexes, which carry the whole target's tree records, included), against
  `bench.samples.truly_new`; also the blobs alone, and oc-mirror's cumulative
  (non-differential) archives for comparison;
- a full month-1 export against `cp -r` of that export's own files (the same bytes, the
  same disk): throughput ratio = cp's time / export's time (>= 0.8);
- importing that export into an empty root against the same `cp -r` (>= 0.8), and,
  reported, against `cp -r` of the month-1 tree itself: the import writes the whole
  tree, whose archives repeat the cache's blobs, so it writes more than it reads.

syncd makes what it writes durable (fsync) before it counts: an export before its
folder is renamed into place, an import before and during the apply. `cp -r` leaves its
bytes in the page cache, so each comparison is also reported against `cp -r` followed by
`sync -f` on the destination (the durable equivalent).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import (
    Command,
    Row,
    Series,
    alternate,
    arguments,
    bytes_row,
    freeze_code,
    make_log,
    remover,
    report_rows,
    seconds_text,
    settle,
)
from bench.samples import cumulative_archive_bytes, month_trees, truly_new
from syncd.sample import LARGE, SMALL

log = make_log("media-bench")


class Setup:
    def __init__(self, workdir: Path) -> None:
        self.scratch = workdir / "media"
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(parents=True)
        # Own copy of the code (not WORKDIR/code, which other benchmarks replace).
        code, self.code_digest = freeze_code(self.scratch)
        self.env = {"PYTHONPATH": str(code), "PATH": "/usr/bin:/bin"}

    def syncd(self, *args: str | Path) -> list[str]:
        return [sys.executable, "-m", "syncd", *map(str, args)]

    def run(self, *args: str | Path) -> dict[str, Any]:
        done = subprocess.run(
            [*self.syncd(*args), "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"syncd {args[0]} failed: {done.stderr}")
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def command(
        self, name: str, argv: list[str], remove: Path, stdout: Path | None = None
    ) -> Command:
        return Command(name, argv, env=self.env, prepare=remover(remove), stdout=stdout)


def throughput_row(figure: str, ours: Series, cp: Series, target: float | None) -> Row:
    ratio = cp.seconds / ours.seconds
    return Row(
        figure,
        seconds_text(ours),
        seconds_text(cp),
        ratio,
        f"{ratio:.2f}",
        "report" if target is None else f">= {target}",
        None if target is None else ratio >= target,
    )


def month_two_size(setup: Setup, one: Path, two: Path) -> tuple[list[Row], dict[str, Any]]:
    """Export month 2 against the receipt of a far side that holds month 1."""
    s = setup.scratch
    far = s / "far-m1"
    subprocess.run(["cp", "-al", str(one), str(far)], check=True)
    shutil.rmtree(far / ".syncd", ignore_errors=True)
    setup.run("receipt", "--root", far, "--to", s / "receipt-m1", "--state", s / "far-state")
    summary = setup.run(
        "export", two, "--to", s / "m2-out", "--receipt", s / "receipt-m1", "--state", s / "src-m2"
    )
    new = truly_new(one, two)
    cumulative = cumulative_archive_bytes(two)
    rows = [
        bytes_row(
            "month-2 export bytes on media / truly new", summary["bytes"], new["total"], 1.03
        ),
        bytes_row(
            "month-2 export blobs alone / truly new", summary["blob_bytes"], new["total"], None
        ),
        bytes_row("month-2 cumulative archives / truly new", cumulative, new["total"], None),
    ]
    data = {"truly_new": new, "cumulative_archives": cumulative, "export": summary}
    return rows, data


def throughput(setup: Setup, one: Path, runs: int) -> tuple[list[Row], dict[str, Any]]:
    s = setup.scratch
    log("reference export of month 1 (untimed; also warms the exporting side's state)")
    reference = setup.run("export", one, "--to", s / "ref", "--full", "--state", s / "src-m1")
    folder = Path(reference["folder"])
    export = setup.command(
        "export",
        setup.syncd("export", one, "--to", s / "out", "--full", "--state", s / "src-m1"),
        s / "out",
    )
    cp_export = setup.command("cp -r export", ["cp", "-r", str(folder), str(s / "cp")], s / "cp")
    log(f"full export of month 1 ({reference['bytes'] / 1e6:.0f} MB) vs cp -r of its files")
    ex_a, ex_b = alternate(export, cp_export, runs, log=log)
    log("the same against cp -r; sync -f")
    ex_c, ex_d = alternate(export, _synced(setup, "cp -r export; sync", folder), runs, log=log)
    importing = setup.command(
        "import", setup.syncd("import", folder, "--root", s / "far"), s / "far"
    )
    log("import of that export into an empty root vs cp -r of the export")
    im_a, im_b = alternate(importing, cp_export, runs, log=log)
    cp_tree = setup.command("cp -r tree", ["cp", "-r", str(one), str(s / "cp")], s / "cp")
    log("import vs cp -r of the month-1 tree (what the import writes), then with sync -f")
    tr_a, tr_b = alternate(importing, cp_tree, runs, log=log)
    tr_c, tr_d = alternate(importing, _synced(setup, "cp -r tree; sync", one), runs, log=log)
    rows = [
        throughput_row("full month-1 export: cp -r time / export time", ex_a, ex_b, 0.8),
        throughput_row("full month-1 export: (cp -r; sync) / export time", ex_c, ex_d, None),
        throughput_row("import of month 1: cp -r of the export / import time", im_a, im_b, 0.8),
        throughput_row("import of month 1: cp -r of the tree / import time", tr_a, tr_b, None),
        throughput_row("import of month 1: (cp -r of the tree; sync) / import", tr_c, tr_d, None),
    ]
    series = (ex_a, ex_b, ex_c, ex_d, im_a, im_b, tr_a, tr_b, tr_c, tr_d)
    data = {
        "export_bytes": reference["bytes"],
        "tree_bytes": sum(p.stat().st_size for p in one.rglob("*") if p.is_file()),
        "series": [x.as_json() for x in series],
    }
    return rows, data


def _synced(setup: Setup, name: str, source: Path) -> Command:
    """`cp -r` then `sync -f` of the destination's file system: a durable copy."""
    target = setup.scratch / "cp"
    script = f'cp -r "{source}" "{target}" && sync -f "{target}"'
    return setup.command(name, ["sh", "-c", script], target)


def run(workdir: Path, runs: int, quick: bool) -> tuple[list[Row], dict[str, Any]]:
    spec = SMALL if quick else LARGE
    one, two = month_trees(workdir, spec, "ocmirror-small" if quick else "ocmirror-large", log)
    setup = Setup(workdir)
    log("month-2 export against the far side's receipt")
    size_rows, size_data = month_two_size(setup, one, two)
    speed_rows, speed_data = throughput(setup, one, runs)
    data = {"code": setup.code_digest, "runs": runs, "month2": size_data, "speed": speed_data}
    return size_rows + speed_rows, data


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__, runs=3).parse_args(argv)
    settle(args, log)
    rows, data = run(args.workdir, max(1, args.runs), args.quick)
    data = report_rows("media", args, rows, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
