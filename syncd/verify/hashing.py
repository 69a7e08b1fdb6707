"""sha256 of many blobs on all cores: what `--deep` spends its time on.

Threads, not processes: hashlib and preadv release the GIL, so N threads hash at N
cores' speed without copying blobs between processes. Each thread reads into its own
reused buffer (1 MiB: large enough to amortize the syscall, small enough to stay in
cache), and the largest blobs start first so that one big layer does not finish alone
at the end. Results are kept by byte range, so a blob met again (the cache seen from a
content folder) is not hashed twice.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from syncd.verify.beneath import open_beneath, why
from syncd.verify.store import BlobLocation

CHUNK = 1 << 20
_OPEN = os.O_RDONLY | os.O_CLOEXEC
_local = threading.local()


@dataclass(frozen=True, slots=True)
class HashOutcome:
    hexdigest: str | None  # None when the bytes could not be read
    size: int  # bytes read
    error: str = ""


class Hasher:
    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.bytes_hashed = 0
        self._done: dict[BlobLocation, HashOutcome] = {}

    def hash_all(self, locations: Mapping[str, BlobLocation]) -> dict[str, HashOutcome]:
        """Digest -> what its bytes hash to."""
        todo = sorted(
            {loc for loc in locations.values() if loc not in self._done},
            key=lambda loc: loc.size,
            reverse=True,
        )
        if len(todo) == 1 or self.workers == 1:
            outcomes = [hash_range(loc) for loc in todo]
        else:
            with ThreadPoolExecutor(self.workers, thread_name_prefix="syncd-hash") as pool:
                outcomes = list(pool.map(hash_range, todo))
        for location, outcome in zip(todo, outcomes, strict=True):
            self._done[location] = outcome
            self.bytes_hashed += outcome.size
        return {digest: self._done[loc] for digest, loc in locations.items()}


def hash_range(location: BlobLocation) -> HashOutcome:
    """sha256 of `size` bytes at `offset` (to the end of the file when size < 0)."""
    try:
        if location.dir_fd >= 0:
            # O_NONBLOCK: a FIFO planted where a blob belongs must not hang the hashing.
            fd = open_beneath(location.dir_fd, location.rel, _OPEN | os.O_NONBLOCK)
        else:
            fd = os.open(location.path, _OPEN)
    except OSError as exc:
        return HashOutcome(None, 0, why(exc))
    try:
        size = location.size if location.size >= 0 else os.fstat(fd).st_size - location.offset
        return _hash_fd(fd, location.offset, size)
    except OSError as exc:
        return HashOutcome(None, 0, exc.strerror or str(exc))
    finally:
        os.close(fd)


def _hash_fd(fd: int, offset: int, size: int) -> HashOutcome:
    digest = hashlib.sha256()
    view = _buffer()
    done = 0
    while done < size:
        want = min(CHUNK, size - done)
        got = os.preadv(fd, [view[:want]], offset + done)
        if got == 0:
            break  # shorter than expected: the hash then differs, and says so
        digest.update(view[:got])
        done += got
    return HashOutcome(digest.hexdigest(), done)


def _buffer() -> memoryview:
    view: memoryview | None = getattr(_local, "view", None)
    if view is None:
        view = _local.view = memoryview(bytearray(CHUNK))
    return view
