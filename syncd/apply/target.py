"""The target snapshot file: every tree record reachable from the target root, in one file.

Written into the state folder before an apply starts, so that the apply (and its resumption
after a crash) needs nothing else: not the peer, not the staging area's tree records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from protocol.errors import ProtocolError
from protocol.tree import DirNode, FileNode, LinkNode, Node, decode_tree, tree_id
from syncd.apply.errors import ApplyError
from syncd.snapshot import SnapshotWriter, Summary
from syncd.store.recordfile import replace_atomically

Records = Callable[[bytes], bytes | None]


@dataclass(frozen=True, slots=True)
class _Totals:
    files: int
    dirs: int
    symlinks: int
    bytes: int


def write_target(path: Path, target: bytes, records: Records) -> Summary:
    """Write the snapshot of `target` to `path` (atomically) from `records`."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as out:
            writer = SnapshotWriter(out)
            totals = _collect(target, records, writer)
            summary = Summary(
                target, totals.files, totals.dirs, totals.symlinks, totals.bytes, True
            )
            writer.finish(summary)
        replace_atomically(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ApplyError(f"cannot write the target snapshot {path}: {exc.strerror}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return summary


def _collect(target: bytes, records: Records, writer: SnapshotWriter) -> _Totals:
    """Store every reachable record once, counting entries as a scan would (with repeats)."""
    totals: dict[bytes, _Totals] = {}
    stack: list[tuple[bytes, list[Node] | None]] = [(target, None)]
    while stack:
        key, nodes = stack.pop()
        if key in totals:
            continue  # an equal subtree met before
        if nodes is None:
            nodes = _fetch(key, records, writer)
            waiting = [n.tree for n in nodes if isinstance(n, DirNode) and n.tree not in totals]
            if waiting:
                stack.append((key, nodes))
                stack.extend((sub, None) for sub in waiting)
                continue
        totals[key] = _sum(nodes, totals)
    return totals[target]


def _fetch(key: bytes, records: Records, writer: SnapshotWriter) -> list[Node]:
    record = records(key)
    if record is None:
        raise ApplyError(f"tree {key.hex()} of the target is missing: it was never received")
    if tree_id(record) != key:
        raise ApplyError(f"tree record {key.hex()} of the target does not match its id")
    try:
        nodes = decode_tree(record)
    except ProtocolError as exc:
        raise ApplyError(f"tree record {key.hex()} of the target is invalid: {exc}") from exc
    writer.add_tree(record)
    return nodes


def _sum(nodes: list[Node], totals: dict[bytes, _Totals]) -> _Totals:
    files = dirs = symlinks = size = 0
    for node in nodes:
        if isinstance(node, FileNode):
            files, size = files + 1, size + node.size
        elif isinstance(node, LinkNode):
            symlinks += 1
        else:
            below = totals[node.tree]
            files, dirs = files + below.files, dirs + 1 + below.dirs
            symlinks, size = symlinks + below.symlinks, size + below.bytes
    return _Totals(files, dirs, symlinks, size)
