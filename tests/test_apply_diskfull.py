"""A full disk during staging and during an apply, on a small tmpfs mounted for the test.

The live tree must stay as the last completed step left it (every listed tag resolving,
nothing partial visible), staging must stay usable, and once space is freed the apply
resumes to the target.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from syncd.apply import (
    ApplyHooks,
    DiskFull,
    Staging,
    StagingError,
    apply_target,
    executor,
    resume_pending,
)
from syncd.state import StateDir
from tests.test_apply_support import (
    copy_tree,
    fill,
    listing,
    make_source,
    records_of,
    registry_problems,
    scan_id,
    small_tmpfs,
    stage_transfer,
)

SIZE = 24 << 20


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "mnt", SIZE) as mount:
        if mount is None:
            pytest.skip("cannot mount a small tmpfs here (mounting needs root)")
        yield mount


def test_staging_survives_a_full_disk(small_fs: Path) -> None:
    root = small_fs / "root"
    root.mkdir()
    ballast = fill(small_fs, 200_000)
    staging = Staging.open(StateDir(root))
    kept = []
    with pytest.raises(StagingError, match="No space left"):
        for _ in range(1000):
            data = os.urandom(50_000)
            digest = blake3.blake3(data).digest()
            staging.add_blob(digest, data)
            kept.append((digest, data))
    assert kept and all(staging.read_blob(d) == data for d, data in kept)
    ballast.unlink()
    data = os.urandom(50_000)
    digest = blake3.blake3(data).digest()
    staging.add_blob(digest, data)  # the pack was cut back to its last whole record
    staging.flush()
    staging.close()
    with Staging.open(StateDir(root)) as again:
        assert again.recovery.truncated_bytes == 0 and again.blob_count == len(kept) + 1


def test_a_full_disk_mid_apply_leaves_a_consistent_tree_that_resumes(
    small_fs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each entry built right before its rename: else the whole of this small apply is
    # built ahead, and the disk fills before the first live step.
    monkeypatch.setattr(executor, "AHEAD", 0)
    month1 = make_source(tmp_path / "m1", 1)
    copy_tree(month1.root, tmp_path / "m2")
    month2 = make_source(tmp_path / "m2", 2, first=2)
    far = small_fs / "far"
    copy_tree(month1.root, far)
    # Everything staged up front: the apply itself is what runs out of space.
    stage_transfer(month2, far, everything=True).close()
    ballast = fill(small_fs, 700_000)
    state = StateDir(far)
    with Staging.open(state) as staging, records_of(month2) as snapshot:
        done: list[str] = []
        with pytest.raises(DiskFull) as raised:
            apply_target(
                far,
                state,
                month2.id,
                snapshot.record,
                staging,
                delete=True,
                hooks=ApplyHooks(lambda step, what: done.append(what)),
            )
        assert "no space left" in str(raised.value)
        assert done, "some steps completed before the disk filled up"
        assert (state.path / "journal").exists()  # it failed among the live steps
        # Regression: the half-built entries stayed, holding the space and inodes the next
        # session's scan needed to write its state ("no space left while scanning").
        assert not (state.path / "work").exists() and not (state.path / "trash").exists()
        entries = (listing(month1.root), listing(month2.root))
        for path, entry in listing(far).items():
            assert entry[0] == "dir" or entry in (e.get(path) for e in entries), path
        assert registry_problems(far, month1.root, month2.root) == []
        ballast.unlink()
        result = resume_pending(far, state, staging=staging)
    assert result is not None and result.root == month2.id == scan_id(far)
