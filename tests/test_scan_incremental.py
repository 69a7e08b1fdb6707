"""Rescans read only what changed, and never record bytes that changed while read."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import blake3
import pytest

from protocol.limits import CHUNK_SIZE
from syncd.apply.written import WrittenFiles
from syncd.scan import hashing, scanner
from syncd.scan.api import scan_root
from syncd.scan.hashing import SETTLE_NS
from syncd.state import StateDir
from tests import stallwrite
from tests.scanutil import files, scan, set_mtimes


def make_tree(root: Path, n: int = 50) -> None:
    for i in range(n):
        path = root / f"d{i % 5}" / f"f{i:03}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(1000 + i))
    (root / "big").write_bytes(os.urandom(CHUNK_SIZE + 5))
    set_mtimes(root)


def test_unchanged_tree_hashes_nothing(tmp_path: Path) -> None:
    make_tree(tmp_path)
    first = scan(tmp_path)
    assert first.hashed_bytes == first.summary.bytes > 0
    second = scan(tmp_path)
    assert second.hashed_bytes == 0
    assert second.summary == first.summary


def test_touching_one_file_rehashes_only_that_file(tmp_path: Path) -> None:
    make_tree(tmp_path)
    first = scan(tmp_path)
    target = tmp_path / "d3" / "f013"
    target.write_bytes(b"new content")
    result = scan(tmp_path)
    assert result.hashed_bytes == len(b"new content")
    assert result.summary.root != first.summary.root
    assert scan(tmp_path).hashed_bytes == 0


def test_restored_mtime_does_not_hide_a_change(tmp_path: Path) -> None:
    make_tree(tmp_path)
    scan(tmp_path)
    target = tmp_path / "d1" / "f001"
    before = target.stat()
    size = before.st_size
    target.write_bytes(b"x" * size)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))  # only ctime tells now
    assert target.stat().st_mtime_ns == before.st_mtime_ns
    assert scan(tmp_path).hashed_bytes == size
    assert files(tmp_path)["d1/f001"].recipe[0][0] == blake3.blake3(b"x" * size).digest()


@pytest.mark.parametrize("change", ["add", "remove", "rename", "file-to-dir"])
def test_changed_directories_are_listed_again(tmp_path: Path, change: str) -> None:
    make_tree(tmp_path)
    scan(tmp_path)
    time.sleep(0.05)  # let the directories' ctimes settle so the cache trusts them
    scan(tmp_path)
    d = tmp_path / "d2"
    if change == "add":
        (d / "new").write_bytes(b"n")
    elif change == "remove":
        (d / "f002").unlink()
    elif change == "rename":
        (d / "f002").rename(d / "g002")
    else:
        (d / "f002").unlink()
        (d / "f002").mkdir()
    rescan = {p: n.recipe for p, n in files(tmp_path).items()} if scan(tmp_path) else {}
    os.rename(tmp_path / ".syncd", tmp_path.parent / f"{tmp_path.name}-state")
    cold = {p: n.recipe for p, n in files(tmp_path).items()} if scan(tmp_path) else {}
    assert rescan == cold


def test_unchanged_subtrees_beside_a_change_deep_down(tmp_path: Path) -> None:
    """Subtrees settled by their stat records, beside and above one changed file, give
    the cold scan's snapshot, counts and warnings, and hash only the changed file."""
    for a in "abc":
        for b in "xyz":
            leaf = tmp_path / a / b / "deep"
            leaf.mkdir(parents=True)
            (leaf / "f").write_bytes(f"{a}{b}".encode() * 100)
            (tmp_path / a / b / "g").write_bytes(b"g" * 50)
            os.symlink("deep/f", tmp_path / a / b / "link")
    for where in ("a/z/deep", "a/z", "b/x", "b/y/deep", "c"):  # warnings said on each scan
        (tmp_path / where / "fake.tar").write_bytes(b"not a tar" * 100)
    set_mtimes(tmp_path)
    scan(tmp_path)
    time.sleep(0.05)  # let the directories' ctimes settle so the cache trusts them
    assert scan(tmp_path).hashed_bytes == 0
    (tmp_path / "b" / "y" / "deep" / "f").write_bytes(b"changed" * 9)
    rescan = scan(tmp_path)
    assert rescan.hashed_bytes == 63
    cold_state = tmp_path.parent / "cold-state"
    cold = scan_root(tmp_path, StateDir(tmp_path, cold_state))
    assert rescan.summary == cold.summary
    for name in ("snapshot", "statcache"):  # each record written once, as a cold scan does
        assert (tmp_path / ".syncd" / name).stat().st_size == (cold_state / name).stat().st_size
    assert len(cold.problems) == 5
    assert [str(p) for p in rescan.problems] == [str(p) for p in cold.problems]
    before = _state_stats(tmp_path)
    again = scan(tmp_path)  # the records copied beside the change settle it all
    assert (again.hashed_bytes, again.summary) == (0, cold.summary)
    assert [str(p) for p in again.problems] == [str(p) for p in cold.problems]
    assert _state_stats(tmp_path) == before


def _state_stats(root: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of the state folder and of each file in it but the lock (whose
    holder is written at each scan)."""
    state = root / ".syncd"
    found = {p.name: p.stat() for p in state.iterdir() if p.name != "lock"}
    found["."] = state.stat()
    return {name: (st.st_ino, st.st_mtime_ns) for name, st in found.items()}


def test_a_rescan_that_finds_nothing_changed_writes_nothing(tmp_path: Path) -> None:
    """Not even a temporary file: at 1M files the records it would copy are ~780 MB."""
    make_tree(tmp_path)
    (tmp_path / "d1" / "fake.tar").write_bytes(b"not a tar" * 100)
    first = scan(tmp_path)
    time.sleep(0.05)  # let the directories' ctimes settle so the cache trusts them
    scan(tmp_path)
    before = _state_stats(tmp_path)
    again = scan(tmp_path)
    assert (again.hashed_bytes, again.summary) == (0, first.summary)
    assert [str(p) for p in again.problems] == [str(p) for p in first.problems]
    assert _state_stats(tmp_path) == before


def test_a_lost_snapshot_is_written_again_with_each_warning_said_once(tmp_path: Path) -> None:
    make_tree(tmp_path)
    (tmp_path / "d1" / "fake.tar").write_bytes(b"not a tar" * 100)
    first = scan(tmp_path)
    recipes = {path: node.recipe for path, node in files(tmp_path).items()}
    time.sleep(0.05)
    scan(tmp_path)
    (tmp_path / ".syncd" / "snapshot").unlink()
    again = scan(tmp_path)
    assert (again.hashed_bytes, again.summary) == (0, first.summary)
    assert [str(p) for p in again.problems] == [str(p) for p in first.problems]
    assert {path: node.recipe for path, node in files(tmp_path).items()} == recipes
    assert scan(tmp_path).hashed_bytes == 0


def test_file_changing_during_hashing_is_rehashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"a" * 100_000)
    real = hashing._hash_fd
    calls: list[int] = []

    def hash_then_modify(fd: int, start: int, lengths: list[int]) -> list[bytes]:
        digests = real(fd, start, lengths)
        if not calls:
            target.write_bytes(b"b" * 100_000)  # lands between the read and the final fstat
        calls.append(1)
        return digests

    monkeypatch.setattr(hashing, "_hash_fd", hash_then_modify)
    result = scan(tmp_path)
    assert len(calls) >= 2
    assert result.problems == []
    assert files(tmp_path)["f"].recipe == ((blake3.blake3(b"b" * 100_000).digest(), 100_000),)


def test_write_in_progress_is_caught_by_reading_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that began before our stat changes no ctime while it copies: the two
    reads of a recently changed file disagree, and the file is read again."""
    target = tmp_path / "f"
    target.write_bytes(b"a" * 1000)
    real = hashing._hash_fd
    calls: list[int] = []

    def torn_first_read(fd: int, start: int, lengths: list[int]) -> list[bytes]:
        calls.append(1)
        return [b"\0" * 32] if len(calls) == 1 else real(fd, start, lengths)

    monkeypatch.setattr(hashing, "_hash_fd", torn_first_read)
    result = scan(tmp_path)
    assert result.problems == []
    assert len(calls) >= 4  # torn + good, then two agreeing reads on the retry
    assert files(tmp_path)["f"].recipe == ((blake3.blake3(b"a" * 1000).digest(), 1000),)


def test_file_that_never_settles_is_reported_not_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"a" * 1000)
    real = hashing._hash_fd

    def always_modify(fd: int, start: int, lengths: list[int]) -> list[bytes]:
        digests = real(fd, start, lengths)
        target.write_bytes(os.urandom(1000))
        return digests

    monkeypatch.setattr(hashing, "_hash_fd", always_modify)
    result = scan(tmp_path)
    assert [p.path for p in result.problems] == ["f"]
    assert "kept changing" in result.problems[0].message
    assert "f" not in files(tmp_path)
    assert not result.summary.complete


def test_concurrent_writer_never_yields_a_torn_recipe(tmp_path: Path) -> None:
    """A real writer rewrites a file in place, in two halves, while we scan again and again."""
    target = tmp_path / "f"
    size = 6 * (1 << 20)
    half = size // 2
    versions = [bytes([v]) * size for v in range(8)]
    # States the file really passes through: version v, or v's first half over v-1.
    states = versions + [versions[v][:half] + versions[v - 1][half:] for v in range(8)]
    valid = {tuple(d for d, _ in recipe_of(state)) for state in states}
    target.write_bytes(versions[0])
    stop = threading.Event()

    def writer() -> None:
        v = 0
        fd = os.open(target, os.O_WRONLY)
        try:
            while not stop.is_set():
                v = (v + 1) % len(versions)
                os.pwrite(fd, versions[v][:half], 0)
                time.sleep(0.0005)
                os.pwrite(fd, versions[v][half:], half)
        finally:
            os.close(fd)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(20):
            result = scan(tmp_path)
            recorded = files(tmp_path).get("f")
            if recorded is None:
                assert not result.summary.complete
            else:
                assert tuple(d for d, _ in recorded.recipe) in valid
    finally:
        stop.set()
        thread.join()


def test_a_write_stalled_half_way_is_waited_for(tmp_path: Path) -> None:
    """The flake of the test above, made certain: a write() paused mid-copy in the kernel
    (throttled by write-back, descheduled) began before the walk's stat, so the stat never
    moves, and both reads of a hot file see the same torn bytes. The scan must wait for
    the write to end, never record the torn state."""
    target = tmp_path / "f"
    size = 2 << 20
    target.write_bytes(b"A" * size)
    fd = os.open(target, os.O_WRONLY)
    try:
        stalled = stallwrite.StalledWrite(fd, b"B" * size)
    except stallwrite.Unavailable as exc:
        os.close(fd)
        pytest.skip(str(exc))
    try:
        for _ in range(3000):  # until the first half is in (the rest waits)
            if target.read_bytes()[:1] == b"B":
                break
            time.sleep(0.01)
        else:
            stalled.release()
            pytest.fail("the stalled write never began")
        release = threading.Timer(0.5, stalled.release)
        release.start()
        scan(tmp_path)
        release.join()
    finally:
        os.close(fd)
    assert files(tmp_path)["f"].recipe == tuple(recipe_of(b"B" * size))


def recipe_of(data: bytes) -> list[tuple[bytes, int]]:
    pieces = [data[i : i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE)]
    return [(blake3.blake3(p).digest(), len(p)) for p in pieces]


def test_known_files_are_trusted_only_with_their_exact_settled_stat(tmp_path: Path) -> None:
    """ScanOptions.known (what an apply just wrote) spares reading those bytes, but only
    for the stat it names and once the ctime is settled: a later write is still seen."""
    (tmp_path / "a").write_bytes(b"A" * 5000)
    (tmp_path / "b").write_bytes(b"B" * 7000)
    time.sleep(SETTLE_NS / 1e9 * 2)
    recipe_a = ((blake3.blake3(b"A" * 5000).digest(), 5000),)
    known = WrittenFiles()
    known.add(os.lstat(tmp_path / "a"), recipe_a)
    known.add(os.lstat(tmp_path / "b"), ((blake3.blake3(b"B" * 7000).digest(), 7000),))
    time.sleep(SETTLE_NS / 1e9 * 2)  # the rewrite below gets a ctime of its own
    (tmp_path / "b").write_bytes(b"C" * 7000)  # written after the hint was taken
    time.sleep(SETTLE_NS / 1e9 * 2)
    result = scan(tmp_path, known=known)
    assert result.hashed_bytes == 7000  # only b, whose hint no longer matches
    found = files(tmp_path)
    assert found["a"].recipe == recipe_a
    assert found["b"].recipe == ((blake3.blake3(b"C" * 7000).digest(), 7000),)


def test_known_files_with_a_fresh_ctime_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fresh means within the file system's tick of now; an hour-long tick keeps this ctime
    # fresh however long a loaded machine takes to reach the scan.
    monkeypatch.setattr(scanner, "SETTLE_NS", 3600 * 10**9)
    data = b"fresh" * 1000
    (tmp_path / "f").write_bytes(data)
    known = WrittenFiles()
    known.add(os.lstat(tmp_path / "f"), ((b"\0" * 32, len(data)),))
    result = scan(tmp_path, known=known)
    assert result.hashed_bytes == len(data)
    assert files(tmp_path)["f"].recipe == ((blake3.blake3(data).digest(), len(data)),)


def test_a_subtree_replaced_after_the_check_is_not_taken_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check that nothing changed runs before the walk: a directory it found settled
    and that is replaced before the walk reaches it is read again, not copied."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "f").write_bytes(name.encode() * 10)
    scan(tmp_path)
    time.sleep(0.05)  # let the directories' ctimes settle so the cache trusts them
    scan(tmp_path)
    (tmp_path / "b" / "f").write_bytes(b"changed")
    walk = scanner.Scanner.run

    def replace_a_first(self: scanner.Scanner, out: scanner.Writers) -> object:
        shutil.rmtree(tmp_path / "a")
        (tmp_path / "a").mkdir()
        (tmp_path / "a" / "g").write_bytes(b"a new directory")
        return walk(self, out)

    monkeypatch.setattr(scanner.Scanner, "run", replace_a_first)
    rescan = scan(tmp_path)
    monkeypatch.undo()
    cold_state = tmp_path.parent / "cold-state"
    cold = scan_root(tmp_path, StateDir(tmp_path, cold_state))
    assert rescan.summary == cold.summary
    for name in ("snapshot", "statcache"):  # no orphaned records of the old `a` either
        assert (tmp_path / ".syncd" / name).stat().st_size == (cold_state / name).stat().st_size


def test_a_killed_scans_temporary_files_are_removed_by_the_next(tmp_path: Path) -> None:
    make_tree(tmp_path)
    scan(tmp_path)
    time.sleep(0.05)
    scan(tmp_path)
    for name in ("snapshot.tmp", "statcache.tmp"):
        (tmp_path / ".syncd" / name).write_bytes(b"half written" * 1000)
    assert scan(tmp_path).hashed_bytes == 0  # a rescan that finds nothing changed
    assert sorted(p.name for p in (tmp_path / ".syncd").iterdir()) == [
        "lock",
        "snapshot",
        "statcache",
    ]
