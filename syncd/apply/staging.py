"""The staging area: blobs and tree records received for an apply, kept across crashes.

It lives at `STATE/staging`, on the root's file system, so that an interrupted push
resumes without resending what arrived and an apply can rename built files into place.
Data goes to append-only packs of self-verifying records (packs.py); `flush()` makes
them durable and writes `index`, which notes how much of each pack was durable. `open`
re-reads every pack, keeps each record that still proves itself, truncates a torn or
corrupt tail, and reports whether anything lost had been durable (`Recovery`).

Each session appends to packs of its own (never to one an earlier session left), so the
data of an interrupted or abandoned session sits in packs that a later session can drop
whole. A session marks the packs holding what its target uses (`use_blob`, and any
record it reads); the others, and the work files of other targets (incoming.py), are
*unneeded*: room.py drops them by age, and oldest first when room is needed.

Threads: one thread adds blobs (a push's stager) while another may read tree records
(the target written ahead, syncd/apply/ahead.py). The only state both write is the set
of records in use (`_use`: one dict assignment each, whole under the interpreter's
lock, and two threads assigning the same record assign the same size); what the reader
only reads (the tree locations, the descriptors by pack) it reads whole too. Whatever
iterates that set or drops packs (`packs`, `compact_pack`, `drop_pack`: room.py) must run
while no other thread uses the staging: a session makes room before the transfer starts.

Memory: one entry per staged blob, about 100 bytes (a 60-bit digest prefix -> pack and
offset; the full digest is compared against the pack header on lookup). Blob bytes stay
on disk.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from protocol.codec import pack, unpack
from protocol.errors import ProtocolError
from syncd import faults
from syncd.apply import packs
from syncd.apply.durable import fsync_dir, pwrite_all, write_atomically
from syncd.apply.errors import StagingError, stage_failed
from syncd.apply.incoming import Incoming
from syncd.apply.partials import Partials
from syncd.apply.writeback import Writeback
from syncd.state import StateDir

PACK_LIMIT = 256 << 20  # a new pack is started once one holds this many bytes
_PACK_NAME = re.compile(r"pack-(\d{6})")
_OFFSET_BITS = 40
_INDEX_FORMAT = 1


@dataclass(frozen=True, slots=True)
class Recovery:
    """What `Staging.open` found: the records kept, and what it had to cut."""

    blobs: int
    trees: int
    truncated_bytes: int  # torn or corrupt tails removed
    damaged_records: int  # complete records that no longer hash to their digest (skipped)
    lost_durable_bytes: int  # bytes lost that a flush had made durable (0 unless disk damage)


@dataclass(frozen=True, slots=True)
class StagedPack:
    """A pack as the staging quota sees it."""

    number: int
    used: float  # last appended to (seconds since the epoch)
    allocated: int  # bytes it takes on disk
    own: bool  # this session appends to it
    needed_bytes: int  # bytes of the records in it the current target uses

    @property
    def needed(self) -> bool:
        return self.own or self.needed_bytes > 0


class _Locations:
    """digest -> packed location, compact; see the module docstring."""

    def __init__(self) -> None:
        self._by_prefix: dict[int, int] = {}
        self._others: dict[bytes, int] = {}  # a digest whose prefix another one took

    def __len__(self) -> int:
        return len(self._by_prefix) + len(self._others)

    def get(self, digest: bytes, digest_at: Callable[[int], bytes]) -> int | None:
        loc = self._by_prefix.get(_prefix(digest))
        if loc is not None and digest_at(loc) == digest:
            return loc
        return self._others.get(digest)

    def locations(self) -> Iterator[int]:
        yield from self._by_prefix.values()
        yield from self._others.values()

    def add(self, digest: bytes, loc: int) -> None:
        key = _prefix(digest)
        if key in self._by_prefix:
            self._others[digest] = loc
        else:
            self._by_prefix[key] = loc

    def drop_pack(self, number: int) -> list[int]:
        """Forget every location in pack `number`; the locations forgotten."""
        gone = [loc for loc in self.locations() if loc >> _OFFSET_BITS == number]
        if gone:
            self._by_prefix = {
                k: v for k, v in self._by_prefix.items() if v >> _OFFSET_BITS != number
            }
            self._others = {k: v for k, v in self._others.items() if v >> _OFFSET_BITS != number}
        return gone


def _prefix(digest: bytes) -> int:
    # 60 bits keep the int in two 30-bit digits: 32 bytes instead of 36.
    return int.from_bytes(digest[:8], "big") >> 4


class Staging:
    def __init__(self, folder: Path, incoming: Incoming | None = None) -> None:
        """Use `Staging.open`."""
        self.folder = folder
        # Large files assembled as their pieces arrive (incoming.py), next to the packs.
        self.incoming = incoming or Incoming(folder.parent / "incoming")
        # The first bytes of blobs a dropped link cut (partials.py).
        self.partials = Partials(folder / "partial")
        self._fds: dict[int, int] = {}  # pack number -> read/write descriptor
        self._writeback = Writeback()
        self._reset()

    def _reset(self) -> None:
        self._sizes: dict[int, int] = {}
        self._dirty: set[int] = set()
        self._writing: int | None = None  # the pack this session appends to
        # Records this session's target uses: location -> bytes (header and data).
        self._used: dict[int, int] = {}
        self._blobs = _Locations()
        self._trees = _Locations()
        self.blob_count = 0
        self.blob_bytes = 0
        self.tree_bytes = 0
        self.recovery = Recovery(0, 0, 0, 0, 0)

    @classmethod
    def open(cls, state: StateDir) -> Staging:
        """Open (creating if needed) the staging area and recover it after a crash."""
        folder = state.path / "staging"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            same = folder.stat().st_dev == state.root.stat().st_dev
        except OSError as exc:
            raise StagingError(f"cannot use staging folder {folder}: {exc.strerror}") from exc
        if not same:
            raise StagingError(
                f"staging folder {folder} is not on the file system of {state.root}: "
                "put the state folder on the same file system as the root"
            )
        staging = cls(folder, Incoming.open(state.path / "incoming"))
        try:
            staging.partials = Partials.open(folder / "partial")
            staging._recover()
        except OSError as exc:
            staging.close()
            raise StagingError(f"cannot recover staging folder {folder}: {exc.strerror}") from exc
        return staging

    # -- recovery -------------------------------------------------------------------

    def _recover(self) -> None:
        durable = self._read_index()
        truncated = lost = damaged = 0
        numbers = sorted(
            int(m.group(1)) for p in self.folder.iterdir() if (m := _PACK_NAME.fullmatch(p.name))
        )
        for number in numbers:
            kept = durable.get(self._name(number), 0)
            size, end, bad = self._load_pack(number)
            damaged += len(bad)
            lost += sum(max(0, min(kept, record.end) - record.offset) for record in bad)
            if size > end:
                os.ftruncate(self._fds[number], end)
                truncated += size - end
                lost += max(0, min(kept, size) - end)
        lost += sum(n for name, n in durable.items() if not (self.folder / name).exists())
        self.recovery = Recovery(self.blob_count, len(self._trees), truncated, damaged, lost)
        if truncated or lost:
            self.flush()  # the index must not claim what is gone

    def _read_index(self) -> dict[str, int]:
        path = self.folder / "index"
        try:
            meta = unpack(path.read_bytes())
        except (OSError, ProtocolError):
            return {}  # absent or torn: recovery only reports less
        if not isinstance(meta, dict) or meta.get("format") != _INDEX_FORMAT:
            return {}
        sizes = meta.get("packs")
        if not isinstance(sizes, list):
            return {}
        return {
            item[0]: item[1]
            for item in sizes
            if isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and isinstance(item[1], int)
        }

    def _load_pack(self, number: int) -> tuple[int, int, list[packs.Record]]:
        """Open a pack and register its good records: (file size, end of the last complete
        record, damaged records)."""
        fd = os.open(self.folder / self._name(number), os.O_RDWR | os.O_CLOEXEC)
        self._fds[number] = fd
        size = os.fstat(fd).st_size
        end = 0
        damaged = []
        for record, good in packs.scan(fd):
            end = record.end
            if not good:
                damaged.append(record)
                continue
            loc = number << _OFFSET_BITS | record.offset
            if record.kind == packs.KIND_BLOB:
                if self._blobs.get(record.digest, self._digest_at) is None:
                    self._blobs.add(record.digest, loc)
                    self.blob_count += 1
                    self.blob_bytes += record.length
            elif self._trees.get(record.digest, self._digest_at) is None:
                self._trees.add(record.digest, loc)
                self.tree_bytes += record.length
        self._sizes[number] = end
        return size, end, damaged

    # -- queries ----------------------------------------------------------------------

    def has_blob(self, digest: bytes) -> bool:
        return self._blobs.get(digest, self._digest_at) is not None

    def use_blob(self, digest: bytes) -> bool:
        """Whether the blob is staged; if so, the current target needs its pack."""
        loc = self._blobs.get(digest, self._digest_at)
        if loc is None:
            return False
        self._use(loc)
        return True

    def _use(self, loc: int) -> None:
        if loc not in self._used:
            self._used[loc] = packs.HEADER.size + _length_at(self._fds[loc >> _OFFSET_BITS], loc)

    def read_blob(self, digest: bytes) -> bytes:
        """The staged blob's bytes, verified against `digest` as read."""
        loc = self._blobs.get(digest, self._digest_at)
        if loc is None:
            raise StagingError(f"blob {digest.hex()} is not staged in {self.folder}")
        return self._read(loc, packs.KIND_BLOB, digest)

    def blobs(self) -> Iterator[tuple[bytes, int]]:
        """(digest, length) of every staged blob, from the pack headers (not verified)."""
        for loc in self._blobs.locations():
            number, offset = loc >> _OFFSET_BITS, loc & ((1 << _OFFSET_BITS) - 1)
            record = packs.read_header(self._fds[number], offset)
            if record is not None:
                yield record.digest, record.length

    def tree_record(self, key: bytes) -> bytes | None:
        """The staged tree record (its pack is then needed by the current target)."""
        loc = self._trees.get(key, self._digest_at)
        return None if loc is None else self._read(loc, packs.KIND_TREE, key)

    @property
    def tree_count(self) -> int:
        return len(self._trees)

    def _read(self, loc: int, kind: int, digest: bytes) -> bytes:
        number, offset = loc >> _OFFSET_BITS, loc & ((1 << _OFFSET_BITS) - 1)
        self._use(loc)
        fd = self._fds[number]
        record = packs.read_header(fd, offset)
        data = packs.read_data(fd, record) if record else b""
        if record is None or record.kind != kind or not packs.proves(kind, digest, data):
            raise StagingError(
                f"staged record {digest.hex()} in {self.folder / self._name(number)} is corrupt"
            )
        return data

    def _digest_at(self, loc: int) -> bytes:
        number, offset = loc >> _OFFSET_BITS, loc & ((1 << _OFFSET_BITS) - 1)
        return os.pread(self._fds[number], 32, offset + packs.DIGEST_AT)

    # -- adding -----------------------------------------------------------------------

    def add_blob(self, digest: bytes, data: bytes | memoryview) -> None:
        """Keep a blob the caller has verified; a blob already staged is not added twice."""
        if self.use_blob(digest):
            return
        self._blobs.add(digest, self._append(packs.KIND_BLOB, digest, data))
        self.blob_count += 1
        self.blob_bytes += len(data)

    def add_tree(self, key: bytes, record: bytes) -> None:
        loc = self._trees.get(key, self._digest_at)
        if loc is not None:
            self._use(loc)
            return
        faults.reached("tree")
        self._trees.add(key, self._append(packs.KIND_TREE, key, record))
        self.tree_bytes += len(record)

    def _append(self, kind: int, digest: bytes, data: bytes | memoryview) -> int:
        number = self._writable()
        fd, offset = self._fds[number], self._sizes[number]
        try:
            header = packs.encode_header(kind, digest, len(data))
            pwrite_all(fd, header, offset)
            pwrite_all(fd, data, offset + len(header))
        except OSError as exc:
            # Cut the partial record now, so that the pack stays appendable.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, offset)
            path = self.folder / self._name(number)
            raise stage_failed(digest, path, exc) from exc
        self._sizes[number] = offset + packs.HEADER.size + len(data)
        self._dirty.add(number)
        self._writeback.wrote(number, fd, offset, packs.HEADER.size + len(data))
        return number << _OFFSET_BITS | offset

    def _writable(self) -> int:
        """The pack to append to: this session's own, a new one once it is full."""
        current = self._writing
        if current is not None and self._sizes[current] < PACK_LIMIT:
            return current
        number = max(self._fds, default=0) + 1
        path = self.folder / self._name(number)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StagingError(f"cannot create {path}: {exc.strerror}") from exc
        self._fds[number], self._sizes[number] = fd, 0
        self._writing = number
        return number

    # -- what the current target needs, and dropping the rest ----------------------------

    def packs(self) -> Iterator[StagedPack]:
        """Every pack, with its age and how much of it the current target uses."""
        used: dict[int, int] = {}
        for loc, size in self._used.items():
            used[loc >> _OFFSET_BITS] = used.get(loc >> _OFFSET_BITS, 0) + size
        for number, fd in list(self._fds.items()):
            st = os.fstat(fd)
            own = number == self._writing
            yield StagedPack(number, st.st_mtime, st.st_blocks * 512, own, used.get(number, 0))

    def compact_pack(self, number: int) -> None:
        """Copy the records of pack `number` that the current target uses into this
        session's pack, then drop it: an old pack a few shared records kept needed."""
        assert number != self._writing, "this session's own pack"
        kept = []
        for loc in [loc for loc in self._used if loc >> _OFFSET_BITS == number]:
            record = packs.read_header(self._fds[number], loc & ((1 << _OFFSET_BITS) - 1))
            assert record is not None
            kept.append((record.kind, record.digest, self._read(loc, record.kind, record.digest)))
            del self._used[loc]
        copies = [(kind, digest, self._append(kind, digest, data)) for kind, digest, data in kept]
        self.drop_pack(number)  # flushes the copies first
        for kind, digest, loc in copies:
            self._use(loc)
            if kind == packs.KIND_BLOB:
                self._blobs.add(digest, loc)
                self.blob_count += 1
                self.blob_bytes += self._used[loc] - packs.HEADER.size
            else:
                self._trees.add(digest, loc)
                self.tree_bytes += self._used[loc] - packs.HEADER.size

    def drop_pack(self, number: int) -> None:
        """Remove a pack no record of which the current target uses: its records are
        gone. The index is rewritten first, so a crash in between leaves an extra pack,
        never one reported as durable data lost."""
        assert number != self._writing, "this session's own pack"
        assert not any(loc >> _OFFSET_BITS == number for loc in self._used), "a pack in use"
        fd = self._fds[number]
        for loc in self._blobs.drop_pack(number):
            self.blob_count -= 1
            self.blob_bytes -= _length_at(fd, loc)
        for loc in self._trees.drop_pack(number):
            self.tree_bytes -= _length_at(fd, loc)
        del self._fds[number], self._sizes[number]
        self._dirty.discard(number)
        os.close(fd)
        self.flush()
        (self.folder / self._name(number)).unlink(missing_ok=True)
        fsync_dir(self.folder)

    def usage(self) -> int:
        """Bytes the staging area takes on disk: packs and work files."""
        held = sum(pack.allocated for pack in self.packs())
        held += sum(partial.allocated for partial in self.partials.entries())
        return held + sum(work.allocated for work in self.incoming.work_files())

    # -- durability and cleanup -----------------------------------------------------------

    def flush(self) -> None:
        """Make everything added so far durable, and note it in the index."""
        faults.reached("flush")
        try:
            self.incoming.flush()
            for number in sorted(self._dirty):
                os.fsync(self._fds[number])
            self._dirty.clear()
            self._writeback.clear()
            sizes = [[self._name(n), size] for n, size in sorted(self._sizes.items())]
            write_atomically(self.folder / "index", pack({"format": _INDEX_FORMAT, "packs": sizes}))
        except OSError as exc:
            raise StagingError(
                f"cannot flush staging folder {self.folder}: {exc.strerror}"
            ) from exc

    def clear(self) -> None:
        """Drop everything staged (after a successful apply)."""
        self.close()
        # The index first: packs left by a crash in the middle are then simply extra,
        # never reported as durable data lost.
        for name in ("index", "index.tmp"):
            (self.folder / name).unlink(missing_ok=True)
        for path in self.folder.iterdir():
            if _PACK_NAME.fullmatch(path.name):
                path.unlink()
        fsync_dir(self.folder)
        self.incoming.clear()
        self.partials.clear()
        self._reset()

    def close(self) -> None:
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)
        self.incoming.close()

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _name(number: int) -> str:
        return f"pack-{number:06d}"


def _length_at(fd: int, loc: int) -> int:
    record = packs.read_header(fd, loc & ((1 << _OFFSET_BITS) - 1))
    return record.length if record is not None else 0
