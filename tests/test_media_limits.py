"""Volumes on media: names and sizes within their limits, and an export that fails part
way leaves nothing behind that could pass for an export."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest

from syncd.media.export import ExportOptions, export
from syncd.media.plan import MediaLimits, VolumePlan, plan_volumes
from syncd.session.pieces import SourceChanged
from tests.mediautil import copy_tree, import_, syncd, volumes_of
from tests.pushutil import snapshot_id

SAFE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]*")


@pytest.fixture(scope="module")
def months(tiny_months: dict[int, Path]) -> dict[int, Path]:
    """The session's TINY months (conftest.py); copied before any change."""
    return tiny_months


def test_small_limits_give_several_volumes_each_within_them(
    months: dict[int, Path], tmp_path: Path
) -> None:
    src = copy_tree(months[2], tmp_path / "src")
    ran = syncd(
        "export", src, "--to", tmp_path / "usb", "--full", "--json",
        "--max-file-size", "200k", "--volume-size", "400k",
    )  # fmt: skip
    assert ran.code == 0, ran.err
    volumes = volumes_of(ran.json)
    assert len(volumes) >= 3
    for volume in volumes:
        files = list(volume.iterdir())
        assert {f.name for f in files} >= {"index", "pack-0001"}
        assert all(f.stat().st_size <= 200_000 for f in files)
        assert sum(f.stat().st_size for f in files) <= 400_000
        names = [volume.parent.name, volume.name, *(f.name for f in files)]
        assert all(SAFE.fullmatch(name) for name in names), names
    assert sorted(p.name for p in volumes) == [f"vol-{n:04d}" for n in range(1, len(volumes) + 1)]
    far = tmp_path / "far"
    assert import_(far, tmp_path / "usb").json["status"] == "applied"  # found under DIR
    assert snapshot_id(far) == snapshot_id(src)


def test_limits_that_cannot_be_met_are_refused_before_writing(
    months: dict[int, Path], tmp_path: Path
) -> None:
    src = copy_tree(months[1], tmp_path / "src")
    ran = syncd("export", src, "--to", tmp_path / "usb", "--max-file-size", "10k")
    assert ran.code == 2 and "--max-file-size" in ran.err
    assert not (tmp_path / "usb").exists() or not any((tmp_path / "usb").iterdir())
    bad = syncd("export", src, "--to", tmp_path / "usb", "--volume-size", "lots")
    assert bad.code == 2 and "--volume-size" in bad.err


def test_a_source_changed_after_the_scan_is_named_and_nothing_is_left(
    months: dict[int, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every file is rewritten (same sizes) between the plan and the writing: the first
    piece copied no longer matches, the file is named, and the partial export goes."""
    src = copy_tree(months[1], tmp_path / "src")

    def plan_then_change(*args: object) -> list[VolumePlan]:
        plans = plan_volumes(*args)  # type: ignore[arg-type]
        for path in src.rglob("*"):
            if path.is_file() and ".syncd" not in path.parts:
                path.write_bytes(b"x" * path.stat().st_size)
        return plans

    monkeypatch.setattr("syncd.media.export.plan_volumes", plan_then_change)
    limits = MediaLimits(volume_size=200_000, max_file_size=100_000)
    with pytest.raises(SourceChanged, match="changed since it was scanned"):
        export(ExportOptions(src=src, to=tmp_path / "usb", limits=limits, full=True))
    assert list((tmp_path / "usb").iterdir()) == []


def test_where_the_kernel_cannot_copy_pieces_are_read_and_written(
    months: dict[int, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """copy_file_range fails with EXDEV between some file systems (onto FAT media): the
    export falls back to reads and writes, with the same result."""
    src = copy_tree(months[1], tmp_path / "src")
    calls = 0

    def cross_device(*args: object) -> int:
        nonlocal calls
        calls += 1
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", cross_device)
    far = tmp_path / "far"
    outcome = export(ExportOptions(src=src, to=tmp_path / "usb", limits=MediaLimits(None)))
    assert calls == 1
    assert import_(far, outcome.folder).json["status"] == "applied"
    assert snapshot_id(far) == snapshot_id(src)
