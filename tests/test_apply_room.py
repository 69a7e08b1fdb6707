"""Room for an apply (syncd/apply/room.py): the staging quota, the free space, and the
staged data no target needs, dropped by age and oldest first."""

from __future__ import annotations

import os
import time
from pathlib import Path

import blake3
import pytest

from syncd.apply.errors import NoRoom
from syncd.apply.room import MAX_AGE, Need, StagingLimit, expire, make_room
from syncd.apply.staging import Staging
from syncd.state import StateDir


def stage_session(root: Path, seed: int, size: int, *, age: float = 0.0) -> bytes:
    """One session that staged one blob of `size` bytes, `age` seconds ago."""
    data = os.urandom(size)
    digest = blake3.blake3(data).digest()
    with Staging.open(StateDir(root)) as staging:
        staging.add_blob(digest, data)
        staging.flush()
        pack = max(staging.packs(), key=lambda p: p.number)
    path = root / ".syncd" / "staging" / f"pack-{pack.number:06d}"
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return digest


def test_old_unneeded_data_expires_and_needed_data_stays(tmp_path: Path) -> None:
    old = stage_session(tmp_path, 1, 10_000, age=MAX_AGE + 60)
    used = stage_session(tmp_path, 2, 10_000, age=MAX_AGE + 60)
    recent = stage_session(tmp_path, 3, 10_000)
    with Staging.open(StateDir(tmp_path)) as staging:
        assert staging.use_blob(used)  # the current target needs it, however old
        room = expire(staging)
        assert room.dropped_units == 1
        assert not staging.has_blob(old) and staging.has_blob(used) and staging.has_blob(recent)


def test_room_is_made_oldest_first_then_refused_naming_the_shortfall(tmp_path: Path) -> None:
    first = stage_session(tmp_path, 1, 50_000, age=300)
    second = stage_session(tmp_path, 2, 50_000, age=200)
    state = StateDir(tmp_path)
    with Staging.open(state) as staging:
        usage = staging.usage()
        # A quota just under what staging holds plus the need: the oldest goes, not both.
        limit = StagingLimit(usage + 40_000)
        room = make_room(staging, state, Need(packs=60_000), limit)
        assert room.dropped_units == 1
        assert not staging.has_blob(first) and staging.has_blob(second)
        with pytest.raises(NoRoom, match=r"staging quota .* short; raise it with --staging-max"):
            make_room(staging, state, Need(packs=10 << 20), StagingLimit(1 << 20))
        assert not staging.has_blob(second)  # unneeded data went first, then it refused
        free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
        with pytest.raises(NoRoom, match=r"not enough space .* short; free that much"):
            make_room(staging, state, Need(built=free * 2), StagingLimit(free * 4))


def test_the_default_quota_is_a_share_of_the_usable_space() -> None:
    assert StagingLimit().quota(free=1000, staged=1000) == 1600
    assert StagingLimit(123).quota(free=10**9, staged=0) == 123
