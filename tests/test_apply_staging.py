"""The staging area (syncd/apply/staging.py): durable, self-verifying, recoverable."""

from __future__ import annotations

import os
from pathlib import Path

import blake3
import pytest

from protocol.tree import FileNode, encode_tree, tree_id
from syncd.apply import Staging, StagingError
from syncd.apply import staging as staging_module
from syncd.state import StateDir


def blob(seed: int, size: int = 1000) -> tuple[bytes, bytes]:
    data = bytes((seed * 7 + i) % 251 for i in range(size))
    return blake3.blake3(data).digest(), data


def open_staging(root: Path) -> Staging:
    root.mkdir(exist_ok=True)
    return Staging.open(StateDir(root))


def packs(root: Path) -> list[Path]:
    return sorted((root / ".syncd" / "staging").glob("pack-*"))


def test_blobs_and_trees_survive_a_reopen(tmp_path: Path) -> None:
    blobs = [blob(i, size) for i, size in enumerate((1, 1000, 70_000))]
    record = encode_tree([FileNode("f", 0o644, 1, 5, ((blobs[0][0], 1),))])
    with open_staging(tmp_path) as staging:
        for digest, data in blobs:
            staging.add_blob(digest, data)
        staging.add_tree(tree_id(record), record)
        staging.flush()
    with open_staging(tmp_path) as staging:
        assert staging.recovery.truncated_bytes == staging.recovery.lost_durable_bytes == 0
        assert (staging.blob_count, staging.blob_bytes) == (3, 71_001)
        for digest, data in blobs:
            assert staging.has_blob(digest) and staging.read_blob(digest) == data
        assert staging.tree_record(tree_id(record)) == record
        assert staging.tree_record(blobs[0][0]) is None  # a blob is not a tree
        assert not staging.has_blob(tree_id(record))


def test_a_blob_is_kept_once(tmp_path: Path) -> None:
    digest, data = blob(1)
    with open_staging(tmp_path) as staging:
        staging.add_blob(digest, data)
        size = packs(tmp_path)[0].stat().st_size
        staging.add_blob(digest, data)
        assert staging.blob_count == 1 and packs(tmp_path)[0].stat().st_size == size


def test_a_torn_tail_is_cut_and_nothing_durable_is_lost(tmp_path: Path) -> None:
    (a, data_a), (b, data_b), (c, data_c) = blob(1), blob(2), blob(3)
    with open_staging(tmp_path) as staging:
        staging.add_blob(a, data_a)
        staging.add_blob(b, data_b)
        staging.flush()
        staging.add_blob(c, data_c)  # never flushed: a crash may tear it
    pack = packs(tmp_path)[0]
    os.truncate(pack, pack.stat().st_size - 10)
    with open_staging(tmp_path) as staging:
        recovery = staging.recovery
        assert recovery.truncated_bytes > 0 and recovery.lost_durable_bytes == 0
        assert staging.has_blob(a) and staging.has_blob(b) and not staging.has_blob(c)
        staging.add_blob(c, data_c)  # the pack is appendable again
    with open_staging(tmp_path) as staging:
        assert staging.recovery.truncated_bytes == 0
        assert staging.read_blob(c) == data_c


def test_garbage_after_the_last_record_is_cut(tmp_path: Path) -> None:
    digest, data = blob(1)
    with open_staging(tmp_path) as staging:
        staging.add_blob(digest, data)
        staging.flush()
    with packs(tmp_path)[0].open("ab") as stream:
        stream.write(b"SYP1" + os.urandom(100))
    with open_staging(tmp_path) as staging:
        assert staging.recovery.truncated_bytes == 104
        assert staging.recovery.lost_durable_bytes == 0
        assert staging.read_blob(digest) == data


def test_damage_inside_what_was_durable_is_reported(tmp_path: Path) -> None:
    (a, data_a), (b, data_b) = blob(1), blob(2)
    with open_staging(tmp_path) as staging:
        staging.add_blob(a, data_a)
        staging.add_blob(b, data_b)
        staging.flush()
    pack = packs(tmp_path)[0]
    with pack.open("r+b") as stream:
        stream.seek(60)  # inside a's data: a's record is skipped, b's kept
        stream.write(b"\xff")
    with open_staging(tmp_path) as staging:
        assert not staging.has_blob(a) and staging.read_blob(b) == data_b
        assert staging.recovery.damaged_records == 1
        assert staging.recovery.lost_durable_bytes == 41 + len(data_a)  # header and data
        staging.add_blob(a, data_a)  # sent again by the next push
    with open_staging(tmp_path) as staging:
        assert staging.read_blob(a) == data_a and staging.read_blob(b) == data_b


def test_reads_are_verified(tmp_path: Path) -> None:
    digest, data = blob(1)
    with open_staging(tmp_path) as staging:
        staging.add_blob(digest, data)
        with packs(tmp_path)[0].open("r+b") as stream:
            stream.seek(100)
            stream.write(b"\x00\x01")
        with pytest.raises(StagingError, match="corrupt"):
            staging.read_blob(digest)
        with pytest.raises(StagingError, match="not staged"):
            staging.read_blob(blob(9)[0])


def test_clear_drops_everything(tmp_path: Path) -> None:
    digest, data = blob(1)
    with open_staging(tmp_path) as staging:
        staging.add_blob(digest, data)
        staging.flush()
        staging.clear()
        assert staging.blob_count == 0 and not staging.has_blob(digest)
        assert packs(tmp_path) == []
        staging.add_blob(digest, data)
    with open_staging(tmp_path) as staging:
        assert staging.has_blob(digest)


def test_packs_roll_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staging_module, "PACK_LIMIT", 3000)
    blobs = [blob(i) for i in range(10)]
    with open_staging(tmp_path) as staging:
        for digest, data in blobs:
            staging.add_blob(digest, data)
    assert len(packs(tmp_path)) == 4
    with open_staging(tmp_path) as staging:
        assert all(staging.read_blob(digest) == data for digest, data in blobs)


def test_digests_sharing_a_prefix_are_told_apart(tmp_path: Path) -> None:
    prefix = bytes(range(8))
    first, second, third = (prefix + bytes([n]) * 24 for n in (1, 2, 3))
    with open_staging(tmp_path) as staging:
        staging.add_blob(first, b"one")  # callers verify; these digests are made up
        staging.add_blob(second, b"two")
        assert staging.has_blob(first) and staging.has_blob(second)
        assert not staging.has_blob(third)
        assert staging.blob_count == 2


def test_staging_must_share_the_root_file_system(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a second file system (/dev/shm) to put the state folder on")
    state = Path(os.path.realpath(shm)) / f"syncd-test-{os.getpid()}"
    try:
        with pytest.raises(StagingError, match="not on the file system"):
            Staging.open(StateDir(tmp_path, state))
    finally:
        for folder in (state / "staging", state):
            if folder.exists():
                folder.rmdir()


def test_each_session_appends_to_packs_of_its_own(tmp_path: Path) -> None:
    """An interrupted session's data sits in packs a later session can drop whole."""
    (a, data_a), (b, data_b) = blob(1), blob(2)
    with open_staging(tmp_path) as staging:
        staging.add_blob(a, data_a)
        staging.flush()
    with open_staging(tmp_path) as staging:
        staging.add_blob(b, data_b)
        staging.flush()
        assert len(packs(tmp_path)) == 2
        old, new = sorted(staging.packs(), key=lambda pack: pack.number)
        assert not old.needed and new.needed  # this session wrote the second one
        assert staging.use_blob(a) and next(p for p in staging.packs() if p.number == 1).needed


def test_an_unneeded_pack_is_dropped_whole_and_not_reported_lost(tmp_path: Path) -> None:
    (a, data_a), (b, data_b) = blob(1), blob(2)
    record = encode_tree([FileNode("f", 0o644, 1, 5, ((a, 1),))])
    with open_staging(tmp_path) as staging:
        staging.add_blob(a, data_a)
        staging.add_tree(tree_id(record), record)
        staging.flush()
    with open_staging(tmp_path) as staging:
        staging.add_blob(b, data_b)
        staging.drop_pack(1)
        assert not staging.has_blob(a) and staging.tree_record(tree_id(record)) is None
        assert (staging.blob_count, staging.blob_bytes, staging.tree_bytes) == (1, 1000, 0)
        with pytest.raises(AssertionError, match="own pack"):
            staging.drop_pack(2)
    with open_staging(tmp_path) as staging:
        assert staging.recovery.lost_durable_bytes == 0
        assert staging.read_blob(b) == data_b and not staging.has_blob(a)


def test_a_pack_kept_by_a_few_shared_records_is_compacted(tmp_path: Path) -> None:
    """The records the current target uses are copied into this session's pack, and the
    old pack goes: a few shared records must not keep an abandoned session's pack."""
    (a, data_a), (b, data_b) = blob(1, 50_000), blob(2, 5000)
    with open_staging(tmp_path) as staging:
        staging.add_blob(a, data_a)
        staging.add_blob(b, data_b)
        staging.flush()
    with open_staging(tmp_path) as staging:
        assert staging.use_blob(b)
        (old,) = staging.packs()
        assert old.needed and not old.own and old.needed_bytes == 41 + 5000
        staging.compact_pack(old.number)
        assert not staging.has_blob(a) and staging.read_blob(b) == data_b
        assert [p.number for p in staging.packs()] == [2]
        assert (staging.blob_count, staging.blob_bytes) == (1, 5000)
    with open_staging(tmp_path) as staging:
        assert staging.recovery.lost_durable_bytes == 0 and staging.read_blob(b) == data_b
