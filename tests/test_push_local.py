"""`syncd push` to a local far root (a `syncd serve` child process, same protocol as SSH)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.pushutil import pull_every_tag, push, snapshot_id, syncd_env


@pytest.fixture
def months(tiny_months: dict[int, Path]) -> dict[int, Path]:
    return tiny_months


def copy_source(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns(".syncd"))
    return dst


@pytest.mark.needs_registry
def test_month_one_then_month_two_make_the_far_tree_equal(
    months: dict[int, Path], tmp_path: Path
) -> None:
    src = copy_source(months[1], tmp_path / "src")
    far = tmp_path / "far"
    first = push(src, str(far))
    assert first["status"] == "applied"
    assert snapshot_id(far) == first["snapshot"] == first["far_after"]
    assert pull_every_tag(far) == {}

    shutil.rmtree(src)
    copy_source(months[2], src)
    second = push(src, str(far))
    assert second["status"] == "applied"
    assert snapshot_id(far) == second["snapshot"]
    # Month 1's extra archives (oc-mirror removed them) are gone on the far side too.
    assert sorted(p.name for p in (far / "content").glob("mirror_*.tar")) == sorted(
        p.name for p in (src / "content").glob("mirror_*.tar")
    )
    assert second["payload_bytes"] < first["payload_bytes"]
    assert pull_every_tag(far) == {}
    # The target snapshot written during the transfer was taken over by the apply.
    assert sorted(p.name for p in (far / ".syncd").glob("apply-target*")) == []


def test_unchanged_tree_is_one_round_trip(months: dict[int, Path], tmp_path: Path) -> None:
    src = copy_source(months[1], tmp_path / "src")
    far = tmp_path / "far"
    push(src, str(far))
    again = push(src, str(far))
    assert again["status"] == "up-to-date"
    assert again["blobs_sent"] == 0 and again["trees_sent"] == 0
    # HELLO+OFFER out, HELLO+STATE+RESULT back, BYE out: a few hundred bytes.
    assert again["wire_bytes_sent"] + again["wire_bytes_received"] < 1024


def test_far_side_reuses_blobs_it_has_elsewhere(months: dict[int, Path], tmp_path: Path) -> None:
    """Pushing the content folder alone after the cache: the archive's layers are the
    cache's data files, so they are not sent again."""
    src = copy_source(months[1], tmp_path / "src")
    content = tmp_path / "content-aside"
    shutil.move(src / "content", content)
    far = tmp_path / "far"
    push(src, str(far))
    shutil.move(content, src / "content")
    second = push(src, str(far))
    archive_bytes = sum(p.stat().st_size for p in (src / "content").glob("mirror_*.tar"))
    cache_data = sum(p.stat().st_size for p in (src / ".oc-mirror").rglob("data"))
    assert second["payload_bytes"] < archive_bytes - cache_data // 2


def test_no_delete_keeps_far_only_files(months: dict[int, Path], tmp_path: Path) -> None:
    src = copy_source(months[1], tmp_path / "src")
    far = tmp_path / "far"
    push(src, str(far))
    (far / "far-only.txt").write_text("keep me")
    push(src, str(far), "--no-delete")
    assert (far / "far-only.txt").read_text() == "keep me"
    push(src, str(far))
    assert not (far / "far-only.txt").exists()
    assert snapshot_id(far) == snapshot_id(src)


def test_interrupted_push_resumes_without_resending(
    months: dict[int, Path], tmp_path: Path
) -> None:
    """Kill the push mid-stream (the far side keeps what arrived, durably), push again:
    only what had not arrived is sent."""
    src = copy_source(months[1], tmp_path / "src")
    (src / "extra").mkdir()
    for i in range(8):
        (src / "extra" / f"blob{i}").write_bytes(os.urandom(1 << 20))
    far = tmp_path / "far"
    command = [
        sys.executable,
        "-m",
        "syncd",
        "push",
        str(src),
        str(far),
        "--json",
        "--bwlimit",
        "2M",
    ]
    child = subprocess.Popen(
        command, env=syncd_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    state = far / ".syncd"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _staged_bytes(state) < 3 << 20:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    time.sleep(0.5)  # the far side notices the end of its input and exits
    staged = _staged_bytes(state)
    assert staged >= 3 << 20
    summary = push(src, str(far))
    assert summary["status"] == "applied"
    total = sum(p.stat().st_size for p in src.rglob("*") if p.is_file() and ".syncd" not in p.parts)
    assert summary["payload_bytes"] <= total - (2 << 20)
    assert snapshot_id(far) == summary["snapshot"]
    assert sorted(p.name for p in state.glob("apply-target*")) == []


def _staged_bytes(state: Path) -> int:
    """Bytes on disk in the staging packs and the files being assembled (which are sparse
    until their pieces arrive, so their allocated blocks count, not their size)."""
    found = [p for folder in ("staging", "incoming") for p in (state / folder).glob("*")]
    return sum(p.stat().st_blocks * 512 for p in found if p.is_file())
