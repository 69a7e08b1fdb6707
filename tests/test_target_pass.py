"""The target snapshot's one pass (syncd/apply/target.py): counts with repeats, memory
only for large subtrees, and bounded work for a target built of repeats."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from protocol.tree import DirNode, FileNode, Node, encode_tree, tree_id
from syncd.apply.target import REMEMBER_MIN, write_target
from syncd.snapshot import SnapshotReader


class Records:
    """Tree records by id, counting how often each is fetched."""

    def __init__(self) -> None:
        self.by_id: dict[bytes, bytes] = {}
        self.fetched: Counter[bytes] = Counter()

    def add(self, nodes: list[Node]) -> bytes:
        record = encode_tree(nodes)
        key = tree_id(record)
        self.by_id[key] = record
        return key

    def get(self, key: bytes) -> bytes | None:
        self.fetched[key] += 1
        return self.by_id.get(key)


def files(count: int, prefix: str = "f") -> list[Node]:
    return [FileNode(f"{prefix}{i:04d}", 0o644, 0, 0, ()) for i in range(count)]


def dirs(names: list[str], tree: bytes) -> list[Node]:
    return [DirNode(name, 0o755, tree) for name in names]


def test_repeated_subtrees_count_every_time_and_only_large_ones_are_walked_once(
    tmp_path: Path,
) -> None:
    records = Records()
    leaf = records.add(files(1, "link"))  # 2 entries with its folder: walked each time
    big = records.add(files(REMEMBER_MIN))  # REMEMBER_MIN + 1 entries: walked once
    # 200 repositories, each its own record, each holding the same small leaf
    repos = [records.add([*dirs(["layer"], leaf), *files(1, f"own{i}")]) for i in range(200)]
    names = dirs(["big1", "big2", "big3"], big)
    names += [DirNode(f"repo{i:03d}", 0o755, repo) for i, repo in enumerate(repos)]
    root = records.add(names)
    summary = write_target(tmp_path / "target", root, records.get).summary
    assert summary.files == 400 + 3 * REMEMBER_MIN
    assert summary.dirs == 403
    assert records.fetched[big] == 1
    assert records.fetched[leaf] == 200
    with SnapshotReader(tmp_path / "target") as written:
        assert written.root == root
        assert {path for path, _ in written.walk(root)} >= {"repo199/layer/link0000", "big3/f0063"}


def test_a_target_built_of_repeats_costs_work_in_its_distinct_records(tmp_path: Path) -> None:
    """Each level holds its level below twice: 2**40 files with repeats, 41 records."""
    records = Records()
    key = records.add(files(1))
    for level in range(40):
        key = records.add(dirs([f"a{level}", f"b{level}"], key))
    summary = write_target(tmp_path / "target", key, records.get).summary
    assert summary.files == 2**40
    assert summary.dirs == 2 * (2**40 - 1)
    # A subtree under REMEMBER_MIN entries is walked again each time it is met; one
    # above is walked once: a bounded factor over the 41 distinct records.
    assert sum(records.fetched.values()) < 41 + 2 * REMEMBER_MIN


def test_the_offered_ids_written_under_other_ids_are_named_once(tmp_path: Path) -> None:
    records = Records()
    odd = records.add([FileNode("x", 0o4755, 0, 0, ())])  # setuid: the far side masks it
    root = records.add(dirs([f"d{i}" for i in range(10)], odd))
    written = write_target(tmp_path / "target", root, records.get)
    offered = [offered for offered, _ in written.aliases]
    assert sorted(offered) == sorted({odd, root})
    assert written.summary.root != root
