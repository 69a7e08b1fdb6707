"""Early writeback (syncd/apply/writeback.py): a hint to the kernel, never a change to
what is written or when it is durable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syncd.apply import writeback
from syncd.apply.writeback import Writeback, start_writeback


def test_each_file_starts_writeback_once_enough_is_written_to_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[int] = []
    monkeypatch.setattr(writeback, "start_writeback", started.append)
    pending = Writeback(every=100)
    pending.wrote("a", 3, 60)
    pending.wrote("b", 4, 60)
    assert started == []
    pending.wrote("a", 3, 40)  # "a" reaches 100; "b" is counted on its own
    assert started == [3]
    pending.wrote("a", 5, 99)  # counted afresh, under its new descriptor
    pending.clear()  # made durable: nothing is owed
    pending.wrote("b", 4, 50)
    assert started == [3]
    pending.wrote("a", 5, 100)
    assert started == [3, 5]


def test_starting_writeback_leaves_the_bytes_as_written(tmp_path: Path) -> None:
    path = tmp_path / "file"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, b"x" * 70000, 0)
        start_writeback(fd)
        os.pwrite(fd, b"y", 69999)
        start_writeback(fd)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"x" * 69999 + b"y"


def test_a_closed_descriptor_is_no_error() -> None:
    fd = os.open("/", os.O_RDONLY)
    os.close(fd)
    start_writeback(fd)  # EBADF is ignored: the fsync that follows is what reports
