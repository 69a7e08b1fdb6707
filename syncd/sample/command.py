"""`syncd sample ROOT --month N`: generate a month of an oc-mirror-like tree."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from syncd.errors import UsageError
from syncd.exitcodes import ExitCode
from syncd.jsonout import dumps
from syncd.sample.months import MonthReport, generate_month
from syncd.sample.spec import PRESETS, SampleSpec, preset


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "sample",
        help="generate a deterministic oc-mirror-like cache and content folder",
        description="Write month N of a sample tree into ROOT: month 1 into an empty ROOT, "
        "month N into a ROOT holding month N-1. The same options give the same bytes.",
    )
    parser.add_argument("root", type=Path, metavar="ROOT")
    parser.add_argument("--month", type=int, default=1, help="month to generate (default 1)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="tree size (default tiny)")
    parser.add_argument("--size", type=int, metavar="BYTES", help="scale month 1's cache to BYTES")
    parser.add_argument("--seed", type=int, help="content seed (default: the preset's)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--via-registry",
        dest="via_registry",
        action="store_const",
        const=True,
        help="push through docker-registry with skopeo (default when both are installed)",
    )
    mode.add_argument(
        "--direct",
        dest="via_registry",
        action="store_const",
        const=False,
        help="write files directly",
    )
    parser.add_argument(
        "--owner",
        metavar="UID:NAME",
        help="who mirror-to-disk ran as, recorded in every archive header (default 0:root); "
        "an SSSD/AD account such as 1234567890:jane.doe@corp.example.com makes every "
        "member a PAX one",
    )
    parser.add_argument("--json", action="store_true", help="print the month report as JSON")
    parser.set_defaults(run=_run, via_registry=None)


def _run(args: argparse.Namespace) -> int:
    spec = _spec(args)
    started = time.monotonic()
    report = generate_month(args.root, args.month, spec, via_registry=args.via_registry)
    if args.json:
        print(dumps("sample", report.as_json()))
    else:
        _print_summary(report, time.monotonic() - started)
    return int(ExitCode.OK)


def _spec(args: argparse.Namespace) -> SampleSpec:
    if args.size is not None and args.preset is not None:
        raise UsageError("--size and --preset exclude each other")
    spec = SampleSpec.scaled(args.size) if args.size is not None else preset(args.preset or "tiny")
    spec = spec if args.seed is None else spec.with_seed(args.seed)
    if args.owner is None:
        return spec
    uid, _, name = args.owner.partition(":")
    if not uid.isdigit() or not name:
        raise UsageError(f"--owner takes UID:NAME (a number, a colon, a name), not {args.owner!r}")
    return replace(spec, owner_uid=int(uid), owner_name=name)


def _print_summary(report: MonthReport, seconds: float) -> None:
    print(f"month {report.month}: {len(report.images)} images in the cache")
    print(f"  {len(report.new_blobs)} new blobs, {report.new_cache_bytes} bytes")
    print(f"  {len(report.archives)} archives, {report.archive_bytes} bytes")
    print(f"  history {report.history_file}")
    print(f"  done in {seconds:.2f} s")
