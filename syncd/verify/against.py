"""`--against SNAPSHOT`: the tree must be exactly the snapshot (same id after a scan)."""

from __future__ import annotations

from pathlib import Path

from syncd.plan.diff import Change, Side, diff_trees
from syncd.scan.api import scan_root
from syncd.snapshot import SnapshotReader
from syncd.state import StateDir
from syncd.verify.problems import Code, Problem, error, warning
from syncd.verify.report import Finding, Section

_WORDS = {
    Side.ONLY_A: "only in the snapshot (missing from the tree)",
    Side.ONLY_B: "only in the tree (not in the snapshot)",
    Side.BOTH: "differs",
}


def check_against(root: Path, snapshot: Path, state: StateDir) -> Section:
    with SnapshotReader(snapshot) as want:
        result = scan_root(root, state)
        with SnapshotReader(result.snapshot_path) as have:
            changes = list(diff_trees(want.tree, want.root, have.tree, have.root))
            facts = [("snapshot", want.summary.id_hex), ("tree", have.summary.id_hex)]
    findings = [Finding(_problem(root, change), ()) for change in changes]
    findings += [
        Finding(warning(Code.TREE_DIFFERS, f"scan: {problem}", str(root)), ())
        for problem in result.problems
    ]
    facts.append(("equal", "yes" if not changes else f"no, {len(changes)} paths differ"))
    return Section("against", str(snapshot), tuple(facts), (), tuple(findings))


def _problem(root: Path, change: Change) -> Problem:
    detail = f" ({', '.join(change.what)})" if change.what else f" ({change.kind})"
    if change.kind == "dir" and change.side is not Side.BOTH:
        detail = f" (dir, {change.entries} entries)"
    path = str(root / change.path)
    return error(Code.TREE_DIFFERS, f"{path}: {_WORDS[change.side]}{detail}", path)
