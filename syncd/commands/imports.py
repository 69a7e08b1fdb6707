"""`syncd import DIR... --root ROOT`: verify volumes, stage, apply once complete.

(Named imports.py because `import` is a Python keyword.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from syncd.apply.room import StagingLimit
from syncd.commands.stagingmax import add_staging_max
from syncd.commands.targetflags import add_target_policy, target_policy
from syncd.errors import UsageError
from syncd.exitcodes import ExitCode
from syncd.gate.options import add_inspect_options, gate_policy
from syncd.interrupt import stop_on_signals
from syncd.jsonout import dumps
from syncd.media.importer import ImportOutcome, StatusReport, import_status, import_volumes
from syncd.media.layout import refuse_inside
from syncd.media.ordering import Allowances
from syncd.media.parity.status import parity_hint, parity_json
from syncd.media.progress import ImportProgress
from syncd.media.signing import load_public_key
from syncd.media.status import Missing
from syncd.roots import real_root
from syncd.safetext import escape
from syncd.state import StateDir
from syncd.targetguard import refuse_unknown_target
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
    parser.add_argument(
        "--force",
        action="store_true",
        help="import into a ROOT that holds other files and looks like no oc-mirror root, "
        "registry storage or syncd root (refused otherwise: the apply deletes what the "
        "export's snapshot lacks)",
    )
    parser.add_argument(
        "--allow-rollback",
        action="store_true",
        help="import an export older than the one ROOT last applied (refused otherwise, "
        "even after ROOT's state folder was reset: the root keeps a note of it)",
    )
    parser.add_argument(
        "--supersede",
        action="store_true",
        help="drop the import in progress for these volumes, though they come from another "
        "source or site, are older, or disagree with the volumes seen of their own export "
        "(refused otherwise)",
    )
    add_target_policy(parser)
    add_inspect_options(parser)
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
        if not root.is_dir():  # a typo must not read as "no import in progress"
            raise UsageError(f"--root {root}: no such folder")
        return _status(import_status(root, state), args.json, state)
    if not args.dirs:
        raise UsageError("give at least one DIR holding volumes (or --status)")
    for folder in args.dirs:
        refuse_inside(folder, root, "volume folder")
        refuse_inside(root, folder, "--root")
    refuse_unknown_target(root, state, force=args.force, flag="--force")
    required = load_public_key(args.require_signed_by) if args.require_signed_by else None
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create root {root}: {exc.strerror}") from exc
    with stop_on_signals("import", _kept):
        allowed = Allowances(rollback=args.allow_rollback, supersede=args.supersede)
        outcome = import_volumes(
            root,
            state,
            args.dirs,
            required,
            target_policy(args),
            allowed=allowed,
            gate=gate_policy(args),
            limit=StagingLimit(args.staging_max),
        )
    for volume in outcome.refused:
        print(f"syncd import: refused {escape(volume.problem)}", file=sys.stderr)
    if args.json:
        print(dumps("import", _summary(outcome, state)))
    else:
        _print(outcome, state)
    return int(_exit_code(outcome))


def _kept() -> str:
    return (
        "the volumes it had staged are kept (`syncd import --status` names what is still "
        "missing); an apply under way is journaled and the next `syncd import` finishes it; "
        "the live tree is consistent"
    )


def _exit_code(outcome: ImportOutcome) -> ExitCode:
    if outcome.refused:
        return ExitCode.PROBLEMS if outcome.status == "applied" else ExitCode.FAILED
    if outcome.status == "staged":
        return ExitCode.PROBLEMS  # finished, but volumes are still missing
    return ExitCode.OK


def _progress(progress: ImportProgress | None) -> dict[str, object]:
    """The export in progress: the same fields in `import --json` and `--status --json`."""
    return {
        "export": progress.export_id if progress else None,
        "target": progress.target.hex() if progress else None,
        "volume_count": progress.volumes if progress else None,
        "seen": sorted(progress.seen) if progress else [],
        "applied": progress.applied if progress else False,
    }


def _summary(outcome: ImportOutcome, state: StateDir) -> dict[str, object]:
    progress, applied, missing = outcome.progress, outcome.applied, outcome.missing
    hint = parity_json(state, progress, missing) if progress and missing else {}
    return {
        "status": outcome.status,
        **_progress(outcome.progress),
        "volumes": [v.as_json() for v in outcome.volumes],
        "notes": outcome.notes,
        "missing": outcome.missing.as_json() if outcome.missing else None,
        "files_applied": applied.files_written if applied else 0,
        "files_deleted": applied.files_deleted if applied else 0,
        "far_after": applied.root.hex() if applied else None,
        "resumed": resumed.root.hex() if (resumed := outcome.resumed.result) else None,
        "resume_problem": outcome.resumed.problem or None,
        **hint,
    }


def _print(outcome: ImportOutcome, state: StateDir) -> None:
    if outcome.resumed.result is not None or outcome.resumed.problem:
        print(escape(outcome.resumed.describe()))
    for volume in outcome.volumes:
        if volume.status == "imported" and volume.volume is None:  # a parity volume
            print(f"{volume.path}: {volume.problem}")
        elif volume.status == "imported":
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
        for line in parity_hint(state, progress, outcome.missing):
            print(line)
    elif outcome.status == "refused":
        print("nothing was imported")


def _status(report: StatusReport, as_json: bool, state: StateDir) -> int:
    progress, missing = report.progress, report.missing
    hint = parity_json(state, progress, missing) if progress and missing else {}
    if as_json:
        status = "none" if progress is None else "applied" if progress.applied else "staged"
        fields = {
            "status": status,
            **_progress(progress),
            "interrupted_apply": report.interrupted is not None,
            "interrupted_failures": report.interrupted.failures if report.interrupted else 0,
            "stale_scan": report.stale,
            "missing": missing.as_json() if missing else None,
            **hint,
        }
        print(dumps("import", fields))
        return _status_code(missing)
    if report.stale:
        print(f"note: {report.stale}")
    if progress is None:
        print("no import in progress")
    elif progress.applied:
        print(f"export {progress.export_id} is applied")
    elif missing is not None:
        seen = ", ".join(str(n) for n in sorted(progress.seen)) or "none"
        print(f"export {progress.export_id}: volumes seen: {seen} of {progress.volumes}")
        print(f"  {missing.describe(progress)}")
        for line in parity_hint(state, progress, missing):
            print(line)
    if report.interrupted:
        print(report.describe_interrupted())
    return _status_code(missing)


def _status_code(missing: Missing | None) -> int:
    incomplete = missing is not None and not missing.complete
    return int(ExitCode.PROBLEMS if incomplete else ExitCode.OK)
