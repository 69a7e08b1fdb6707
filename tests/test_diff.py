"""Tree diff (syncd/plan/diff.py) over in-memory tables, and the `syncd diff` command.

The pure diff is what reconciliation runs against a peer, so besides what it reports we
check what it costs: equal roots must need no lookup at all, and a change deep in a wide
tree must only open the directories on the path to it.
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest

from protocol.tree import DirNode, FileNode, LinkNode, Node, decode_tree, encode_tree, tree_id
from syncd.plan.diff import Change, Side, count_entries, diff_trees, missing_blobs
from syncd.snapshot import SnapshotReader
from syncd.state import StateDir
from tests.scanutil import run_cli, set_mtimes


class Table:
    """tree id -> children, built from real encoded records; counts every lookup."""

    def __init__(self) -> None:
        self.records: dict[bytes, list[Node]] = {}
        self.calls: Counter[bytes] = Counter()

    def add(self, children: list[Node]) -> bytes:
        record = encode_tree(sorted(children, key=lambda node: node.name.encode()))
        key = tree_id(record)
        self.records[key] = decode_tree(record)
        return key

    def lookup(self, key: bytes) -> list[Node]:
        self.calls[key] += 1
        return self.records[key]

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


def digest(tag: str) -> bytes:
    return tag.encode().ljust(32, b".")


def file(name: str, content: str = "x", mode: int = 0o644, mtime: int = 7) -> FileNode:
    """A file of one piece named after its content tag; size is the tag's length."""
    return FileNode(name, mode, len(content), mtime, ((digest(content), len(content)),))


def link(name: str, target: str) -> LinkNode:
    return LinkNode(name, target)


def diff(a_children: list[Node], b_children: list[Node]) -> list[Change]:
    """Changes from B to A when A and B are roots holding these children, one shared table."""
    table = Table()
    root_a, root_b = table.add(a_children), table.add(b_children)
    return list(diff_trees(table.lookup, root_a, table.lookup, root_b))


def test_equal_roots_need_no_lookup() -> None:
    # Equal ids end the diff before anything is fetched: one round trip for a peer.
    def never(key: bytes) -> list[Node]:
        raise AssertionError(f"lookup of {key.hex()} for equal roots")

    root = b"\x01" * 32
    assert list(diff_trees(never, root, never, root)) == []


def test_same_children_in_different_tables_give_nothing() -> None:
    assert diff([file("a"), link("l", "a")], [file("a"), link("l", "a")]) == []


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([file("f")], [], Change("f", Side.ONLY_A, "file")),
        ([], [file("f")], Change("f", Side.ONLY_B, "file")),
        ([link("l", "t")], [], Change("l", Side.ONLY_A, "symlink")),
        ([file("f", "one")], [file("f", "two")], Change("f", Side.BOTH, "file", ("content",))),
        ([file("f", mode=0o600)], [file("f")], Change("f", Side.BOTH, "file", ("mode",))),
        ([file("f", mtime=8)], [file("f")], Change("f", Side.BOTH, "file", ("mtime",))),
        (
            [file("f", "one", 0o600, 8)],
            [file("f", "two", 0o644, 7)],
            Change("f", Side.BOTH, "file", ("content", "mode", "mtime")),
        ),
        ([link("f", "t")], [file("f")], Change("f", Side.BOTH, "symlink", ("kind",))),
        ([file("f")], [link("f", "t")], Change("f", Side.BOTH, "file", ("kind",))),
        (
            [DirNode("f", 0o755, b"\x00" * 32)],
            [file("f")],
            Change("f", Side.BOTH, "dir", ("kind",)),
        ),
        ([link("l", "new")], [link("l", "old")], Change("l", Side.BOTH, "symlink", ("target",))),
    ],
    ids=[
        "only in A",
        "only in B",
        "link only in A",
        "content",
        "mode",
        "mtime",
        "all three",
        "link vs file",
        "file vs link",
        "dir vs file",
        "target",
    ],
)
def test_single_entry_changes(a: list[Node], b: list[Node], expected: Change) -> None:
    # Unchanged neighbours must not show up.
    same: list[Node] = [file("zz-same", "same"), link("zz-link", "same")]
    assert diff(a + same, b + same) == [expected]


def test_subtree_on_one_side_is_one_change_with_its_entry_count() -> None:
    table = Table()
    deep = table.add([file("x"), file("y")])
    mid = table.add(
        [DirNode("deep", 0o755, deep), link("l", "deep/x"), DirNode("e", 0o700, table.add([]))]
    )
    root_a = table.add([DirNode("sub", 0o755, mid), file("f")])
    root_b = table.add([file("f")])
    table.calls.clear()
    # sub holds deep, l, e, deep/x, deep/y: 5 entries, reported once, not 6 changes.
    forward = list(diff_trees(table.lookup, root_a, table.lookup, root_b))
    assert forward == [Change("sub", Side.ONLY_A, "dir", entries=5)]
    backward = list(diff_trees(table.lookup, root_b, table.lookup, root_a))
    assert backward == [Change("sub", Side.ONLY_B, "dir", entries=5)]
    assert count_entries(table.lookup, mid) == 5


def test_empty_directory_on_one_side_has_zero_entries() -> None:
    table = Table()
    root_a = table.add([DirNode("empty", 0o755, table.add([]))])
    root_b = table.add([])
    changes = list(diff_trees(table.lookup, root_a, table.lookup, root_b))
    assert changes == [Change("empty", Side.ONLY_A, "dir", entries=0)]
    assert changes[0].as_json() == {
        "path": "empty",
        "change": "only_in_a",
        "kind": "dir",
        "entries": 0,
    }


def test_directory_mode_change_alone_does_not_descend() -> None:
    table = Table()
    sub = table.add([file("x")])
    root_a = table.add([DirNode("d", 0o700, sub)])
    root_b = table.add([DirNode("d", 0o755, sub)])
    table.calls.clear()
    changes = list(diff_trees(table.lookup, root_a, table.lookup, root_b))
    assert changes == [Change("d", Side.BOTH, "dir", ("mode",))]
    assert table.calls[sub] == 0


def test_nested_changes_carry_full_paths() -> None:
    table = Table()
    root_a = table.add(
        [DirNode("a", 0o755, table.add([DirNode("b", 0o755, table.add([file("c", "new")]))]))]
    )
    root_b = table.add(
        [DirNode("a", 0o755, table.add([DirNode("b", 0o755, table.add([file("c", "old")]))]))]
    )
    changes = list(diff_trees(table.lookup, root_a, table.lookup, root_b))
    assert changes == [Change("a/b/c", Side.BOTH, "file", ("content",))]


def build_wide(table: Table, depth: int, fanout: int, changed: str | None) -> bytes:
    """A full tree `depth` dirs deep with `fanout` children per dir; files at the bottom.

    The file whose path is `changed` gets other content.
    """

    def level(prefix: str, remaining: int) -> bytes:
        children: list[Node] = []
        for i in range(fanout):
            name = f"n{i}"
            path = f"{prefix}/{name}" if prefix else name
            if remaining == 0:
                children.append(file(name, "changed" if path == changed else "same"))
            else:
                children.append(DirNode(name, 0o755, level(path, remaining - 1)))
        return table.add(children)

    return level("", depth)


def test_descent_only_enters_differing_subtrees() -> None:
    # 6-way tree, 4 levels of dirs: 1 + 6 + 36 + 216 + 1296 = 1555 directories. One leaf
    # differs; the diff must open only the dirs on its path, on both sides.
    depth, fanout = 4, 6
    table = Table()
    root_a = build_wide(table, depth, fanout, changed="n3/n1/n4/n0/n5")
    root_b = build_wide(table, depth, fanout, changed=None)
    dirs = sum(fanout**level for level in range(depth + 1))
    assert dirs == 1555
    table.calls.clear()
    changes = list(diff_trees(table.lookup, root_a, table.lookup, root_b))
    assert changes == [Change("n3/n1/n4/n0/n5", Side.BOTH, "file", ("content",))]
    # Root plus one dir per level, looked up once on each side.
    assert table.total_calls == 2 * (depth + 1)
    assert max(table.calls.values()) == 1


def test_changes_come_in_path_order() -> None:
    table = Table()
    root_a = table.add([DirNode("b", 0o755, table.add([link("x", "new")]))])
    root_b = table.add([link("a", "q"), DirNode("b", 0o755, table.add([link("x", "old")]))])
    paths = [change.path for change in diff_trees(table.lookup, root_a, table.lookup, root_b)]
    assert paths == ["a", "b/x"]


def test_change_as_json() -> None:
    assert Change("f", Side.BOTH, "file", ("content", "mode")).as_json() == {
        "path": "f",
        "change": "differs",
        "kind": "file",
        "what": ["content", "mode"],
    }
    # entries only for a directory present on one side
    assert "entries" not in Change("f", Side.ONLY_B, "file").as_json()
    assert Change("d", Side.ONLY_B, "dir", entries=3).as_json()["entries"] == 3


# --- missing blobs ------------------------------------------------------------------------


def test_missing_blobs_counts_distinct_digests_and_their_sizes() -> None:
    a, b, c, d = digest("a"), digest("b"), digest("c"), digest("d")
    wanted = [
        FileNode("f1", 0o644, 30, 0, ((a, 10), (b, 20))),
        FileNode("f2", 0o644, 30, 0, ((a, 10), (a, 10), (c, 10))),  # a again, twice
        FileNode("f3", 0o644, 5, 0, ((d, 5),)),
        FileNode("empty", 0o644, 0, 0, ()),
    ]
    have = {c}
    missing = missing_blobs(wanted, have.__contains__)
    assert (missing.blobs, missing.bytes) == (3, 10 + 20 + 5)


def test_missing_blobs_when_everything_is_there_or_nothing_is() -> None:
    wanted = [file("f", "abc"), file("g", "abc"), file("h", "de")]
    assert missing_blobs(wanted, lambda _: True) == missing_blobs([], lambda _: False)
    everything = missing_blobs(wanted, lambda _: False)
    assert (everything.blobs, everything.bytes) == (2, 5)


def test_missing_blobs_asks_once_per_distinct_missing_digest() -> None:
    asked: Counter[bytes] = Counter()

    def have(key: bytes) -> bool:
        asked[key] += 1
        return False

    missing_blobs([file("f", "abc"), file("g", "abc"), file("h", "abc")], have)
    assert asked == Counter({digest("abc"): 1})


# --- the command --------------------------------------------------------------------------


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    """Two roots: B has A's blob under another name, lacks one new file, and has extras."""
    blob = random.Random(5).randbytes(100_000)
    a, b = tmp_path / "A", tmp_path / "B"
    for root in (a, b):
        write(root / "docs" / "readme.txt", b"hello readme\n")
        (root / "empty").mkdir()
    write(a / "data" / "blob.bin", blob)
    write(a / "new.bin", b"N" * 12_345)
    (a / "link").symlink_to("docs/readme.txt")
    write(b / "copy-of-blob.bin", blob)  # same bytes, other path
    write(b / "extra.txt", b"only here")
    (b / "link").symlink_to("elsewhere")
    for root in (a, b):
        set_mtimes(root)
    return a, b


EXPECTED_CHANGES = [
    {"path": "copy-of-blob.bin", "change": "only_in_b", "kind": "file"},
    {"path": "data", "change": "only_in_a", "kind": "dir", "entries": 1},
    {"path": "extra.txt", "change": "only_in_b", "kind": "file"},
    {"path": "link", "change": "differs", "kind": "symlink", "what": ["target"]},
    {"path": "new.bin", "change": "only_in_a", "kind": "file"},
]


def diff_json(a: Path, b: Path) -> tuple[int, dict[str, object]]:
    result = run_cli("diff", str(a), str(b), "--json")
    assert result.returncode in (0, 1), result.stderr
    out: dict[str, object] = json.loads(result.stdout)
    return result.returncode, out


def by_path(changes: object) -> list[dict[str, object]]:
    assert isinstance(changes, list)
    return sorted(changes, key=lambda change: str(change["path"]))


def test_cli_diff_of_two_roots(roots: tuple[Path, Path]) -> None:
    a, b = roots
    code, out = diff_json(a, b)
    assert code == 1
    assert out["equal"] is False
    assert by_path(out["changes"]) == EXPECTED_CHANGES
    # B has data/blob.bin's bytes as copy-of-blob.bin, so only new.bin's one piece is
    # missing: a rename or copy costs nothing to send.
    assert (out["missing_blobs"], out["missing_bytes"]) == (1, 12_345)
    for root, key in ((a, "a"), (b, "b")):
        with SnapshotReader(StateDir(root).snapshot) as snap:
            assert out[key] == snap.summary.id_hex


def test_cli_diff_the_other_way(roots: tuple[Path, Path]) -> None:
    a, b = roots
    code, out = diff_json(b, a)
    assert code == 1
    # A lacks extra.txt only: readme is shared and the copied blob is in data/blob.bin.
    assert (out["missing_blobs"], out["missing_bytes"]) == (1, len(b"only here"))


def test_cli_diff_of_equal_roots(tmp_path: Path, roots: tuple[Path, Path]) -> None:
    a, _ = roots
    twin = tmp_path / "twin"
    shutil.copytree(a, twin, symlinks=True)
    shutil.rmtree(twin / ".syncd", ignore_errors=True)
    set_mtimes(twin)
    code, out = diff_json(a, twin)
    assert code == 0
    assert out["equal"] is True
    assert out["changes"] == []
    assert (out["missing_blobs"], out["missing_bytes"]) == (0, 0)
    assert out["a"] == out["b"]


def test_cli_diff_of_snapshot_files(tmp_path: Path, roots: tuple[Path, Path]) -> None:
    a, b = roots
    _, from_roots = diff_json(a, b)
    snap_a, snap_b = tmp_path / "a.snapshot", tmp_path / "b.snapshot"
    shutil.copy(StateDir(a).snapshot, snap_a)
    shutil.copy(StateDir(b).snapshot, snap_b)
    code, from_files = diff_json(snap_a, snap_b)
    assert code == 1
    assert from_files == from_roots


def test_cli_diff_text_output(roots: tuple[Path, Path]) -> None:
    a, b = roots
    result = run_cli("diff", str(a), str(b))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == len(EXPECTED_CHANGES) + 1
    assert any(line.startswith("only in A") and "data" in line for line in lines)
    assert lines[-1].startswith("5 paths differ; B lacks 1 blobs")


@pytest.mark.parametrize("which", ["a", "b"])
def test_cli_diff_of_a_missing_path_is_one_line_and_exit_2(
    tmp_path: Path, roots: tuple[Path, Path], which: str
) -> None:
    missing = tmp_path / "no-such-thing"
    a, b = roots
    args = (missing, b) if which == "a" else (a, missing)
    result = run_cli("diff", *map(str, args), "--json")
    assert result.returncode == 2
    failure = json.loads(result.stdout)  # --json: the failure as a JSON object too
    assert failure["format"] == 1 and failure["exit_code"] == 2 and str(missing) in failure["error"]
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert str(missing) in result.stderr


def test_cli_diff_of_a_file_that_is_not_a_snapshot(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a snapshot at all, just some bytes" * 4)
    result = run_cli("diff", str(junk), str(junk))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert str(junk) in result.stderr
