"""`syncd audit --root ROOT [--json]`: the far side's audit log, one line per apply."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from syncd.errors import UsageError
from syncd.exitcodes import ExitCode
from syncd.gate.audit import log_path, read_entries
from syncd.jsonout import dumps
from syncd.media.showing import escape
from syncd.state import StateDir


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "audit",
        help="the far side's audit log: every apply and refusal, by whom, what changed",
        description="Print ROOT's audit log (STATE/audit.jsonl): one entry per apply of an "
        "import or a push, or refusal by the inspection command: when, the export and its "
        "signer or the pushing key, the snapshot before and after, the image changes.",
    )
    parser.add_argument("--root", type=Path, required=True, help="the far tree")
    parser.add_argument("--state", type=Path, help="state folder (default: ROOT/.syncd)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not args.root.is_dir():
        raise UsageError(f"{args.root}: not a folder")
    state = StateDir(args.root.absolute(), args.state)
    entries: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, entry, problem in read_entries(state):
        if entry is None:
            problems.append(f"{log_path(state)}: line {number}: {problem}")
        else:
            entries.append(entry)
    for problem in problems:
        print(f"syncd audit: {problem}", file=sys.stderr)
    if args.json:
        print(dumps("audit", {"log": str(log_path(state)), "entries": entries}))
    elif not entries:
        print(f"no entries in {log_path(state)}")
    for entry in [] if args.json else entries:
        for line in describe(entry):
            print(line)
    return int(ExitCode.PROBLEMS if problems else ExitCode.OK)


def describe(entry: dict[str, Any]) -> list[str]:
    source = entry.get("source")
    if source == "push":
        who = f"push from {entry.get('client') or 'a local client'}"
        if entry.get("key"):
            who += f" with key {entry['key']}"
    else:
        who = f"import of export {entry.get('export')}"
        who += f", signed by {entry['signer']}" if entry.get("signer") else ", unsigned"
    after = entry.get("after") or entry.get("target") or ""
    files = entry.get("files") or {}
    lines = [
        f"{entry.get('time')}  {str(entry.get('status')).upper()}  {who}",
        f"  snapshot {str(entry.get('before'))[:16]} -> {str(after)[:16]}; files "
        f"{files.get('added', 0)} added, {files.get('changed', 0)} changed, "
        f"{files.get('removed', 0)} removed",
    ]
    if entry.get("problem"):
        lines.append(escape(f"  {entry['problem']}".splitlines()[0]))
    inspection = entry.get("inspection")
    if isinstance(inspection, dict):
        command = escape(str(inspection.get("command")))
        lines.append(f"  inspection: exit {inspection.get('exit_status')}: {command}")
    for image in entry.get("images") or []:
        if isinstance(image, dict):
            digest = image.get("digest") or "?"
            if image.get("previous") and image.get("digest"):
                digest = f"{image['previous']} -> {digest}"
            lines.append(f"  {image.get('change'):8} {image.get('image')}  {digest}")
    return lines
