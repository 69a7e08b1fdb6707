"""The first bytes of blobs that a dropped link cut, kept so that the next session asks
only for the rest (REST, protocol/SPEC.md sections 4 and 8).

A piece may be 16 MiB: on a 1 MB/s link that drops, keeping only the blobs that arrived
whole would throw away up to 16 s of transfer at each drop. `STATE/staging/partial/`
holds, per cut blob, the bytes that arrived (from the blob's start), in a file named by
its digest. They cannot be checked alone: the session that receives the rest joins both
and checks the digest of the whole, and on a mismatch drops the partial and asks for the
whole blob (so a partial left by a hostile client costs one blob's rest, never a
session). At most MAX_PARTIALS are kept (the oldest go first), each of MIN_PARTIAL bytes
or more (a smaller cut is not worth keeping), and they are staged data like any other:
dropped when no target needs them (room.py), cleared with staging after an apply.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from syncd.apply.durable import fsync_dir, write_atomically

MIN_PARTIAL = 4 << 10  # a page: below it, sending the bytes again costs less than a file
MAX_PARTIALS = 16
_NAME = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Partial:
    digest: bytes
    size: int
    used: float  # when it was written (seconds since the epoch)
    allocated: int


class Partials:
    def __init__(self, folder: Path) -> None:
        """Use `Partials.open`."""
        self.folder = folder
        self._sizes: dict[bytes, int] = {}
        self.needed: set[bytes] = set()  # partials the current session asked the rest of

    @classmethod
    def open(cls, folder: Path) -> Partials:
        """The partials in `folder` (created if needed); stray files are removed."""
        partials = cls(folder)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for path in folder.iterdir():
            if _NAME.fullmatch(path.name) and path.is_file() and not path.is_symlink():
                partials._sizes[bytes.fromhex(path.name)] = path.lstat().st_size
            else:
                path.unlink()  # a temporary file a crash left, or anything else
        return partials

    def size(self, digest: bytes) -> int:
        """Bytes kept of this blob (0: none)."""
        return self._sizes.get(digest, 0)

    def read(self, digest: bytes) -> bytes | None:
        try:
            return (self.folder / digest.hex()).read_bytes()
        except FileNotFoundError:
            return None

    def keep(self, digest: bytes, data: bytes) -> bool:
        """Keep the first bytes of a blob, durably; False when too few to be worth it."""
        if len(data) < MIN_PARTIAL:
            return False
        write_atomically(self.folder / digest.hex(), data)
        self._sizes[digest] = len(data)
        while len(self._sizes) > MAX_PARTIALS:
            others = [p for p in self.entries() if p.digest != digest]
            self.drop(min(others, key=lambda p: p.used).digest)
        return True

    def drop(self, digest: bytes) -> None:
        if self._sizes.pop(digest, None) is not None:
            (self.folder / digest.hex()).unlink(missing_ok=True)
        self.needed.discard(digest)

    def entries(self) -> Iterator[Partial]:
        for digest, size in list(self._sizes.items()):
            with contextlib.suppress(FileNotFoundError):
                st = (self.folder / digest.hex()).lstat()
                yield Partial(digest, size, st.st_mtime, st.st_blocks * 512)

    def clear(self) -> None:
        for digest in list(self._sizes):
            self.drop(digest)
        if self.folder.is_dir():
            fsync_dir(self.folder)

    def __len__(self) -> int:
        return len(self._sizes)
