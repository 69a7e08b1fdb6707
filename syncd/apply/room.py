"""Room for an apply: what it needs on disk, the staging quota, and dropping what no
target needs.

Once the far side knows what a target lacks (the descent of a push, the lacking blobs of
an import), and before it stages a byte of it, `make_room` checks two bounds:

- the staging quota: what staging would then hold for this target (its packs and work
  files, and the bytes still to stage) must fit within `--staging-max`, by default
  STAGING_SHARE of the space staging could use (free space plus what staging holds);
- the file system: the bytes still to stage, the files the apply builds from the packs
  (their bytes are written a second time, into the workspace, before the packs go) and
  the state files it writes must fit in the free space.

Staged data the current target does not need (packs, work files and partial blobs left
by interrupted, abandoned or superseded sessions) is dropped when older than MAX_AGE,
and then, oldest first, for as long as either bound is not met. When both still cannot
be met the session is refused up front, naming the shortfall: nothing was staged or
changed. So a session that stopped half-way, or a hostile client that sent all but one
blob of a huge tree, never holds the space an honest session needs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from syncd.apply.errors import NoRoom
from syncd.apply.staging import Staging
from syncd.snapshot import Summary
from syncd.state import StateDir
from syncd.units import format_bytes

STAGING_SHARE = 0.8  # of free space plus what staging holds, unless --staging-max says
MAX_AGE = 30 * 86400.0  # seconds: unneeded staged data older than this is dropped
STATE_SLACK = 1 << 20  # bytes for the journal, the index and other small state files


@dataclass(frozen=True, slots=True)
class StagingLimit:
    """The staging quota: `max_bytes`, or STAGING_SHARE of the usable space when None."""

    max_bytes: int | None = None

    def quota(self, free: int, staged: int) -> int:
        if self.max_bytes is not None:
            return self.max_bytes
        return int(STAGING_SHARE * (free + staged))

    def describe(self) -> str:
        if self.max_bytes is not None:
            return "--staging-max"
        return f"the default, {STAGING_SHARE:.0%} of free space plus what staging holds"


@dataclass(slots=True)
class Need:
    """Bytes an apply still needs on the far side's file system."""

    packs: int = 0  # pieces still to stage in packs
    assembled: int = 0  # bytes still to write into work files (incoming.py)
    built: int = 0  # files the apply writes from the packs into its workspace
    state: int = 0  # the target snapshot and the scans' state files

    @property
    def staging(self) -> int:
        return self.packs + self.assembled

    @property
    def total(self) -> int:
        return self.staging + self.built + self.state

    def describe(self) -> str:
        return (
            f"{format_bytes(self.staging)} to stage, {format_bytes(self.built)} to build "
            f"files from staged pieces, {format_bytes(self.state)} for state files"
        )


@dataclass(slots=True)
class Room:
    """What `make_room` found and did."""

    free: int = 0  # bytes free once done
    quota: int = 0
    dropped: int = 0  # bytes of unneeded staged data dropped
    dropped_units: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Unit:
    """A pack, a work file or a partial blob that this session does not write to."""

    used: float
    allocated: int
    pack: int | None  # the pack number, or None for a work file or a partial
    key: bytes = b""  # a work file's content key, or a partial's digest
    partial: bool = False
    kept: int = 0  # bytes the current target uses of it: copied out before it goes

    @property
    def gain(self) -> int:
        return self.allocated - self.kept


def state_need(state: StateDir, staging: Staging) -> int:
    """The target snapshot (about the size of its tree records, staged), a new scan's
    snapshot and stat cache (written next to the old ones), and some slack."""
    sizes = 0
    for path in (state.snapshot, state.statcache):
        try:
            sizes += path.stat().st_size
        except OSError:
            continue
    return staging.tree_bytes + 2 * sizes + STATE_SLACK


def refuse_uncountable(state: StateDir, target: Summary, live: Summary) -> None:
    """Raise NoRoom when the target holds more entries than the root's file system could:
    those it holds now and its free inodes. A target that repeats one subtree is a
    million million folders from a few records, cheap to send and to write as a snapshot
    (target.py remembers repeated subtrees), and endless to describe or build; refused
    here, nothing changed. File systems that count no inodes (f_files 0) are not asked."""
    stats = os.statvfs(state.path)
    if stats.f_files == 0:
        return
    entries = target.files + target.dirs + target.symlinks
    held = live.files + live.dirs + live.symlinks
    if entries > held + stats.f_favail:
        raise NoRoom(
            f"the target holds {entries:,} files, folders and symlinks; the file system of "
            f"{state.root} holds {held:,} of them now and has {stats.f_favail:,} inodes free: "
            "it cannot hold the target, nothing was changed"
        )


def free_bytes(state: StateDir) -> int:
    stats = os.statvfs(state.path)
    return stats.f_bavail * stats.f_frsize


def make_room(
    staging: Staging, state: StateDir, need: Need, limit: StagingLimit, *, now: float | None = None
) -> Room:
    """Drop unneeded staged data (old first, then as room requires) until `need` fits
    the quota and the free space; raise NoRoom, having dropped only unneeded data, when
    it cannot."""
    room = Room()
    units = sorted(_droppable(staging), key=lambda unit: unit.used)
    cutoff = (time.time() if now is None else now) - MAX_AGE
    for unit in [u for u in units if u.used < cutoff and not u.kept]:
        _drop(staging, unit, room)
        units.remove(unit)
    staged = staging.usage()
    room.free = free_bytes(state)
    room.quota = limit.quota(room.free, staged)
    # What nothing uses goes first, oldest first; then what only a few shared records
    # keep, once those are copied out (the copies cost their bytes).
    units.sort(key=lambda unit: (unit.kept > 0, unit.used))
    while units and (staged + need.staging > room.quota or room.free < need.total):
        unit = units.pop(0)
        if unit.gain <= 0:
            continue
        _drop(staging, unit, room)
        staged -= unit.gain
        room.free = free_bytes(state)
    if room.free < need.total:
        raise NoRoom(_no_space(need, state, room))
    if staged + need.staging > room.quota:
        raise NoRoom(_over_quota(need, staged, room, limit))
    if room.dropped_units:
        room.notes.append(
            f"dropped {format_bytes(room.dropped)} of staged data no current target needs "
            f"({room.dropped_units} packs, work files or partial blobs)"
        )
    return room


def expire(staging: Staging, *, now: float | None = None) -> Room:
    """Drop unneeded staged data older than MAX_AGE (a session with nothing to stage)."""
    room = Room()
    cutoff = (time.time() if now is None else now) - MAX_AGE
    for unit in list(_droppable(staging)):
        if unit.used < cutoff and not unit.kept:
            _drop(staging, unit, room)
    return room


def _droppable(staging: Staging) -> Iterator[_Unit]:
    """Everything but this session's own pack, the work files its target fills and the
    partial blobs it asks the rest of."""
    for pack in staging.packs():
        if not pack.own:
            yield _Unit(pack.used, pack.allocated, pack.number, kept=pack.needed_bytes)
    for work in staging.incoming.work_files():
        if not work.active:
            yield _Unit(work.used, work.allocated, None, work.key, kept=work.taken_bytes)
    for partial in staging.partials.entries():
        if partial.digest not in staging.partials.needed:
            yield _Unit(partial.used, partial.allocated, None, partial.digest, partial=True)


def _drop(staging: Staging, unit: _Unit, room: Room) -> None:
    if unit.pack is not None:
        if unit.kept:
            staging.compact_pack(unit.pack)
        else:
            staging.drop_pack(unit.pack)
    elif unit.partial:
        staging.partials.drop(unit.key)
    else:
        if unit.kept:
            staging.incoming.release(unit.key, staging.add_blob)
        staging.incoming.drop(unit.key)
    room.dropped += unit.gain
    room.dropped_units += 1


def _over_quota(need: Need, staged: int, room: Room, limit: StagingLimit) -> str:
    wanted = staged + need.staging
    return (
        f"staging for this target would hold {format_bytes(wanted)} "
        f"({format_bytes(staged)} already staged for it, {format_bytes(need.staging)} still "
        f"to stage), over the staging quota of {format_bytes(room.quota)} "
        f"({limit.describe()}): {format_bytes(wanted - room.quota)} short; raise it with "
        "--staging-max on the far side, or free space there; nothing was changed"
    )


def _no_space(need: Need, state: StateDir, room: Room) -> str:
    dropped = (
        f" (after dropping {format_bytes(room.dropped)} of staged data no target needs)"
        if room.dropped
        else ""
    )
    return (
        f"not enough space on the far side for this apply: it needs "
        f"{format_bytes(need.total)} ({need.describe()}) and the file system of "
        f"{state.root} has {format_bytes(room.free)} free{dropped}: "
        f"{format_bytes(need.total - room.free)} short; free that much there and run again "
        "(nothing was changed)"
    )
