"""Every tree record of a snapshot, once each, for a volume index or a receipt."""

from __future__ import annotations

from protocol.tree import DirNode, decode_tree
from syncd.errors import SnapshotFileError
from syncd.snapshot import SnapshotReader


def snapshot_records(snapshot: SnapshotReader) -> list[tuple[bytes, bytes]]:
    """(tree id, record) of every tree reachable from the root, each once, depth-first."""
    seen = {snapshot.root}
    todo = [snapshot.root]
    out: list[tuple[bytes, bytes]] = []
    while todo:
        key = todo.pop()
        record = snapshot.record(key)
        if record is None:
            raise SnapshotFileError(f"{snapshot.path}: tree {key.hex()} is missing or corrupt")
        out.append((key, bytes(record)))
        for node in decode_tree(record):
            if isinstance(node, DirNode) and node.tree not in seen:
                seen.add(node.tree)
                todo.append(node.tree)
    return out
