"""`syncd diff A B`: the paths that differ, and the blobs B lacks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from protocol.tree import FileNode
from syncd.exitcodes import ExitCode
from syncd.jsonout import dumps
from syncd.plan.diff import Change, Side, diff_trees, missing_blobs
from syncd.scan.api import scan_root
from syncd.scan.problems import Problem
from syncd.snapshot import SnapshotReader
from syncd.state import StateDir
from syncd.units import format_bytes

_LABELS = {Side.ONLY_A: "only in A", Side.ONLY_B: "only in B", Side.BOTH: "differs"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "diff",
        help="compare two trees or snapshots",
        description="Show the paths that differ between A and B, and the blobs that B "
        "lacks (A's pieces found nowhere in B). A and B are roots (scanned first, "
        "incrementally) or snapshot files. Exit 0 when equal, 1 when they differ.",
    )
    parser.add_argument("a", type=Path, metavar="A")
    parser.add_argument("b", type=Path, metavar="B")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def open_snapshot(path: Path) -> SnapshotReader:
    """A snapshot file as is, or a root scanned now (its state keeps the result)."""
    if not path.is_dir():
        return SnapshotReader(path)

    def report(problem: Problem) -> None:
        print(f"syncd diff: {path}: {problem}", file=sys.stderr)

    result = scan_root(path, StateDir(path), report=report)
    return SnapshotReader(result.snapshot_path)


def run(args: argparse.Namespace) -> int:
    with open_snapshot(args.a) as a, open_snapshot(args.b) as b:
        changes = list(diff_trees(a.tree, a.root, b.tree, b.root))
        missing = missing_blobs(_files(a), _blob_set(b).__contains__)
        if args.json:
            print(
                dumps(
                    "diff",
                    {
                        "a": a.summary.id_hex,
                        "b": b.summary.id_hex,
                        "equal": not changes,
                        "changes": [change.as_json() for change in changes],
                        "missing_blobs": missing.blobs,
                        "missing_bytes": missing.bytes,
                    },
                )
            )
        else:
            for change in changes:
                print(_line(change))
            print(
                f"{len(changes)} paths differ; B lacks {missing.blobs} blobs "
                f"({format_bytes(missing.bytes)}) that A has"
            )
    return int(ExitCode.PROBLEMS if changes else ExitCode.OK)


def _line(change: Change) -> str:
    detail = ", ".join(change.what) if change.what else change.kind
    if change.kind == "dir" and change.side is not Side.BOTH:
        detail = f"dir, {change.entries} entries"
    return f"{_LABELS[change.side]:<10} {change.path}  ({detail})"


def _files(snapshot: SnapshotReader) -> Iterator[FileNode]:
    for _, node in snapshot.walk():
        if isinstance(node, FileNode):
            yield node


def _blob_set(snapshot: SnapshotReader) -> set[bytes]:
    return {digest for node in _files(snapshot) for digest, _ in node.recipe}
