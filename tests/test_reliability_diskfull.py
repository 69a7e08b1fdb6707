"""CI's slice of the disk-full campaign (reliability/diskfull.py), and the far side's scan
on a full disk: a clean error naming it, never a traceback."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from reliability import diskfull
from reliability.campaign import Context
from reliability.farside import (
    copy_far,
    far_at_month1,
    make_months,
    month2_volumes,
    run_syncd,
    write_tar,
)
from tests.pushutil import snapshot_id
from tests.test_apply_support import copy_tree, fill, small_tmpfs

SEED = 20261125


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "probe", 1 << 20) as probe:
        if probe is None:
            pytest.skip("cannot mount a small tmpfs here (mounting needs root)")
    yield tmp_path


def test_quick_slice(mount: Path) -> None:
    outcome = diskfull.run(Context(SEED, mount, quick=True))
    assert outcome.ok, outcome.failures or outcome.figures


def test_far_scan_on_a_full_disk_is_a_clean_error(mount: Path) -> None:
    """Regression: the far side's own scan (serve, import, receipt) let the OSError of a
    full disk escape as a traceback (import exited 1, 'something missing')."""
    months = make_months(mount / "sources")
    base = far_at_month1(months, mount / "base")
    volumes = month2_volumes(months, base, mount)
    with small_tmpfs(mount / "far-fs", diskfull.SIZE) as far_fs:
        assert far_fs is not None
        far = copy_far(base, far_fs / "far")
        ballast = fill(far_fs, 16 << 10)
        commands: list[tuple[str | Path, ...]] = [
            ("push", months.two.root, far),
            ("import", *volumes, "--root", far),
            ("receipt", "--root", far, "--to", mount / "r2"),
        ]
        for command in commands:
            done = run_syncd(*command)
            assert done.returncode == 2, (command[0], done.stderr)
            assert "no space left" in done.stderr and "Traceback" not in done.stderr, done.stderr
        ballast.unlink()


def test_import_onto_a_small_file_system_then_grown(mount: Path) -> None:
    """Issue 14 item 1: import onto a 15 MB file system ended in a traceback (OSError 28,
    exit 1); after the disk filled, `import --status` claimed a damaged volume and that
    the next import would finish it, and neither was true. Now: refused up front naming
    the shortfall, the status tells the truth, and once the file system is grown the same
    command completes."""
    months = make_months(mount / "sources")
    base = far_at_month1(months, mount / "base")
    big = mount / "big"
    copy_tree(months.two.root, big)
    write_tar(big / "bulk" / "extra.tar", [bytes([n]) * 90_000 for n in range(150)])
    media = mount / "media"
    receipt = mount / "receipt"
    assert run_syncd("receipt", "--root", base, "--to", receipt).returncode == 0
    done = run_syncd("export", big, "--to", media, "--receipt", receipt)
    assert done.returncode == 0, done.stderr
    with small_tmpfs(mount / "far-fs", 15 << 20) as far_fs:
        assert far_fs is not None
        far = copy_far(base, far_fs / "far")
        done = run_syncd("import", media, "--root", far)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert "not enough space" in done.stderr and "short" in done.stderr, done.stderr
        status = run_syncd("import", "--status", "--root", far)
        assert "damaged" not in status.stdout and "interrupted" not in status.stdout
        grown = subprocess.run(["mount", "-o", "remount,size=64m", str(far_fs)], check=False)
        assert grown.returncode == 0
        done = run_syncd("import", media, "--root", far)
        assert done.returncode == 0, done.stderr
        assert snapshot_id(far) == snapshot_id(big)


def test_import_status_on_a_full_disk_answers_from_the_last_scan(mount: Path) -> None:
    """`import --status` is asked when an import stopped for want of space; its scan
    could not write its snapshot then and it failed ('no space left while scanning').
    It now answers from the root's last saved scan, and says so."""
    months = make_months(mount / "sources")
    media = mount / "media"
    done = run_syncd("export", months.one.root, "--to", media, "--full", "--volume-size", "300K")
    assert done.returncode == 0, done.stderr
    volumes = sorted(media.glob("*/vol-*"))
    assert len(volumes) >= 2
    with small_tmpfs(mount / "far-fs", 32 << 20) as far_fs:
        assert far_fs is not None
        far = far_fs / "far"
        far.mkdir()
        done = run_syncd("import", volumes[0], "--root", far)
        assert done.returncode == 1, done.stderr  # staged, volumes still missing
        ballast = fill(far_fs, 0)
        status = run_syncd("import", "--status", "--root", far)
        assert status.returncode == 1 and "Traceback" not in status.stderr, status.stderr
        assert "not scanned afresh" in status.stdout and "last scan" in status.stdout
        assert "still missing volume(s) 2" in status.stdout, status.stdout
        ballast.unlink()
        status = run_syncd("import", "--status", "--root", far)
        assert "not scanned afresh" not in status.stdout, status.stdout
