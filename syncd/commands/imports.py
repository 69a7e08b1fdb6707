"""`syncd import DIR... --root ROOT`: verify volumes, stage, apply once complete.

(Named imports.py because `import` is a Python keyword.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from syncd.apply.room import StagingLimit
from syncd.commands.stagingmax import add_staging_max
from syncd.commands.targetflags import add_target_policy, target_policy
from syncd.errors import UsageError
from syncd.exitcodes import ExitCode
from syncd.media.importer import ImportOutcome, StatusReport, import_status, import_volumes
from syncd.media.layout import refuse_inside
from syncd.media.signing import load_public_key
from syncd.roots import real_root
from syncd.state import StateDir
from syncd.units import format_bytes


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "import",
        help="import export volumes into a far tree (any order, any subset per run)",
        description="Verify each volume in DIR (a volume, an export folder or a folder of "
        "exports): its index, every file and every blob; stage what ROOT lacks; apply the "
        "target, crash-safe, once every blob it needs is here. --status names the volumes "
        "still missing.",
    )
    parser.add_argument("dirs", type=Path, nargs="*", metavar="DIR")
    parser.add_argument("--root", type=Path, required=True, help="the far tree")
    parser.add_argument("--status", action="store_true", help="name the volumes still missing")
    parser.add_argument(
        "--require-signed-by",
        type=Path,
        metavar="PUBKEY",
        help="refuse volumes whose index is not signed by this OpenSSH public key",
    )
    add_target_policy(parser)
    parser.add_argument("--state", type=Path, help="state folder (default: ROOT/.syncd)")
    add_staging_max(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON summary object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    root = real_root(args.root)
    state = StateDir(root, args.state)
    if args.status:
        if args.dirs:
            raise UsageError("--status takes no DIR")
        return _status(import_status(root, state), args.json)
    if not args.dirs:
        raise UsageError("give at least one DIR holding volumes (or --status)")
    for folder in args.dirs:
        refuse_inside(folder, root, "volume folder")
    required = load_public_key(args.require_signed_by) if args.require_signed_by else None
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create root {root}: {exc.strerror}") from exc
    limit = StagingLimit(args.staging_max)
    outcome = import_volumes(root, state, args.dirs, required, target_policy(args), limit=limit)
    for volume in outcome.refused:
        print(f"syncd import: refused {volume.problem}", file=sys.stderr)
    if args.json:
        print(json.dumps(_summary(outcome)))
    else:
        _print(outcome)
    return int(_exit_code(outcome))


def _exit_code(outcome: ImportOutcome) -> ExitCode:
    if outcome.refused:
        return ExitCode.PROBLEMS if outcome.status == "applied" else ExitCode.FAILED
    if outcome.status == "staged":
        return ExitCode.PROBLEMS  # finished, but volumes are still missing
    return ExitCode.OK


def _summary(outcome: ImportOutcome) -> dict[str, object]:
    progress, applied = outcome.progress, outcome.applied
    return {
        "status": outcome.status,
        "export": progress.export_id if progress else None,
        "target": progress.target.hex() if progress else None,
        "volumes": [v.as_json() for v in outcome.volumes],
        "notes": outcome.notes,
        "missing": outcome.missing.as_json() if outcome.missing else None,
        "files_applied": applied.files_written if applied else 0,
        "files_deleted": applied.files_deleted if applied else 0,
        "far_after": applied.root.hex() if applied else None,
        "resumed": resumed.root.hex() if (resumed := outcome.resumed.result) else None,
        "resume_problem": outcome.resumed.problem or None,
    }


def _print(outcome: ImportOutcome) -> None:
    if outcome.resumed.result is not None or outcome.resumed.problem:
        print(outcome.resumed.describe())
    for volume in outcome.volumes:
        if volume.status == "imported":
            print(
                f"{volume.path}: volume {volume.volume} of export {volume.export_id}: "
                f"{volume.blobs} blobs ({format_bytes(volume.bytes)}) staged"
            )
    for note in outcome.notes:
        print(note)
    progress, applied = outcome.progress, outcome.applied
    if applied is not None:
        print(
            f"applied snapshot {applied.root.hex()[:16]}: {applied.files_written} files "
            f"written, {applied.files_deleted} deleted"
        )
    elif outcome.status == "up-to-date" and progress is not None:
        print(f"export {progress.export_id} is applied here already")
    elif outcome.missing is not None and progress is not None:
        print(f"staged, not applied: {outcome.missing.describe(progress)}")
    elif outcome.status == "refused":
        print("nothing was imported")


def _status(report: StatusReport, as_json: bool) -> int:
    progress, missing = report.progress, report.missing
    if as_json:
        print(
            json.dumps(
                {
                    "export": progress.export_id if progress else None,
                    "target": progress.target.hex() if progress else None,
                    "volumes": progress.volumes if progress else None,
                    "seen": sorted(progress.seen) if progress else [],
                    "applied": progress.applied if progress else None,
                    "interrupted_apply": report.interrupted is not None,
                    "interrupted_failures": (
                        report.interrupted.failures if report.interrupted else 0
                    ),
                    **(missing.as_json() if missing else {"missing_volumes": []}),
                }
            )
        )
    elif progress is None:
        print("no import in progress")
    elif progress.applied:
        print(f"export {progress.export_id} is applied")
    elif missing is not None:
        seen = ", ".join(str(n) for n in sorted(progress.seen)) or "none"
        print(f"export {progress.export_id}: volumes seen: {seen} of {progress.volumes}")
        print(f"  {missing.describe(progress)}")
    if report.interrupted:
        print(report.describe_interrupted())
    incomplete = missing is not None and not missing.complete
    return int(ExitCode.PROBLEMS if incomplete else ExitCode.OK)
