"""Write one volume: its pack files, then its index, all durable before the volume counts.

Pieces are copied from the source tree into the pack by the kernel (copy_file_range:
one copy, as `cp` makes, instead of a read into this process and a write back out),
a group of about 16 MiB at a time. Each group is then hashed as the pack now holds it
(through a read-only mapping, without another copy): every piece against its digest,
so a source file that changed since the scan is named, never exported as if it
matched; and the whole group into the pack's checksum. The hashing of one group runs on
a worker thread while the next group is copied (BLAKE3 and copy_file_range both release
the GIL), and a piece counts only once its group has been verified. The disk is asked
to start writing each group as soon as it is copied (syncd/apply/writeback.py), so the
fsync that makes the pack durable does not wait for all of it at the end. Where the kernel
cannot copy between the two file systems (e.g. onto FAT media), pieces are read and
written.
"""

from __future__ import annotations

import errno
import mmap
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import blake3

from protocol.media import BlobEntry, PackFile, Signer, VolumeHeader, index_body, seal_index
from syncd.apply.durable import copy_range, fsync_dir, pwrite_all
from syncd.apply.writeback import start_writeback
from syncd.media.errors import MediaError
from syncd.media.layout import INDEX_NAME, pack_name, volume_name
from syncd.media.plan import PackPlan, VolumePlan
from syncd.session.pieces import Locate, SourceChanged

GROUP_BYTES = 16 << 20
_OPEN_SOURCES = 64
_NO_COPY_RANGE = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}
_SOURCE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class WrittenVolume:
    number: int
    path: Path
    blobs: int
    pack_bytes: int
    index_bytes: int
    kind: str = "data"  # or "parity" (syncd/media/parity/)
    # What a parity volume records of a data volume: its files, blobs and END frame.
    files: tuple[PackFile, ...] = ()
    entries: tuple[BlobEntry, ...] = ()
    end: bytes = b""

    @property
    def bytes(self) -> int:
        return self.pack_bytes + self.index_bytes

    def as_json(self) -> dict[str, object]:
        return {
            "volume": self.number,
            "kind": self.kind,
            "path": str(self.path),
            "blobs": self.blobs,
            "bytes": self.bytes,
            "index_bytes": self.index_bytes,
        }


@dataclass(frozen=True, slots=True)
class VolumeSource:
    """Where a volume's pieces and its shared parts come from."""

    root: Path
    locate: Locate
    header: VolumeHeader  # the export's header; the volume number is set per volume
    trees: bytes  # encoded TREES frames of the target, the same in every volume
    sign: Signer | None
    max_file_size: int
    manifest: bytes | None = None  # the transfer manifest's frames (format 2)


def write_volume(
    folder: Path,
    number: int,
    plan: VolumePlan,
    source: VolumeSource,
    advance: Callable[[int], None],
) -> WrittenVolume:
    """Write volume `number` into `folder/vol-NNNN` and make it durable."""
    path = folder / volume_name(number)
    path.mkdir()
    packs = _PackWriter(source, advance)
    try:
        files = [packs.write(path / pack_name(i + 1), i, pack) for i, pack in enumerate(plan.packs)]
    finally:
        packs.close()
    header = replace(source.header, volume=number)
    body = index_body(header, files, source.trees, packs.entries, source.manifest)
    index = seal_index(body, source.sign)
    if len(index) > min(plan.index_max, source.max_file_size):
        raise MediaError(f"{path}: index of {len(index)} bytes exceeds its planned bound (a bug)")
    write_index_file(path / INDEX_NAME, index)
    fsync_dir(path)
    written = WrittenVolume(number, path, len(packs.entries), plan.pack_bytes, len(index))
    if not header.parity:
        return written
    # Kept for the parity volumes written after the data volumes (only then: at a million
    # blobs, the entries cost some hundred megabytes).
    return replace(
        written, files=tuple(files), entries=tuple(packs.entries), end=index[len(body) :]
    )


@dataclass(frozen=True, slots=True)
class _Piece:
    digest: bytes
    at: int  # offset in the pack
    length: int
    source: str  # the source file it is copied from (for messages)


class _PackWriter:
    """Writes a volume's packs, noting where each piece lands."""

    def __init__(self, source: VolumeSource, advance: Callable[[int], None]) -> None:
        self._source = source
        self._advance = advance
        self._sources: dict[str, int] = {}  # open source files, oldest first
        self._copy_range = True
        self.entries: list[BlobEntry] = []

    def write(self, path: Path, file_no: int, pack: PackPlan) -> PackFile:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise MediaError(f"{path}: cannot create: {exc.strerror}") from exc
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
        offset = 0
        try:
            # One worker, so groups are hashed into the pack's checksum in order. Leaving
            # the block waits for it, so the pack is never closed under its mapping.
            with ThreadPoolExecutor(1, "syncd-export-verify") as pool:
                verifying: tuple[Future[None], list[_Piece]] | None = None
                for group in _groups(pack.blobs):
                    start, placed = offset, []
                    for digest, length in group:
                        placed.append(self._place(fd, path, _Piece(digest, offset, length, "")))
                        offset += length
                    start_writeback(fd, start, offset)  # the disk writes it while more are copied
                    future = pool.submit(_verify, fd, start, offset, placed, hasher)
                    if verifying is not None:
                        self._verified(file_no, *verifying)
                    verifying = (future, placed)
                if verifying is not None:
                    self._verified(file_no, *verifying)
            os.fsync(fd)
        except OSError as exc:
            raise MediaError(f"{path}: cannot write: {exc.strerror}") from exc
        finally:
            os.close(fd)
        return PackFile(path.name, offset, hasher.digest())

    def _verified(self, file_no: int, future: Future[None], placed: list[_Piece]) -> None:
        """Wait for a group's verification (raising what it raised); then it counts."""
        future.result()
        self.entries.extend(BlobEntry(p.digest, file_no, p.at, p.length) for p in placed)
        self._advance(sum(p.length for p in placed))

    def _place(self, fd: int, path: Path, piece: _Piece) -> _Piece:
        """Copy one piece to its offset in the pack; the piece, naming its source file."""
        where = self._source.locate(piece.digest)
        if where is None or where[2] != piece.length:
            raise MediaError(f"{path}: piece {piece.digest.hex()} is not in the snapshot (a bug)")
        rel, offset = where[0], where[1]
        piece = replace(piece, source=rel)
        source = self._open(rel)
        if self._copy_range:
            try:
                _copy_range(source, fd, offset, piece)
            except OSError as exc:
                if exc.errno not in _NO_COPY_RANGE:
                    raise
                self._copy_range = False  # another file system: read and write instead
        if not self._copy_range:
            _copy_through(source, fd, offset, piece)
        return piece

    def _open(self, rel: str) -> int:
        fd = self._sources.pop(rel, None)
        if fd is None:
            if len(self._sources) >= _OPEN_SOURCES:
                os.close(self._sources.pop(next(iter(self._sources))))
            try:
                fd = os.open(f"{self._source.root}/{rel}", _SOURCE_FLAGS)
            except OSError as exc:
                raise SourceChanged(
                    f"{rel}: cannot read it since the scan ({exc.strerror})"
                ) from exc
        self._sources[rel] = fd  # now the newest
        return fd

    def close(self) -> None:
        for fd in self._sources.values():
            os.close(fd)
        self._sources.clear()


def _groups(blobs: list[tuple[bytes, int]]) -> Iterator[list[tuple[bytes, int]]]:
    group: list[tuple[bytes, int]] = []
    size = 0
    for digest, length in blobs:
        if group and size + length > GROUP_BYTES:
            yield group
            group, size = [], 0
        group.append((digest, length))
        size += length
    if group:
        yield group


def _copy_range(source: int, fd: int, offset: int, piece: _Piece) -> None:
    if copy_range(source, fd, piece.length, offset, piece.at) < piece.length:
        raise SourceChanged(f"{piece.source} is shorter than when it was scanned; export again")


def _copy_through(source: int, fd: int, offset: int, piece: _Piece) -> None:
    data = os.pread(source, piece.length, offset)
    if len(data) != piece.length:
        raise SourceChanged(f"{piece.source} is shorter than when it was scanned; export again")
    pwrite_all(fd, data, piece.at)


def _verify(fd: int, start: int, end: int, placed: list[_Piece], hasher: blake3.blake3) -> None:
    """Hash the pack's bytes start..end as written: each piece against its digest, and
    all of them into the pack's checksum."""
    base = start - start % mmap.ALLOCATIONGRANULARITY
    with (
        mmap.mmap(fd, end - base, offset=base, access=mmap.ACCESS_READ) as mapped,
        memoryview(mapped) as view,
    ):
        hasher.update(view[start - base :])
        for piece in placed:
            at = piece.at - base
            if blake3.blake3(view[at : at + piece.length]).digest() != piece.digest:
                raise SourceChanged(f"{piece.source} changed since it was scanned; export again")


def write_index_file(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise MediaError(f"{path}: cannot create: {exc.strerror}") from exc
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as exc:
        raise MediaError(f"{path}: cannot write: {exc.strerror}") from exc
    finally:
        os.close(fd)
