"""The target as this far side writes it: modes masked, times as its file system keeps
them. Decided before anything is written, so the apply and its final check agree.

A target from a peer or a medium may hold what the far side will not or cannot
reproduce, and an apply whose final check can never pass used to leave a journal that
every later session resumed and failed again:

- modes: `mode & 0o755` by default (no setuid, setgid or sticky bit, no group or other
  write: a file that arrived as 06755 ran as root for anyone), `--preserve-modes` keeps
  them. Either way the owner may read every file and read and search every directory:
  a far side running as its own user must read back, and check, what it wrote;
- modification times: what this file system stores of them. Linux clamps a time to the
  file system's range and truncates it to its granularity (timestamp_truncate): ext4
  keeps seconds from -2^31 (1901) to 2^34 - 2^31 - 1 (2446) at 1 ns, so of the times a
  record can hold (signed 64-bit nanoseconds, 1677 to 2262) it clamps the early ones;
  ext4 with 128-byte inodes and xfs without bigtime stop at 2^31 - 1 (2038) and keep
  whole seconds or ns; tmpfs keeps all. `probe_times` asks the file system itself, once
  per apply, with three utimensat calls on a scratch file.

How a file is cut into pieces is the sender's business (SPEC.md 3.1); the apply's final
check takes the recipe of every file it wrote from the target, not from a fresh cut
(engine.py), so a target cut differently from this side's scanner still checks equal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from protocol.tree import DirNode, FileNode, Node

SAFE_MODE_BITS = 0o755
ALL_MODE_BITS = 0o7777
FILE_OWNER_BITS = 0o400  # the owner reads every file
DIR_OWNER_BITS = 0o500  # and reads and searches every directory
_NS = 1_000_000_000
_MIN_NS, _MAX_NS = -(2**63), 2**63 - 1  # what a tree record's mtime_ns can hold
_PROBE = "times-probe"


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """What the far side's operator allows a target to hold (serve and import flags)."""

    allow_outside_symlinks: bool = False
    preserve_modes: bool = False


@dataclass(frozen=True, slots=True)
class Times:
    """The modification times a file system stores: seconds clamped to [low, high],
    nanoseconds truncated to a multiple of `granularity` (0 at either bound)."""

    low: int = _MIN_NS // _NS - 1  # beyond every time a record can hold: nothing clamped
    high: int = _MAX_NS // _NS + 1
    granularity: int = 1

    def stored(self, ns: int) -> int:
        seconds, nanos = divmod(ns, _NS)
        if seconds <= self.low or seconds >= self.high:
            return min(max(seconds, self.low), self.high) * _NS
        return seconds * _NS + nanos - nanos % self.granularity


def probe_times(folder: Path) -> Times:
    """What the file system of `folder` stores, asked of a scratch file in it."""
    path = folder / _PROBE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    unbounded = Times()
    try:
        low, high = _stored(fd, _MIN_NS), _stored(fd, _MAX_NS)
        nanos = _stored(fd, _NS + _NS - 1) - _NS
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return Times(
        unbounded.low if low == _MIN_NS else low // _NS,
        unbounded.high if high == _MAX_NS else high // _NS,
        _NS - nanos if 0 <= nanos < _NS else 1,
    )


def _stored(fd: int, ns: int) -> int:
    os.utime(fd, ns=(ns, ns))
    return os.fstat(fd).st_mtime_ns


@dataclass(frozen=True, slots=True)
class Canon:
    """Turns a target's entries into what this far side writes."""

    policy: TargetPolicy = TargetPolicy()
    times: Times = Times()

    def file_mode(self, mode: int) -> int:
        return self._mask(mode) | FILE_OWNER_BITS

    def dir_mode(self, mode: int) -> int:
        return self._mask(mode) | DIR_OWNER_BITS

    def _mask(self, mode: int) -> int:
        return mode & (ALL_MODE_BITS if self.policy.preserve_modes else SAFE_MODE_BITS)

    def node(self, node: Node, tree: bytes | None = None) -> Node:
        """`node` as written here; a directory's record is `tree` (its canonical id)."""
        if isinstance(node, FileNode):
            mode, mtime = self.file_mode(node.mode), self.times.stored(node.mtime_ns)
            if mode == node.mode and mtime == node.mtime_ns:
                return node
            return FileNode(node.name, mode, node.size, mtime, node.recipe)
        if isinstance(node, DirNode):
            mode = self.dir_mode(node.mode)
            tree = node.tree if tree is None else tree
            if mode == node.mode and tree == node.tree:
                return node
            return DirNode(node.name, mode, tree)
        return node

    def key(self) -> list[int]:
        """What canonical ids depend on: ids made under another key are not comparable."""
        t = self.times
        return [int(self.policy.preserve_modes), t.low, t.high, t.granularity]
