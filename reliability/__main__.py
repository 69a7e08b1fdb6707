"""`python -m reliability [CAMPAIGN ...] [--quick] [--seed N]`: run campaigns, write figures.

Results go to reliability/results/<campaign>.json (the latest run of each) and a markdown
table per campaign is printed; docs/RELIABILITY.md quotes them. Exit status 1 when any
campaign failed, naming each failure.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import cast

from reliability.campaign import Campaign, Context, Outcome

RESULTS = Path(__file__).resolve().parent / "results"

# Name -> module; imported only when chosen, so one campaign's tools never slow another.
CAMPAIGNS: dict[str, str] = {
    "crash": "reliability.crash",  # kill -9 of the far side and the importer
    "powerloss": "reliability.powerloss",  # every prefix of the fsynced writes
    "diskfull": "reliability.diskfull",  # a full far disk mid-apply
    "corruption": "reliability.corruption",  # random mutations of volumes
    "hostile": "reliability.hostile",  # hostile wire and media input
    "fuzz": "reliability.fuzz",  # frame and volume index decoders
    "scale": "reliability.scale",  # a 1,000,000-entry tree: memory per entry
    "ssh": "reliability.ssh",  # host keys, forced command
    "verify": "reliability.verify",  # verify's verdict against a disk-to-mirror oracle
    "parity": "reliability.parity",  # lost and damaged volumes of parity exports
}


def markdown(outcome: Outcome) -> str:
    rows = [
        f"### {outcome.campaign} ({outcome.seconds:.0f} s)",
        "",
        "| figure | value | target | met? |",
        "|---|---|---|---|",
    ]
    rows += [
        f"| {f.name} | {f.value} | {f.target} | {'yes' if f.met else '**no**'} |"
        for f in outcome.figures
    ]
    rows += [f"- FAILURE: {text}" for text in outcome.failures]
    return "\n".join(rows) + "\n"


def run_one(name: str, ctx: Context) -> Outcome:
    module = cast(Campaign, importlib.import_module(CAMPAIGNS[name]))
    started = time.monotonic()
    outcome = module.run(ctx)
    outcome.seconds = time.monotonic() - started
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability", description=__doc__)
    parser.add_argument(
        "campaigns", nargs="*", metavar="CAMPAIGN", help=f"default: all of {', '.join(CAMPAIGNS)}"
    )
    parser.add_argument("--quick", action="store_true", help="CI's short slice")
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--no-save", action="store_true", help="do not write reliability/results/")
    args = parser.parse_args(argv)
    chosen = args.campaigns or list(CAMPAIGNS)
    unknown = [name for name in chosen if name not in CAMPAIGNS]
    if unknown:
        parser.error(f"unknown campaign(s): {', '.join(unknown)}")
    failed = False
    for name in chosen:
        with tempfile.TemporaryDirectory(prefix=f"syncd-reliability-{name}-") as scratch:
            outcome = run_one(name, Context(args.seed, Path(scratch), args.quick))
        print(markdown(outcome), flush=True)
        failed |= not outcome.ok
        if not args.no_save:
            RESULTS.mkdir(exist_ok=True)
            record = {"seed": args.seed, "quick": args.quick, **asdict(outcome)}
            (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
