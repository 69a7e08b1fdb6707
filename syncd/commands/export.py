"""`syncd export SRC --to DIR`: write what a far site lacks onto removable-media volumes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from syncd.errors import UsageError
from syncd.exitcodes import ExitCode
from syncd.interrupt import stop_on_signals
from syncd.jsonout import dumps
from syncd.media.export import ExportOptions, ExportOutcome, export
from syncd.media.layout import refuse_inside
from syncd.media.plan import FAT32_MAX_FILE, MediaLimits
from syncd.progress import for_terminal
from syncd.scan.problems import Problem
from syncd.units import format_bytes, parse_size


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "export",
        help="write what a far site lacks onto removable media",
        description="Scan SRC and write volumes (DIR/<export-id>/vol-NNNN/, one folder per "
        "medium) holding exactly the blobs the far site lacks according to its newest "
        "receipt (--receipt, or the one kept from an earlier export), or everything "
        "(--full, or when no receipt was seen yet). Every volume carries the target "
        "snapshot, so the far side imports them in any order.",
    )
    parser.add_argument("src", type=Path, metavar="SRC")
    parser.add_argument("--to", type=Path, required=True, metavar="DIR", help="where to write")
    basis = parser.add_mutually_exclusive_group()
    basis.add_argument("--receipt", type=Path, metavar="FILE", help="the far site's receipt")
    basis.add_argument("--full", action="store_true", help="write every blob of the snapshot")
    parser.add_argument(
        "--site", default="default", metavar="NAME", help="which far site (default: default)"
    )
    parser.add_argument(
        "--volume-size", metavar="SIZE", help="largest volume, index included (e.g. 4.7G, 64Gi)"
    )
    parser.add_argument(
        "--max-file-size",
        metavar="SIZE",
        default=str(FAT32_MAX_FILE),
        help="largest file on the media (default 4 GiB - 1, FAT32's limit)",
    )
    parser.add_argument(
        "--sign-key", type=Path, metavar="KEY", help="sign each index with this OpenSSH ed25519 key"
    )
    parser.add_argument(
        "--require-signed-by",
        type=Path,
        metavar="PUBKEY",
        help="refuse a receipt not signed by this OpenSSH public key",
    )
    parser.add_argument(
        "--parity",
        type=int,
        default=0,
        metavar="N",
        help="add N parity volumes: the far side completes the import with any N volumes "
        "absent, and repairs damaged regions (default 0)",
    )
    parser.add_argument(
        "--assume-delivered",
        action="store_true",
        help="one-way link (data diode): build on the last export made with this option as "
        "if its receipt had come back, so each export holds only what is new",
    )
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="export a SRC that holds no files (refused otherwise: importing it would empty "
        "the far side; an unmounted file system looks just like that)",
    )
    parser.add_argument("--state", type=Path, help="SRC's state folder (default: SRC/.syncd)")
    parser.add_argument("--json", action="store_true", help="print one JSON summary object")
    parser.set_defaults(run=run)


def _size(text: str | None, option: str) -> int | None:
    if text is None:
        return None
    try:
        size = parse_size(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None
    if size < 1:
        raise UsageError(f"{option}: must be positive")
    return size


def run(args: argparse.Namespace) -> int:
    if not args.src.is_dir():  # else its state folder would be made, and an empty tree exported
        raise UsageError(f"{args.src}: not a directory")
    refuse_inside(args.to, args.src, "--to")
    max_file = _size(args.max_file_size, "--max-file-size")
    assert max_file is not None
    limits = MediaLimits(_size(args.volume_size, "--volume-size"), max_file)
    options = ExportOptions(
        src=args.src,
        to=args.to,
        limits=limits,
        state=args.state,
        site=args.site,
        receipt=args.receipt,
        full=args.full,
        sign_key=args.sign_key,
        require_signed_by=args.require_signed_by,
        parity=args.parity,
        assume_delivered=args.assume_delivered,
        allow_empty=args.allow_empty,
    )

    def report(problem: Problem) -> None:
        print(f"syncd export: {args.src}: {problem}", file=sys.stderr)

    with stop_on_signals("export", _kept):
        outcome = export(options, report, for_terminal("export", quiet=args.json))
    if args.json:
        print(dumps("export", outcome.as_json()))
    else:
        _print(outcome)
    return int(ExitCode.PROBLEMS if outcome.scan.problems else ExitCode.OK)


def _kept() -> str:
    return (
        "no export was completed (its folder is written as <export-id>.partial and renamed "
        "only once whole; one left behind may be deleted); the source is unchanged"
    )


def _print(outcome: ExportOutcome) -> None:
    total = sum(v.bytes for v in outcome.volumes)
    print(f"export {outcome.export_id}: {outcome.folder}")
    print(f"  basis: {outcome.basis.description}")
    print(
        f"  snapshot {outcome.scan.summary.id_hex[:16]}: {outcome.blobs} blobs "
        f"({format_bytes(outcome.blob_bytes)}) in {len(outcome.volumes)} volume(s), "
        f"{format_bytes(total)} written in {outcome.seconds:.2f} s"
    )
    for volume in outcome.volumes:
        what = "parity" if volume.kind == "parity" else f"{volume.blobs} blobs"
        print(f"  {volume.path.name}: {what}, {format_bytes(volume.bytes)}")
