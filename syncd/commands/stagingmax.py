"""`--staging-max SIZE`, the staging quota of `serve` and `import` (syncd/apply/room.py)."""

from __future__ import annotations

import argparse

from syncd.apply.room import STAGING_SHARE
from syncd.units import parse_size


def add_staging_max(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--staging-max",
        type=_size,
        metavar="SIZE",
        help="the most staging may hold (e.g. 200G, 50GiB; default: "
        f"{STAGING_SHARE * 100:.0f}%% of the free space plus what staging holds). Staged "
        "data no current target needs is dropped, oldest first, to stay within it; a push "
        "or import needing more is refused up front",
    )


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
