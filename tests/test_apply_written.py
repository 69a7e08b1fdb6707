"""What the check after an apply trusts without reading (syncd/apply/written.py), and
that an apply's check reads none of the files its build wrote."""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path
from typing import Any

import blake3
import pytest

from protocol.tree import Recipe
from syncd.apply import engine
from syncd.apply.written import WrittenFiles
from syncd.scan.hashing import SETTLE_NS
from syncd.state import StateDir
from tests.test_apply_support import make_source, records_of, stage_transfer


def _stat(**changes: int) -> os.stat_result:
    fields = {"st_mode": 0o100644, "st_ino": 7, "st_dev": 3, "st_nlink": 1, "st_uid": 0}
    fields |= {"st_gid": 0, "st_size": 71, "st_atime": 0, "st_mtime": 0, "st_ctime": 0}
    fields |= {"st_mtime_ns": 10, "st_ctime_ns": 20}
    fields |= {f"st_{name}": value for name, value in changes.items()}
    order = ("mode", "ino", "dev", "nlink", "uid", "gid", "size", "atime", "mtime", "ctime")
    head = tuple(fields[f"st_{name}"] for name in order)
    return os.stat_result((*head, 0, 0, 0), {k: v for k, v in fields.items() if "_ns" in k})


ONE: Recipe = ((b"\1" * 32, 71),)
TWO: Recipe = ((b"\2" * 32, 40), (b"\3" * 32, 31))


def test_a_file_is_known_only_by_its_exact_stat() -> None:
    written = WrittenFiles()
    written.add(_stat(), ONE)
    assert written.recipe(_stat()) == ONE
    for change in ({"ino": 8}, {"dev": 4}, {"size": 70}, {"mtime_ns": 11}, {"ctime_ns": 21}):
        assert written.recipe(_stat(**change)) is None, change


def test_empty_and_several_piece_files_and_the_latest_record_of_an_inode() -> None:
    written = WrittenFiles()
    written.add(_stat(ino=1, size=0), ())
    written.add(_stat(ino=2, size=71), TWO)
    written.add(_stat(ino=3), ONE)
    written.add(_stat(ino=3, ctime_ns=99), ((b"\4" * 32, 71),))  # the inode written again
    assert written.recipe(_stat(ino=1, size=0)) == ()
    assert written.recipe(_stat(ino=2, size=71)) == TWO
    assert written.recipe(_stat(ino=2, size=71, ctime_ns=21)) is None
    assert written.recipe(_stat(ino=3, ctime_ns=99)) == ((b"\4" * 32, 71),)
    assert written.recipe(_stat(ino=3)) is None
    assert len(written) == 4 and written.latest_ctime_ns == 99


def test_a_file_on_another_file_system_is_not_recorded() -> None:
    written = WrittenFiles()
    written.add(_stat(dev=1), ONE)
    written.add(_stat(dev=2, ino=9), ONE)
    assert written.recipe(_stat(dev=2, ino=9)) is None
    assert len(written) == 1


def test_memory_per_written_file_is_a_fixed_width_record() -> None:
    """Regression: remembering every written file as path, stat and recipe objects cost
    ~600 bytes a file (a million link files: 600 MB), so small files were read again."""
    count = 50_000
    stats = [_stat(ino=(i * 7919) % count + 1, ctime_ns=i) for i in range(count)]
    tracemalloc.start()
    try:
        written = WrittenFiles()
        for st in stats:
            written.add(st, ONE)
        assert written.recipe(stats[123]) == ONE  # sorted here
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held / count < 80, held / count
    assert peak / count < 130, peak / count  # while the inodes are sorted


def test_the_check_after_an_apply_reads_none_of_the_files_it_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = make_source(tmp_path / "src", 1)
    far = tmp_path / "far"
    far.mkdir()
    staging = stage_transfer(source, far)
    hashed: list[int] = []
    scan_far = engine.scan_far

    def counting(*args: Any, **kwargs: Any) -> Any:
        result = scan_far(*args, **kwargs)
        hashed.append(result.hashed_bytes)
        return result

    monkeypatch.setattr(engine, "scan_far", counting)
    with records_of(source) as snapshot:
        result = engine.apply_target(
            far, StateDir(far), source.id, snapshot.record, staging, delete=True
        )
    assert result.root == source.id and result.files_written > 100
    assert hashed[-1] == 0  # the check: every file trusted by the stat it was written with


def test_a_file_changed_after_the_build_is_read_by_the_check(tmp_path: Path) -> None:
    data = b"x" * 5000
    (tmp_path / "f").write_bytes(data)
    written = WrittenFiles()
    written.add(os.lstat(tmp_path / "f"), ((blake3.blake3(data).digest(), len(data)),))
    time.sleep(SETTLE_NS / 1e9 * 2)  # past the file system's clock tick (hashing.py)
    with open(tmp_path / "f", "r+b") as f:
        f.write(b"y")  # same size, same inode: the ctime moves
    assert written.recipe(os.lstat(tmp_path / "f")) is None
