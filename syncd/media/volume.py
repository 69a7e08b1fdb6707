"""Reading one volume: its index decoded and checked, then its packs, verified as read.

Opening a volume checks everything that can be checked without reading the packs: the
index (bounded decoding, its checksum, every name and tree record), the signature
policy, and that each pack file is a regular file of the size the index says. Reading
then goes through each pack once, front to back, in large reads made a little ahead on
a worker thread, which also hashes what it read (the medium is read and hashed while the
last group is being staged; BLAKE3 releases the GIL): the whole file against its
checksum, and every blob against its digest, wanted or not, before any blob is handed
over. (The entries tile each pack, so the digests alone cover every byte; the checksum
is still compared, because an index whose checksum disagrees with its pack is not what
its exporter wrote, and an operator is told so, not left to import it.) A blob or file
that fails is noted as a problem; the blobs that proved themselves are still handed
over (they are named by their content, so keeping them is safe), and the caller refuses
the volume.

Blobs are handed over as views into the group's read buffer, not copies: the consumer
writes each one where it goes before asking for the next, and a copy of every blob cost
an import as much CPU as hashing it.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import blake3

from protocol.errors import ProtocolError
from protocol.media import (
    MAGIC_INDEX,
    BlobEntry,
    PackFile,
    VolumeHeader,
    VolumeIndex,
    decode_index,
    peek_header,
)
from syncd.media.errors import VolumeRefused
from syncd.media.layout import INDEX_NAME, describe
from syncd.media.mediafile import MediaFileRefused, pread_exactly, read_verified, same_trailer

MAX_INDEX_BYTES = 1 << 30
READ_BYTES = 16 << 20
READ_AHEAD = 2  # groups read while the current one is staged
_PEEK_BYTES = 4096
_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


@dataclass(slots=True)
class Volume:
    path: Path
    index: VolumeIndex
    problems: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        h = self.index.header
        return f"volume {h.volume}/{h.volumes} of export {h.export_id} ({self.path})"

    def refuse(self, problem: str) -> VolumeRefused:
        return VolumeRefused(self.label, problem)


def peek(path: Path) -> VolumeHeader | None:
    """A volume's header, unverified, for ordering; None when it cannot be read."""
    try:
        with (path / INDEX_NAME).open("rb") as stream:
            head = stream.read(_PEEK_BYTES)
        return peek_header(head)
    except (OSError, ProtocolError):
        return None


def open_volume(path: Path, required_key: bytes | None) -> Volume:
    """Read and check a volume's index and files; raises VolumeRefused naming the problem.
    The index's signature (per `required_key`) and checksum are checked before it is
    decoded (syncd/media/mediafile.py)."""
    label = describe(path)
    try:
        data, trailer = read_verified(path / INDEX_NAME, MAGIC_INDEX, required_key, MAX_INDEX_BYTES)
    except MediaFileRefused as exc:
        raise VolumeRefused(label, f"index: {exc}") from exc
    try:
        index = decode_index(data)
    except ProtocolError as exc:
        raise VolumeRefused(label, f"index: {exc}") from exc
    volume = Volume(path, index)
    if not same_trailer(index.checksum, index.signature, trailer):
        raise volume.refuse("index: its frames do not end with the END frame that was checked")
    for pack in index.files:
        _check_file(volume, pack)
    return volume


def _check_file(volume: Volume, pack: PackFile) -> None:
    try:
        info = os.lstat(volume.path / pack.name)
    except FileNotFoundError:
        raise volume.refuse(f"{pack.name} is missing") from None
    except OSError as exc:
        raise volume.refuse(f"{pack.name}: {exc.strerror}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise volume.refuse(f"{pack.name} is not a regular file")
    if info.st_size != pack.size:
        raise volume.refuse(
            f"{pack.name} is {info.st_size} bytes, its index says {pack.size} "
            "(truncated or damaged copy)"
        )


def read_blobs(
    volume: Volume, wanted: Callable[[bytes], bool]
) -> Iterator[tuple[bytes, memoryview]]:
    """(digest, bytes) of every wanted blob, verified, pack by pack; what fails is added
    to `volume.problems`. The bytes are a read-only view of the read buffer."""
    entries = volume.index.blobs
    start = 0
    for file_no, pack in enumerate(volume.index.files):
        end = start
        while end < len(entries) and entries[end].file == file_no:
            end += 1
        yield from _read_pack(volume, pack, entries[start:end], wanted)
        start = end


def _read_pack(
    volume: Volume, pack: PackFile, entries: tuple[BlobEntry, ...], wanted: Callable[[bytes], bool]
) -> Iterator[tuple[bytes, memoryview]]:
    try:
        fd = os.open(volume.path / pack.name, _FLAGS)
    except OSError as exc:
        volume.problems.append(f"{pack.name}: cannot open: {exc.strerror}")
        return
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    before = len(volume.problems)
    try:
        if not _still_the_file(fd, pack):
            volume.problems.append(f"{pack.name} was replaced since it was checked")
            return
        with ThreadPoolExecutor(1, "syncd-import-read") as pool:
            for group, read in _read_ahead(pool, fd, _groups(entries), hasher):
                if read is None:
                    volume.problems.append(f"{pack.name} ends before offset {group[0].offset}")
                    return
                yield from _verified(volume, pack, group, read, wanted)
        if os.fstat(fd).st_size != pack.size:
            volume.problems.append(f"{pack.name} changed size while it was read")
    except OSError as exc:
        volume.problems.append(f"{pack.name}: read error: {exc.strerror}")
        return
    finally:
        os.close(fd)
    if hasher.digest() != pack.checksum and len(volume.problems) == before:
        volume.problems.append(f"{pack.name} does not match its checksum")


def _still_the_file(fd: int, pack: PackFile) -> bool:
    """Whether what was opened is still a regular file of the listed size (one swapped
    for a FIFO or a device after the check would otherwise be read, or block, forever;
    it was opened with O_NONBLOCK so that opening one cannot block either)."""
    info = os.fstat(fd)
    return stat.S_ISREG(info.st_mode) and info.st_size == pack.size


def _groups(entries: tuple[BlobEntry, ...]) -> Iterator[tuple[BlobEntry, ...]]:
    """Consecutive entries of about READ_BYTES (one entry when it is larger)."""
    start = size = 0
    for i, entry in enumerate(entries):
        if i > start and size + entry.length > READ_BYTES:
            yield entries[start:i]
            start, size = i, 0
        size += entry.length
    if start < len(entries):
        yield entries[start:]


@dataclass(frozen=True, slots=True)
class _Read:
    """A group's bytes (read-only), hashed into the pack's checksum, and which of its
    blobs match their digests."""

    chunk: memoryview
    matches: list[bool]


def _read_ahead(
    pool: ThreadPoolExecutor,
    fd: int,
    groups: Iterator[tuple[BlobEntry, ...]],
    hasher: blake3.blake3,
) -> Iterator[tuple[tuple[BlobEntry, ...], _Read | None]]:
    """Each group with its bytes, read and hashed on the pool up to READ_AHEAD groups
    ahead, so that the medium is read and hashed while what came before is staged. The
    pool has one worker: groups go into the pack's checksum in order."""
    pending: deque[tuple[tuple[BlobEntry, ...], Future[_Read | None]]] = deque()
    for group in groups:
        pending.append((group, pool.submit(_read_hashed, fd, group, hasher)))
        if len(pending) > READ_AHEAD:
            first, future = pending.popleft()
            yield first, future.result()
    while pending:
        first, future = pending.popleft()
        yield first, future.result()


def _read_hashed(fd: int, group: tuple[BlobEntry, ...], hasher: blake3.blake3) -> _Read | None:
    base = group[0].offset
    chunk = pread_exactly(fd, base, group[-1].offset + group[-1].length - base)
    if chunk is None:
        return None
    chunk = chunk.toreadonly()
    hasher.update(chunk)
    matches = [
        blake3.blake3(chunk[e.offset - base : e.offset - base + e.length]).digest() == e.digest
        for e in group
    ]
    return _Read(chunk, matches)


def _verified(
    volume: Volume,
    pack: PackFile,
    group: tuple[BlobEntry, ...],
    read: _Read,
    wanted: Callable[[bytes], bool],
) -> Iterator[tuple[bytes, memoryview]]:
    base = group[0].offset
    for entry, matches in zip(group, read.matches, strict=True):
        # Every entry is checked, wanted or not: the import records which blobs each volume
        # holds from its index, so an entry naming a blob the pack does not hold (a forged
        # or mis-written index whose pack still matches its checksum) must refuse the volume.
        data = read.chunk[entry.offset - base : entry.offset - base + entry.length]
        if not matches:
            volume.problems.append(
                f"{pack.name}: the blob at offset {entry.offset} does not match its digest "
                f"{entry.digest.hex()[:16]} (damaged copy?)"
            )
            continue
        if wanted(entry.digest):
            yield entry.digest, data
