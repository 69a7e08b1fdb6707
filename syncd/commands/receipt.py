"""`syncd receipt --root ROOT --to FILE`: the far side's state, for the next export."""

from __future__ import annotations

import argparse
from pathlib import Path

from syncd.errors import UsageError
from syncd.exitcodes import ExitCode
from syncd.jsonout import dumps
from syncd.media.layout import refuse_inside
from syncd.media.receipt import ReceiptOutcome, write_receipt
from syncd.media.signing import load_signer
from syncd.roots import real_root
from syncd.state import StateDir
from syncd.units import format_bytes


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "receipt",
        help="write the far side's state for the next export",
        description="Scan ROOT and write FILE: this site's id, its snapshot (every tree "
        "record), the blobs it has staged and the last export imported. The connected "
        "side exports against it (syncd export --receipt FILE), so the next export holds "
        "exactly what this side lacks.",
    )
    parser.add_argument("--root", type=Path, required=True, help="the far tree")
    parser.add_argument("--to", type=Path, required=True, metavar="FILE", help="receipt file")
    parser.add_argument(
        "--sign-key", type=Path, metavar="KEY", help="sign it with this OpenSSH ed25519 key"
    )
    parser.add_argument("--state", type=Path, help="state folder (default: ROOT/.syncd)")
    parser.add_argument("--json", action="store_true", help="print one JSON summary object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    root = real_root(args.root)
    if not root.is_dir():
        raise UsageError(f"{root}: not a directory")
    refuse_inside(args.to, root, "receipt")
    sign = load_signer(args.sign_key) if args.sign_key else None
    outcome = write_receipt(root, StateDir(root, args.state), args.to, sign)
    if args.json:
        print(dumps("receipt", outcome.as_json()))
    else:
        _print(outcome)
    return int(ExitCode.PROBLEMS if outcome.scan.problems else ExitCode.OK)


def _print(outcome: ReceiptOutcome) -> None:
    h = outcome.header
    print(f"receipt #{h.sequence} of site {h.site.hex()}: {outcome.path}")
    print(
        f"  snapshot {h.root.hex()[:16]} ({h.files} files), {outcome.staged_blobs} staged "
        f"blobs; {format_bytes(outcome.bytes)}"
    )
    if h.last_export is not None:
        state = "applied" if h.last_export.applied else "in progress"
        print(f"  last export imported: {h.last_export.export_id} ({state})")
