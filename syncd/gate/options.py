"""The command-line options of the inspection gate, shared by `import` and `serve`."""

from __future__ import annotations

import argparse

from syncd.gate.inspection import DEFAULT_TIMEOUT, GatePolicy
from syncd.units import parse_duration


def add_inspect_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--inspect",
        metavar="CMD",
        help="before anything goes live, run CMD (sh -c) on copies of the files the apply "
        "would write (SYNCD_INSPECT_FILES) and a manifest of the change "
        "(SYNCD_INSPECT_MANIFEST); a non-zero exit refuses the apply and keeps the staging",
    )
    parser.add_argument(
        "--inspect-timeout",
        type=positive_duration,
        default=DEFAULT_TIMEOUT,
        metavar="DURATION",
        help=f"refuse the apply when CMD runs longer (default {DEFAULT_TIMEOUT / 3600:g}h)",
    )


def gate_policy(args: argparse.Namespace) -> GatePolicy:
    return GatePolicy(args.inspect or None, args.inspect_timeout)


def positive_duration(text: str) -> float:
    """An argparse type: a duration (90s, 2m, 4h) above zero."""
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be above zero")
    return value
