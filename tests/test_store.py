"""Record files and snapshot files: round trips, collisions, corruption and memory.

A snapshot file is the only description of a tree that outlives a scan, so a damaged one
must fail loudly (SnapshotFileError naming the file, and the tree where one is at fault)
and never read as another tree.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # no stubs in the test deps
import pytest

from protocol.codec import pack
from protocol.paths import join, sort_key
from protocol.tree import DirNode, FileNode, LinkNode, Node, encode_tree, tree_id
from syncd.errors import SnapshotFileError
from syncd.snapshot import MAGIC, SnapshotReader, SnapshotWriter, Summary
from syncd.store.recordfile import (
    FOOTER,
    RecordFileReader,
    RecordFileWriter,
    replace_atomically,
)

TEST_MAGIC = b"SYNCDTST"


def digest(key: int, check: int = 0) -> bytes:
    """A record digest whose sort key is `key` (the first 64 bits) and check `check`."""
    return key.to_bytes(8, "big") + check.to_bytes(8, "big")


def write_records(path: Path, items: list[tuple[int, bytes]], meta: dict[str, object]) -> None:
    with path.open("wb") as out:
        writer = RecordFileWriter(out, TEST_MAGIC)
        for key, record in items:
            writer.add(digest(key), record)
        writer.finish(meta)


def read_all(path: Path, key: int) -> list[bytes]:
    with RecordFileReader(path, TEST_MAGIC) as reader:
        return list(reader.candidates(digest(key)))


# --- record files -------------------------------------------------------------------------


@pytest.mark.parametrize("keep_index", [False, True])
def test_round_trip_of_many_records(tmp_path: Path, keep_index: bool) -> None:
    """5,000 lookups: pages are released every 256, with or without the index."""
    rng = random.Random(7)
    # Enough to cross the writer's 1 MiB flush point several times.
    items = [(rng.getrandbits(64), rng.randbytes(rng.randint(0, 900))) for _ in range(5000)]
    items.append((0, b"smallest key"))
    items.append((2**64 - 1, b"largest key"))
    path = tmp_path / "records"
    write_records(path, items, {"name": "test", "n": len(items)})
    with RecordFileReader(path, TEST_MAGIC, keep_index=keep_index) as reader:
        assert reader.meta == {"name": "test", "n": len(items)}
        assert reader.count == len(items)
        for key, record in items:
            assert list(reader.candidates(digest(key))) == [record]
        assert sorted(reader.records()) == sorted(record for _, record in items)
        assert list(reader.candidates(digest(12345))) == []


def test_empty_record_file(tmp_path: Path) -> None:
    path = tmp_path / "records"
    write_records(path, [], {})
    with RecordFileReader(path, TEST_MAGIC) as reader:
        assert reader.count == 0
        assert list(reader.candidates(digest(0))) == []
        assert list(reader.records()) == []


def test_same_record_twice_is_stored_once(tmp_path: Path) -> None:
    # Equal subtrees give equal records under equal keys: one copy serves all.
    path = tmp_path / "records"
    write_records(path, [(5, b"same"), (9, b"other"), (5, b"same")], {})
    assert read_all(path, 5) == [b"same"]
    with RecordFileReader(path, TEST_MAGIC) as reader:
        assert reader.count == 2


def test_key_collisions_return_every_record(tmp_path: Path) -> None:
    # 64-bit keys collide; the reader must hand back all records under the key and let the
    # caller pick its own.
    path = tmp_path / "records"
    write_records(path, [(5, b"first"), (4, b"x"), (5, b"second!"), (6, b"y")], {})
    assert sorted(read_all(path, 5)) == [b"first", b"second!"]


def test_key_collision_with_equal_lengths_keeps_both(tmp_path: Path) -> None:
    # Same 64-bit sort key and length, different check: two records, both kept.
    path = tmp_path / "records"
    with path.open("wb") as out:
        writer = RecordFileWriter(out, TEST_MAGIC)
        writer.add(digest(5, 1), b"aaaa")
        writer.add(digest(5, 2), b"bbbb")
        writer.finish({})
    with RecordFileReader(path, TEST_MAGIC) as reader:
        assert list(reader.candidates(digest(5, 1))) == [b"aaaa"]
        assert list(reader.candidates(digest(5, 2))) == [b"bbbb"]


def test_magic_must_be_eight_bytes(tmp_path: Path) -> None:
    with (tmp_path / "x").open("wb") as out, pytest.raises(ValueError, match="8 bytes"):
        RecordFileWriter(out, b"SHORT")


def test_replace_atomically_moves_the_file(tmp_path: Path) -> None:
    tmp, final = tmp_path / "f.tmp", tmp_path / "f"
    final.write_bytes(b"old")
    tmp.write_bytes(b"new")
    replace_atomically(tmp, final)
    assert final.read_bytes() == b"new"
    assert not tmp.exists()


# --- damaged record files -----------------------------------------------------------------


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    path = tmp_path / "records"
    write_records(path, [(1, b"one"), (2, b"two")], {"k": "v"})
    return path


def expect_error(path: Path, *fragments: str) -> None:
    with pytest.raises(SnapshotFileError) as info:
        RecordFileReader(path, TEST_MAGIC).close()
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def patched(path: Path, at: int, data: bytes) -> None:
    content = bytearray(path.read_bytes())
    content[at : at + len(data)] = data
    path.write_bytes(bytes(content))


def test_wrong_magic(good_file: Path) -> None:
    patched(good_file, 0, b"SYNCDXXX")
    expect_error(good_file, "not a syncd")


def test_other_kind_of_record_file(good_file: Path) -> None:
    # A stat cache or any other record file is not a snapshot.
    with pytest.raises(SnapshotFileError, match="not a syncd"):
        RecordFileReader(good_file, MAGIC)


def test_end_magic_damaged(good_file: Path) -> None:
    size = good_file.stat().st_size
    patched(good_file, size - 8, b"SYNCDEN!")
    expect_error(good_file, "bad footer")


@pytest.mark.parametrize("field", [0, 1, 2], ids=["index_offset", "count", "meta_offset"])
def test_footer_numbers_damaged(good_file: Path, field: int) -> None:
    # Each footer number must agree with the others and with the file's size.
    size = good_file.stat().st_size
    footer = list(FOOTER.unpack(good_file.read_bytes()[-FOOTER.size :]))
    footer[field] += 1
    patched(good_file, size - FOOTER.size, FOOTER.pack(*footer))
    expect_error(good_file, "bad footer")


def test_huge_count_in_footer(good_file: Path) -> None:
    # A count that would index far past the end is refused before any column is read.
    size = good_file.stat().st_size
    index_offset, _, meta_offset, end = FOOTER.unpack(good_file.read_bytes()[-FOOTER.size :])
    patched(good_file, size - FOOTER.size, FOOTER.pack(index_offset, 2**60, meta_offset, end))
    expect_error(good_file, "bad footer")


@pytest.mark.parametrize("keep", [0, 5, 8, 20, 40, -1], ids=lambda k: f"keep {k}")
def test_truncated_file(good_file: Path, keep: int) -> None:
    data = good_file.read_bytes()
    good_file.write_bytes(data[:keep])
    expect_error(good_file)


def test_bad_meta_bytes(good_file: Path) -> None:
    data = good_file.read_bytes()
    _, _, meta_offset, _ = FOOTER.unpack(data[-FOOTER.size :])
    patched(good_file, meta_offset, b"\xc1")  # never valid msgpack
    expect_error(good_file, "corrupt metadata")


def test_meta_that_is_not_a_map(tmp_path: Path) -> None:
    path = tmp_path / "records"
    write_records(path, [(1, b"one")], {})
    data = bytearray(path.read_bytes())
    _, _, meta_offset, _ = FOOTER.unpack(data[-FOOTER.size :])
    assert data[meta_offset : len(data) - FOOTER.size] == pack({})
    data[meta_offset] = 0x90  # an empty array instead of an empty map
    path.write_bytes(bytes(data))
    expect_error(path, "corrupt metadata")


def test_missing_file(tmp_path: Path) -> None:
    expect_error(tmp_path / "nope", "cannot read")


def test_a_directory_is_not_a_record_file(tmp_path: Path) -> None:
    expect_error(tmp_path, "cannot read")


def test_index_entry_pointing_past_the_records(good_file: Path) -> None:
    data = good_file.read_bytes()
    index_offset, count, _, _ = FOOTER.unpack(data[-FOOTER.size :])
    lengths_at = index_offset + 16 * count
    patched(good_file, lengths_at, (2**31).to_bytes(4, "little"))
    with (
        RecordFileReader(good_file, TEST_MAGIC) as reader,
        pytest.raises(SnapshotFileError) as info,
    ):
        list(reader.records())
    assert str(good_file) in str(info.value)
    assert "corrupt index entry" in str(info.value)


# --- snapshots ----------------------------------------------------------------------------


# A tree as nested dicts: dict = directory, bytes = file content marker, str = link target.
Spec = dict[str, "Spec | bytes | str"]
SAMPLE: Spec = {
    "a": {"b": {"c.txt": b"1", "d": {}}, "link": "b/c.txt"},
    "a.b": b"2",
    "a0": {"x": b"3", "y": {"z": b"4"}},
    "\u00e9t\u00e9": {"caf\u00e9": b"5"},
    "empty": {},
    "same1": {"f": b"6"},
    "same2": {"f": b"6"},  # an equal subtree: one record, reached twice
}


def add_spec(writer: SnapshotWriter, spec: Spec, paths: list[str], prefix: str = "") -> bytes:
    """Write the records of `spec` bottom-up, as a scan does; return the root id."""
    children: list[Node] = []
    for name in sorted(spec, key=str.encode):
        value = spec[name]
        path = join(prefix, name)
        paths.append(path)
        if isinstance(value, dict):
            children.append(DirNode(name, 0o755, add_spec(writer, value, paths, path)))
        elif isinstance(value, bytes):
            children.append(FileNode(name, 0o644, 1, 7, ((value * 32, 1),)))
        else:
            children.append(LinkNode(name, value))
    return writer.add_tree(encode_tree(children))


def write_snapshot(path: Path, spec: Spec) -> tuple[bytes, list[str]]:
    paths: list[str] = []
    with path.open("wb") as out:
        writer = SnapshotWriter(out)
        root = add_spec(writer, spec, paths)
        writer.finish(Summary(root, 0, 0, 0, 0, complete=True))
    return root, paths


@pytest.fixture
def snapshot(tmp_path: Path) -> Iterator[tuple[Path, bytes, list[str]]]:
    path = tmp_path / "snapshot"
    root, paths = write_snapshot(path, SAMPLE)
    yield path, root, paths


def test_snapshot_round_trip(snapshot: tuple[Path, bytes, list[str]]) -> None:
    path, root, _ = snapshot
    with SnapshotReader(path) as reader:
        assert reader.root == root
        assert reader.summary.complete
        names = [node.name for node in reader.tree(root)]
        assert names == ["a", "a.b", "a0", "empty", "same1", "same2", "\u00e9t\u00e9"]
        record = reader.record(root)
        assert record is not None
        assert tree_id(record) == root
        assert reader.record(b"\x00" * 32) is None


def test_walk_is_depth_first_in_name_order_and_complete(
    snapshot: tuple[Path, bytes, list[str]],
) -> None:
    path, _, paths = snapshot
    with SnapshotReader(path) as reader:
        walked = [p for p, _ in reader.walk()]
    # Every entry exactly once (both copies of the shared subtree), empty dirs included.
    assert sorted(walked) == sorted(paths)
    assert len(walked) == len(set(walked))
    # Depth-first: a directory's subtree comes right after it, before its next sibling.
    assert walked == sorted(walked, key=sort_key)
    assert walked.index("a/link") < walked.index("a.b")
    assert "same2/f" in walked
    assert "empty" in walked


def test_walk_from_a_subtree_with_a_prefix(snapshot: tuple[Path, bytes, list[str]]) -> None:
    path, root, _ = snapshot
    with SnapshotReader(path) as reader:
        a0 = next(node for node in reader.tree(root) if node.name == "a0")
        assert isinstance(a0, DirNode)
        assert [p for p, _ in reader.walk(a0.tree, "a0")] == ["a0/x", "a0/y", "a0/y/z"]


def test_equal_subtrees_are_stored_once(snapshot: tuple[Path, bytes, list[str]]) -> None:
    path, _, _ = snapshot
    with RecordFileReader(path, MAGIC) as reader:
        # 10 directories in SAMPLE (root included): 'same1'/'same2' share one record and
        # so do the two empty directories ('empty', 'a/b/d').
        assert reader.count == 8


def _record_span(path: Path, record: bytes) -> int:
    data = path.read_bytes()
    at = data.find(record)
    assert at > 0
    assert data.find(record, at + 1) == -1
    return at


@pytest.mark.parametrize("where", ["root", "subtree"])
@pytest.mark.parametrize("offset", [0, 1, -1], ids=["first byte", "second byte", "last byte"])
def test_flipped_byte_in_a_tree_is_an_error_never_another_tree(
    snapshot: tuple[Path, bytes, list[str]], where: str, offset: int
) -> None:
    path, root, _ = snapshot
    with SnapshotReader(path) as reader:
        target = root
        if where == "subtree":
            node = next(node for node in reader.tree(root) if node.name == "a0")
            assert isinstance(node, DirNode)
            target = node.tree
        record = reader.record(target)
        assert record is not None
    at = _record_span(path, record) + (offset % len(record))
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    with SnapshotReader(path) as reader:
        assert reader.record(target) is None
        with pytest.raises(SnapshotFileError) as info:
            reader.tree(target)
        assert target.hex() in str(info.value)
        assert str(path) in str(info.value)
        # A walk over the damaged tree stops with the same error instead of going on.
        with pytest.raises(SnapshotFileError):
            list(reader.walk())


def test_missing_tree_is_named(snapshot: tuple[Path, bytes, list[str]]) -> None:
    path, _, _ = snapshot
    absent = b"\x42" * 32
    with SnapshotReader(path) as reader, pytest.raises(SnapshotFileError) as info:
        reader.tree(absent)
    assert absent.hex() in str(info.value)


def test_record_under_its_id_that_does_not_decode(tmp_path: Path) -> None:
    # A record whose hash matches but is not a valid tree (a writer bug, not bit rot):
    # reported with the tree id, not as a ProtocolError from deep inside.
    path = tmp_path / "snapshot"
    bad = pack([["a/b", 2, "x"]])
    with path.open("wb") as out:
        writer = SnapshotWriter(out)
        key = writer.add_tree(bad)
        writer.finish(Summary(key, 0, 0, 0, 0, complete=True))
    with SnapshotReader(path) as reader, pytest.raises(SnapshotFileError) as info:
        reader.tree(key)
    assert key.hex() in str(info.value)


def _snapshot_with_meta(path: Path, meta: dict[str, object]) -> None:
    with path.open("wb") as out:
        writer = RecordFileWriter(out, MAGIC)
        writer.add(tree_id(b"\x90"), b"\x90")
        writer.finish(meta)


GOOD_META = Summary(tree_id(b"\x90"), 1, 2, 3, 4, complete=False).as_meta()


@pytest.mark.parametrize(
    "meta",
    [
        {},
        {**GOOD_META, "format": 999},
        {**GOOD_META, "chunk": 1024},
        {**GOOD_META, "root": b"\x00" * 31},
        {**GOOD_META, "root": "not bytes"},
        {k: v for k, v in GOOD_META.items() if k != "files"},
        {**GOOD_META, "files": [1]},
        {**GOOD_META, "bytes": "many"},
    ],
    ids=[
        "empty",
        "unknown format",
        "other piece size",
        "short root",
        "str root",
        "no files",
        "files list",
        "bytes str",
    ],
)
def test_bad_snapshot_summary(tmp_path: Path, meta: dict[str, object]) -> None:
    path = tmp_path / "snapshot"
    _snapshot_with_meta(path, meta)
    with pytest.raises(SnapshotFileError) as info:
        SnapshotReader(path)
    assert str(path) in str(info.value)


def test_good_snapshot_summary(tmp_path: Path) -> None:
    path = tmp_path / "snapshot"
    _snapshot_with_meta(path, GOOD_META)
    with SnapshotReader(path) as reader:
        assert reader.summary == Summary(tree_id(b"\x90"), 1, 2, 3, 4, complete=False)
        assert reader.tree(reader.root) == []


# --- memory -------------------------------------------------------------------------------


class PeakRss:
    """Highest RSS of this process seen while the block runs (sampled by a thread)."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.start = 0
        self.peak = 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self._stop.wait(0.002)

    def __enter__(self) -> PeakRss:
        self.start = self.peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.start


def test_writing_300k_records_keeps_memory_small(tmp_path: Path) -> None:
    # The writer keeps 20 bytes of index per record and streams the records themselves
    # to the file: 300k records of 48 bytes (14 MB of records) must not be held in memory.
    # 40 MB is a loose bound that still catches buffering the records or a dict per entry.
    rng = random.Random(3)
    path = tmp_path / "big"
    with PeakRss() as rss, path.open("wb") as out:
        writer = RecordFileWriter(out, TEST_MAGIC)
        for i in range(300_000):
            writer.add(rng.randbytes(16), i.to_bytes(8, "little") * 6)
        writer.finish({"n": 300_000})
    assert rss.growth < 40 * 1024 * 1024, f"RSS grew by {rss.growth / 1e6:.1f} MB"
    with RecordFileReader(path, TEST_MAGIC) as reader:
        assert reader.count == 300_000
