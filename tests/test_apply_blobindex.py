"""Where the live tree holds each piece (syncd/apply/blobindex.py)."""

from __future__ import annotations

from pathlib import Path

import blake3

from protocol.tree import DirNode, FileNode, Node, encode_tree
from syncd.apply import BlobIndex, Location
from syncd.snapshot import SnapshotReader, SnapshotWriter, Summary
from syncd.state import StateDir
from tests.test_apply_support import make_source, source_pieces


def test_every_piece_of_a_sample_tree_is_found_where_it_is(tmp_path: Path) -> None:
    source = make_source(tmp_path / "root", 1)
    with SnapshotReader(StateDir(source.root).snapshot) as snapshot:
        index = BlobIndex.build(snapshot)
    digests = set()
    for _, digest, _ in source_pieces(source):
        digests.add(digest)
        location = index.locate(digest)
        assert location is not None and not location.weak
        with (source.root / location.path).open("rb") as stream:
            stream.seek(location.offset)
            assert blake3.blake3(stream.read(location.length)).digest() == digest
    assert len(index) == len(digests)
    assert not index.has(b"\0" * 32)


def digest(tag: str) -> bytes:
    return tag.encode().ljust(32, b".")


def snapshot_of(path: Path, tree: dict[str, list[tuple[str, int]]]) -> SnapshotReader:
    """A snapshot file of files at '<dir>/<name>' with the given (tag, length) pieces."""
    with path.open("wb") as stream:
        writer = SnapshotWriter(stream)
        dirs: dict[str, list[Node]] = {}
        for file_path, pieces in tree.items():
            folder, _, name = file_path.rpartition("/")
            recipe = tuple((digest(tag), length) for tag, length in pieces)
            size = sum(length for _, length in recipe)
            dirs.setdefault(folder, []).append(FileNode(name, 0o644, size, 1, recipe))
        root: list[Node] = list(dirs.pop("", []))
        for folder, children in sorted(dirs.items()):
            key = writer.add_tree(encode_tree(sorted(children, key=lambda n: n.name)))
            root.append(DirNode(folder, 0o755, key))
        root_id = writer.add_tree(encode_tree(sorted(root, key=lambda n: n.name)))
        writer.finish(Summary(root_id, len(tree), len(dirs), 0, 0, True))
    return SnapshotReader(path)


def test_first_occurrence_wins_and_offsets_add_up(tmp_path: Path) -> None:
    tree = {"a": [("x", 3), ("y", 5)], "b/c": [("y", 5), ("z", 1)]}
    with snapshot_of(tmp_path / "snap", tree) as snapshot:
        index = BlobIndex.build(snapshot)
    assert index.locate(digest("y")) == _loc("a", 3, 5)
    assert index.locate(digest("z")) == _loc("b/c", 5, 1)
    assert len(index) == 3


def test_weak_files_count_only_when_nothing_else_holds_the_piece(tmp_path: Path) -> None:
    tree = {"a": [("x", 3), ("y", 5)], "b/c": [("y", 5), ("z", 1)]}
    with snapshot_of(tmp_path / "snap", tree) as snapshot:
        index = BlobIndex.build(snapshot, weak=lambda path: path == "a")
    assert index.locate(digest("y")) == _loc("b/c", 0, 5)  # the stable copy
    assert index.locate(digest("x")) == _loc("a", 0, 3, weak=True)  # only in "a"


def test_digests_sharing_a_prefix_are_told_apart(tmp_path: Path) -> None:
    tree = {"d/one": [("samepref1", 2)], "d/two": [("samepref2", 4)]}
    with snapshot_of(tmp_path / "snap", tree) as snapshot:
        index = BlobIndex.build(snapshot)
    assert index.locate(digest("samepref2")) == _loc("d/two", 0, 4)
    assert index.locate(digest("samepref1")) == _loc("d/one", 0, 2)
    assert not index.has(digest("samepref3"))


def test_an_index_of_wanted_pieces_holds_only_them_and_their_files(tmp_path: Path) -> None:
    tree = {
        "a/one": [("x", 3), ("y", 5)],
        "b/two": [("z", 2)],
        "d/three": [("w", 1), ("y", 5)],
        "e/four": [("v", 7), ("u", 4)],
    }
    with snapshot_of(tmp_path / "snap", tree) as snapshot:
        index = BlobIndex.build(snapshot, wanted={digest("y"), digest("u"), digest("gone")})
    assert len(index) == 2
    assert index.locate(digest("y")) == _loc("a/one", 3, 5)  # offsets count every piece
    assert index.locate(digest("u")) == _loc("e/four", 7, 4)
    assert not index.has(digest("x")) and not index.has(digest("gone"))
    # Only the files holding a wanted piece, and the folders above them, are numbered.
    assert sorted(index._file_name) == ["four", "one", "three"]
    assert sorted(index._dir_name) == ["", "a", "d", "e"]


def test_an_index_of_no_wanted_piece_does_not_walk_the_tree(tmp_path: Path) -> None:
    with snapshot_of(tmp_path / "snap", {"a/one": [("x", 3)]}) as snapshot:
        snapshot.tree = None  # type: ignore[method-assign,assignment]  # walking would fail
        index = BlobIndex.build(snapshot, wanted=set())
    assert len(index) == 0 and not index.has(digest("x"))


def _loc(path: str, offset: int, length: int, *, weak: bool = False) -> Location:
    return Location(path, offset, length, weak)
