"""Early writeback (syncd/apply/writeback.py): a hint to the kernel, never a change to
what is written or when it is durable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syncd.apply import writeback
from syncd.apply.writeback import Writeback, start_writeback


def test_each_file_starts_writeback_of_what_was_written_once_it_is_enough(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[tuple[int, int, int]] = []
    monkeypatch.setattr(writeback, "start_writeback", lambda *span: started.append(span))
    pending = Writeback(every=100)
    pending.wrote("a", 3, 1000, 60)
    pending.wrote("b", 4, 0, 60)
    assert started == []
    pending.wrote("a", 3, 500, 40)  # "a" reaches 100 over 500..1060; "b" counts apart
    assert started == [(3, 500, 1060)]
    pending.wrote("a", 5, 0, 99)  # counted afresh, under its new descriptor
    pending.clear()  # made durable: nothing is owed
    pending.wrote("b", 4, 60, 50)
    assert started == [(3, 500, 1060)]
    pending.wrote("a", 5, 7, 100)
    assert started == [(3, 500, 1060), (5, 7, 107)]


def test_only_whole_pages_are_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """The page a write ended in is left for later: the next append writes it again."""
    calls: list[tuple[int, int, int, int]] = []

    def sync_file_range(fd: int, offset: int, length: int, flags: int) -> int:
        calls.append((fd, offset, length, flags))
        return 0

    monkeypatch.setattr(writeback, "_SYNC_FILE_RANGE", sync_file_range)
    page = writeback._PAGE
    start_writeback(9, 10, page - 1)  # within one page: nothing whole to write
    start_writeback(9, page + 1, 3 * page + 5)
    assert calls == [(9, page, 2 * page, 2)]


def test_starting_writeback_leaves_the_bytes_as_written(tmp_path: Path) -> None:
    path = tmp_path / "file"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, b"x" * 70000, 0)
        start_writeback(fd, 0, 70000)
        os.pwrite(fd, b"y", 69999)
        start_writeback(fd, 0, 70000)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"x" * 69999 + b"y"


def test_a_closed_descriptor_is_no_error() -> None:
    fd = os.open("/", os.O_RDONLY)
    os.close(fd)
    start_writeback(fd, 0, 1 << 20)  # EBADF is ignored: the fsync that follows is what reports
