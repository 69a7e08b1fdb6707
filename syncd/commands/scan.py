"""`syncd scan ROOT`: hash a tree into a snapshot, incrementally."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from syncd.exitcodes import ExitCode
from syncd.jsonout import dumps
from syncd.scan.api import scan_root
from syncd.scan.problems import Problem
from syncd.scan.scanner import ScanOptions
from syncd.state import StateDir
from syncd.units import format_bytes


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "scan",
        help="hash a tree into a content-addressed snapshot",
        description="Scan ROOT into a snapshot kept in ROOT/.syncd (or --state). "
        "Only files whose stat changed since the last scan are read again.",
    )
    parser.add_argument("root", type=Path, metavar="ROOT")
    parser.add_argument("--state", type=Path, help="state folder (default: ROOT/.syncd)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--strict", action="store_true", help="stop at the first problem")
    parser.add_argument("--jobs", type=int, default=ScanOptions().workers, help="hashing threads")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    def report(problem: Problem) -> None:
        print(f"syncd scan: {problem}", file=sys.stderr)

    options = ScanOptions(strict=args.strict, workers=max(1, args.jobs))
    result = scan_root(args.root, StateDir(args.root, args.state), options, report)
    if args.json:
        print(dumps("scan", result.as_json()))
    else:
        s = result.summary
        print(f"snapshot {s.id_hex}")
        print(
            f"  {s.files} files, {s.dirs} dirs, {s.symlinks} symlinks, {format_bytes(s.bytes)}; "
            f"hashed {format_bytes(result.hashed_bytes)} in {result.seconds:.2f} s"
        )
        if result.problems:
            print(f"  {len(result.problems)} problems (listed above)")
    return int(ExitCode.PROBLEMS if result.problems else ExitCode.OK)
