"""Read files and hash their pieces, safely against files that change underneath.

Runs in worker threads. Each job opens the file, hashes its pieces from one sequential
read, and compares the file's stat after reading with the stat the walk recorded. Any
difference (size, mtime, ctime, inode) means the bytes may be a mix of two versions, so
the job raises FileChanged and the scanner retries with a fresh stat.

Timestamps are only trusted once they are older than the file system's clock tick: a
write within the same tick as the previous one can leave ctime unchanged. A file whose
ctime is that recent is read only after the tick has passed, so a later write is sure
to move its ctime and the stat comparison (now, and in the next scan's stat cache) sees it.

One race remains: the kernel sets ctime when a write() starts, not when it ends, so a
write that is still copying when we stat and read leaves no trace in the stat. A file
changed within HOT_NS is therefore first waited for: `lseek(SEEK_DATA)` takes the inode
lock that a buffered write holds from start to end on ext4, btrfs and tmpfs, so it
returns only once a write in progress has finished (and any later write moves the
ctime). It is then read twice, and the two hashes must agree: on file systems whose seek
takes no such lock (XFS, NFS) a write that keeps copying is still seen, but a write paused
half-way in the kernel (throttled by dirty-page write-back, descheduled on a busy
machine) leaves the same torn bytes for both reads, and only the lock catches it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import blake3

# Longer than a kernel clock tick (<= 10 ms at HZ=100); see the module docstring.
SETTLE_NS = 20_000_000
HOT_NS = 2_000_000_000
BUFFER_SIZE = 4 << 20
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NOATIME", 0)

_local = threading.local()


@dataclass(frozen=True, slots=True)
class StatKey:
    """What must not change between the walk's stat and the end of reading."""

    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> StatKey:
        return cls(st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class FileChanged(Exception):
    """The file changed while it was read; its bytes must not be recorded."""


@dataclass(frozen=True, slots=True)
class RangeJob:
    """Hash the pieces `lengths` of `path`, starting at byte `start`."""

    path: str
    expect: StatKey
    start: int
    lengths: Sequence[int]


def run_job(job: RangeJob) -> list[bytes]:
    """Digests of the job's pieces; raises FileChanged or OSError."""
    settle(job.expect.ctime_ns)
    hot = job.expect.ctime_ns > time.time_ns() - HOT_NS
    fd = _open_noatime(job.path)
    try:
        if hot:
            _wait_for_writers(fd)
        digests = _hash_fd(fd, job.start, job.lengths)
        if hot and _hash_fd(fd, job.start, job.lengths) != digests:
            raise FileChanged(job.path)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(after.st_mode) or StatKey.of(after) != job.expect:
        raise FileChanged(job.path)
    return digests


def run_batch(jobs: Sequence[RangeJob]) -> list[list[bytes] | BaseException]:
    """Many small files in one task: a thread-pool hop costs more than hashing 1 KiB."""
    results: list[list[bytes] | BaseException] = []
    for job in jobs:
        try:
            results.append(run_job(job))
        except (OSError, FileChanged) as exc:
            results.append(exc)
    return results


def settle(ctime_ns: int) -> None:
    """Wait until a stat with this ctime can be trusted (see the module docstring)."""
    wait_ns = ctime_ns + SETTLE_NS - time.time_ns()
    if wait_ns > 0:
        time.sleep(min(wait_ns, SETTLE_NS) / 1e9)


def _wait_for_writers(fd: int) -> None:
    """Return once no write() is in progress on the file, where the file system's seek
    takes the inode lock (see the module docstring); at once elsewhere."""
    with contextlib.suppress(OSError):  # ENXIO: no data (empty, all holes); EINVAL
        os.lseek(fd, 0, os.SEEK_DATA)


def _open_noatime(path: str) -> int:
    try:
        return os.open(path, _OPEN_FLAGS)
    except PermissionError:
        # O_NOATIME is only allowed to the file's owner; fall back for other readers.
        return os.open(path, _OPEN_FLAGS & ~getattr(os, "O_NOATIME", 0))


def _buffer() -> bytearray:
    buf: bytearray | None = getattr(_local, "buffer", None)
    if buf is None:
        buf = _local.buffer = bytearray(BUFFER_SIZE)
    return buf


def _hash_fd(fd: int, start: int, lengths: Sequence[int]) -> list[bytes]:
    """Hash consecutive pieces from one sequential read of [start, start + sum(lengths))."""
    digests: list[bytes] = []
    if not lengths:
        return digests
    buf = _buffer()
    view = memoryview(buf)
    remaining = sum(lengths)
    offset = start
    piece, left = 0, lengths[0]
    hasher: blake3.blake3 | None = None
    while remaining:
        got = os.preadv(fd, [view[: min(remaining, BUFFER_SIZE)]], offset)
        if got == 0:
            raise FileChanged("file shrank while it was read")
        offset += got
        remaining -= got
        at = 0
        while at < got:
            take = min(left, got - at)
            chunk = view[at : at + take]
            if hasher is None and take == left:
                digests.append(blake3.blake3(chunk).digest())
            else:
                hasher = hasher or blake3.blake3()
                hasher.update(chunk)
                if take == left:
                    digests.append(hasher.digest())
                    hasher = None
            at += take
            left -= take
            if left == 0 and piece + 1 < len(lengths):
                piece += 1
                left = lengths[piece]
    return digests
