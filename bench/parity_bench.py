"""The parity benchmark: `syncd export --parity 1|2` and importing with volumes absent,
as ratios to the same export without parity and to `cp -r` + `sync -f`.

The tree is push_bench's month 1 (`ocmirror-large-m1`; `--quick`: `ocmirror-small-m1`),
exported in full onto volumes of VOLUME_SIZE (several data volumes, so that the parity
volumes code across a real set). Everything goes to WORKDIR/parity, the exporting side's
state included (--state). Pairs alternate after one untimed warm-up each; the output
folder is removed and `sync` runs before every run, untimed.

Figures (throughput ratios: the baseline's time / ours, higher is better):
- export with parity N against the same export without parity (what parity costs);
- export with parity N against `cp -r` of that parity export's own files then `sync -f`
  (the same bytes written durably by the tool a user would otherwise run);
- import of the parity-N export with N data volumes absent (each rebuilt from parity
  first) against the import of the complete export without parity, and against
  `cp -r` + `sync -f` of that export;
- peak memory of each (the coding works a stripe at a time: it must not grow with the
  export).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    Command,
    Row,
    Series,
    alternate,
    arguments,
    freeze_code,
    remover,
    report_rows,
    seconds_text,
    settle,
)
from bench.samples import month_trees
from syncd.sample import LARGE, SMALL

VOLUME_SIZE = {False: "600M", True: "8M"}  # full, quick


def log(text: str) -> None:
    print(f"[parity-bench {time.strftime('%H:%M:%S')}] {text}", flush=True)


class Setup:
    def __init__(self, workdir: Path, quick: bool) -> None:
        self.scratch = workdir / "parity"
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(parents=True)
        code, self.code_digest = freeze_code(self.scratch)
        self.env = {"PYTHONPATH": str(code), "PATH": "/usr/bin:/bin"}
        self.size = VOLUME_SIZE[quick]

    def syncd(self, *args: str | Path) -> list[str]:
        return [sys.executable, "-m", "syncd", *map(str, args)]

    def export_argv(self, tree: Path, out: Path, parity: int) -> list[str]:
        return self.syncd("export", tree, "--to", out, "--full", "--volume-size", self.size,
                          "--parity", str(parity), "--state", self.scratch / "state")  # fmt: skip

    def reference(self, tree: Path, parity: int) -> Path:
        """An untimed export with `parity`, kept as the input of the imports."""
        out = self.scratch / f"ref-p{parity}"
        done = subprocess.run([*self.export_argv(tree, out, parity), "--json"], env=self.env,
                              capture_output=True, text=True, check=False)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"export failed: {done.stderr}")
        return Path(json.loads(done.stdout)["folder"])

    def command(self, name: str, argv: list[str], remove: Path) -> Command:
        return Command(name, argv, env=self.env, prepare=remover(remove))

    def cp_sync(self, name: str, source: Path | list[Path]) -> Command:
        target = self.scratch / "cp"
        sources = source if isinstance(source, list) else [source]
        quoted = " ".join(f'"{s}"' for s in sources)
        script = f'mkdir -p "{target}" && cp -r {quoted} "{target}" && sync -f "{target}"'
        return self.command(name, ["sh", "-c", script], target)


def ratio_row(figure: str, ours: Series, base: Series, target: float | None = None) -> Row:
    ratio = base.seconds / ours.seconds
    return Row(
        figure,
        f"{seconds_text(ours)}, {max(r.peak_rss for r in ours.runs) / 2**20:.0f} MiB peak",
        seconds_text(base),
        ratio,
        f"{ratio:.2f}",
        "report" if target is None else f">= {target}",
        None if target is None else ratio >= target,
    )


def run(workdir: Path, runs: int, quick: bool) -> tuple[list[Row], dict[str, Any]]:
    spec = SMALL if quick else LARGE
    one, _ = month_trees(workdir, spec, "ocmirror-small" if quick else "ocmirror-large", log)
    setup = Setup(workdir, quick)
    s = setup.scratch
    refs = {p: setup.reference(one, p) for p in (0, 1, 2)}
    data_volumes = len([v for v in refs[0].iterdir() if v.name.startswith("vol-")])
    log(f"{data_volumes} data volumes of {setup.size}; references made")
    exports = {
        p: setup.command(f"export --parity {p}", setup.export_argv(one, s / "out", p), s / "out")
        for p in (0, 1, 2)
    }
    rows: list[Row] = []
    series: list[Series] = []
    for p in (1, 2):
        log(f"export --parity {p} vs export without parity")
        ours, base = alternate(exports[p], exports[0], runs, log=log)
        rows.append(ratio_row(f"export --parity {p}: time without parity / with", ours, base))
        log(f"export --parity {p} vs cp -r of its files; sync -f")
        ours2, cp = alternate(exports[p], setup.cp_sync("cp -r; sync", refs[p]), runs, log=log)
        rows.append(ratio_row(f"export --parity {p}: (cp -r; sync) / export", ours2, cp))
        series += [ours, base, ours2, cp]
    importing = setup.command(
        "import (no parity)", setup.syncd("import", refs[0], "--root", s / "far"), s / "far"
    )
    for p in (1, 2):
        present = sorted(v for v in refs[p].iterdir() if v.name.startswith("vol-"))[p:]
        rebuild = setup.command(
            f"import, {p} absent",
            setup.syncd("import", *present, "--root", s / "far"),
            s / "far",
        )
        log(f"import with {p} data volume(s) absent vs the complete import without parity")
        ours, base = alternate(rebuild, importing, runs, log=log)
        rows.append(ratio_row(f"import, {p} of {data_volumes} absent: time complete / rebuilt",
                              ours, base))  # fmt: skip
        ours2, cp = alternate(rebuild, setup.cp_sync("cp -r; sync", refs[0]), runs, log=log)
        rows.append(ratio_row(f"import, {p} absent: (cp -r of the export; sync) / import",
                              ours2, cp))  # fmt: skip
        series += [ours, base, ours2, cp]
    data = {
        "code": setup.code_digest,
        "runs": runs,
        "volume_size": setup.size,
        "data_volumes": data_volumes,
        "series": [x.as_json() for x in series],
    }
    return rows, data


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__, runs=3).parse_args(argv)
    settle(args, log)
    rows, data = run(args.workdir, max(1, args.runs), args.quick)
    data = report_rows("parity", args, rows, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
