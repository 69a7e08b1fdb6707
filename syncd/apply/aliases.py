"""Which offered trees this far side holds already, as it wrote them (canon.py).

A target the far side canonicalises (a source whose directories are 0775, say, or a
setuid file) never has the ids of the tree the far side then holds, so without a memory
an unchanged source would be descended and compared in full at every push. After each
apply whose final check passed, the far side records, for every directory of the
target whose id changed, offered id -> id as written. A later session asks `live`:
the up-to-date check (an unchanged source is one round trip again) and the descent (an
unchanged directory is neither asked for again nor are its blobs) use it, and the apply
builds its canonical target from the tree it holds instead of records it never received.

Each entry is a fact about one Canon key (the mode policy and the file system's times),
so a file made under another key is ignored. An entry is only used while the far side
holds its directory; the next save drops those it no longer holds.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from protocol.limits import DIGEST_SIZE
from syncd.errors import SnapshotFileError
from syncd.state import StateDir
from syncd.store.recordfile import RecordFileReader, RecordFileWriter, replace_atomically

ALIASES_NAME = "aliases"
MAGIC = b"SYNCDALI"
Lookup = Callable[[bytes], bytes | None]  # a tree id -> its record, if held


class Aliases:
    """The far side's aliases for one Canon key; empty when there are none."""

    def __init__(self, reader: RecordFileReader | None = None) -> None:
        self._reader = reader

    @classmethod
    def load(cls, state: StateDir, key: list[int]) -> Aliases:
        path = _path(state)
        if not path.exists():
            return cls()
        try:
            reader = RecordFileReader(path, MAGIC)
        except SnapshotFileError:
            return cls()  # a damaged memory: the descent is slower, never wrong
        if reader.meta.get("canon") != key:
            reader.close()
            return cls()
        return cls(reader)

    def get(self, offered: bytes) -> bytes | None:
        if self._reader is None:
            return None
        for entry in self._reader.candidates(offered):
            if entry[:DIGEST_SIZE] == offered and len(entry) == 2 * DIGEST_SIZE:
                return bytes(entry[DIGEST_SIZE:])
        return None

    def live(self, offered: bytes, held: Lookup) -> bytes | None:
        """The id as written of the offered tree `offered`, if this side holds it."""
        written = self.get(offered)
        return written if written is not None and held(written) is not None else None

    def entries(self) -> Iterable[tuple[bytes, bytes]]:
        if self._reader is None:
            return
        for entry in self._reader.records():
            yield bytes(entry[:DIGEST_SIZE]), bytes(entry[DIGEST_SIZE:])

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> Aliases:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def save_aliases(
    state: StateDir, key: list[int], new: Sequence[tuple[bytes, bytes]], held: Lookup
) -> None:
    """Record `new` (offered id, id as written) with the earlier entries of the same key
    whose directory this side still holds. Best effort: the memory only saves work."""
    path = _path(state)
    if not new and not path.exists():
        return  # a target written as offered, as all before it: nothing to remember
    tmp = path.with_name(path.name + ".tmp")
    try:
        with Aliases.load(state, key) as old, tmp.open("wb") as out:
            writer = RecordFileWriter(out, MAGIC)
            kept = ((a, b) for a, b in old.entries() if held(b) is not None)
            for offered, written in itertools.chain(kept, new):
                writer.add(offered, offered + written)
            writer.finish({"canon": key})
        replace_atomically(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        path.unlink(missing_ok=True)


def _path(state: StateDir) -> Path:
    return state.path / ALIASES_NAME
