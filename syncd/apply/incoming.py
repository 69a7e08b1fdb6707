"""Large files assembled while their pieces arrive, so that their bytes are written once.

A blob staged in a pack and later copied into its file is written twice; on a far side
bound by its disk (most are: 400 MB/s here, against 2.5 GB of a month's tree) that is
what a push costs. So each large file the far side must build, and for which at least
one piece comes over the wire, gets a work file in `STATE/incoming` as soon as the
descent meets it: every arriving piece is written at its offsets in every such file,
the remaining holes are filled from local sources at the end of the transfer (the live
tree, including files the apply will replace, or the packs), and the apply links the
finished file into place instead of writing it again (a link, not a move: until the
apply has finished, a crash or a full disk must not lose the only copy of its pieces).

Files are named by a content key, BLAKE3 of the recipe's canonical encoding, so equal
contents share one work file. A sidecar `<key>.recipe` says what the file must hold.
A work file starts empty and grows as pieces land: a declared size is never allocated.

Only the work files of the current session's target are *active*: their holes wait for
pieces and are filled at the end of the transfer. Work files left by other sessions (an
interrupted push, an export superseded, a hostile client) are only sources: the pieces
they hold count as staged, and their holes are nobody's business, so an abandoned file
never blocks a later session; staging.py drops them by age or when room is needed.

After a crash `open` hashes each piece region that holds data (holes, found with
SEEK_HOLE, and regions past the end are not read): regions that match are kept (and
count as staged for the next push), anything else is a hole to fill.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import blake3

from protocol.codec import pack, unpack
from protocol.errors import ProtocolError
from protocol.tree import Recipe, decode_recipe
from syncd.apply.durable import copy_range, fsync_dir, pwrite_all, write_atomically
from syncd.apply.errors import StagingError, stage_failed
from syncd.apply.writeback import Writeback

ASSEMBLE_MIN = 1 << 20  # smaller files are built from the packs: one copy costs little
_OPEN_FILES = 64
_SIDECAR = ".recipe"
_RW = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC

PieceSource = Callable[[bytes, int], bytes | None]


def content_key(recipe: Recipe) -> bytes:
    return blake3.blake3(pack([list(piece) for piece in recipe])).digest()


@dataclass(slots=True)
class _Assembly:
    key: bytes
    recipe: Recipe
    offsets: list[int]
    filled: bytearray
    remaining: int = field(default=0)
    active: bool = False  # the current target needs it: its holes wait for pieces

    @property
    def name(self) -> str:
        return self.key.hex()

    @property
    def size(self) -> int:
        return self.offsets[-1] + self.recipe[-1][1] if self.recipe else 0

    def missing_bytes(self) -> int:
        return sum(
            length for (_, length), done in zip(self.recipe, self.filled, strict=True) if not done
        )


@dataclass(frozen=True, slots=True)
class WorkFile:
    """A work file as the staging quota sees it."""

    key: bytes
    used: float  # when it was last written or needed (seconds since the epoch)
    allocated: int  # bytes it takes on disk
    active: bool  # the current target fills it
    taken_bytes: int  # bytes of pieces the current target takes from it

    @property
    def needed(self) -> bool:
        return self.active or self.taken_bytes > 0


class Incoming:
    def __init__(self, folder: Path) -> None:
        """Use `Incoming.open`."""
        self.folder = folder
        self._files: dict[bytes, _Assembly] = {}
        self._pending: dict[bytes, list[tuple[bytes, int]]] = {}  # digest -> (file, piece)
        self._filled: dict[bytes, list[tuple[bytes, int]]] = {}  # digest -> regions holding it
        self._fds: OrderedDict[bytes, int] = OrderedDict()
        self._dirty: set[bytes] = set()
        self._writeback = Writeback()
        self._taken: set[bytes] = set()  # pieces the current target takes from work files

    @classmethod
    def open(cls, folder: Path) -> Incoming:
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            incoming = cls(folder)
            incoming._recover()
        except OSError as exc:
            raise StagingError(f"cannot use {folder}: {exc.strerror}") from exc
        return incoming

    # -- planning -------------------------------------------------------------------

    def missing_bytes(self, recipe: Recipe) -> int:
        """Bytes still to write into this content's work file (all, if it has none)."""
        assembly = self._files.get(content_key(recipe))
        if assembly is None:
            return sum(length for _, length in recipe)
        return assembly.missing_bytes()

    def prepare(self, recipe: Recipe) -> int:
        """Make this content's work file (once) active: its holes wait for pieces. The
        bytes still to write into it, the first time it becomes active (else 0)."""
        key = content_key(recipe)
        assembly = self._files.get(key)
        if assembly is None:
            assembly = _new_assembly(key, recipe)
            path = self.folder / assembly.name
            try:
                write_atomically(
                    path.with_name(assembly.name + _SIDECAR), pack([list(p) for p in recipe])
                )
                # Empty: it grows as pieces land, so a declared size costs nothing until then.
                os.close(os.open(path, _RW | os.O_CREAT | os.O_TRUNC, 0o600))
            except OSError as exc:
                raise StagingError(f"cannot create work file {path}: {exc.strerror}") from exc
            assembly.remaining = len(recipe)
            self._files[key] = assembly
        if assembly.active:
            return 0
        assembly.active = True
        with contextlib.suppress(OSError):  # its age: needed now
            os.utime(self.folder / (assembly.name + _SIDECAR))
        for index, (digest, _) in enumerate(assembly.recipe):
            if not assembly.filled[index]:
                self._pending.setdefault(digest, []).append((key, index))
        return assembly.missing_bytes()

    # -- pieces in ------------------------------------------------------------------

    def needs(self, digest: bytes) -> bool:
        """An active work file waits for this piece."""
        return digest in self._pending

    def has(self, digest: bytes) -> bool:
        """A finished region holds this piece (it counts as staged)."""
        return digest in self._filled

    def use(self, digest: bytes) -> bool:
        """Whether a finished region holds this piece; if so, the current target takes
        it from there, so the files holding it are needed."""
        regions = self._filled.get(digest)
        if regions:
            self._taken.add(digest)
        return bool(regions)

    def release(self, key: bytes, keep: Callable[[bytes, bytes], None]) -> None:
        """Hand the pieces the current target takes from this inactive work file to
        `keep` (the packs), so that it can be dropped: an old file a few shared pieces
        kept needed."""
        assembly = self._files[key]
        assert not assembly.active, "the current target fills it"
        for index, (digest, length) in enumerate(assembly.recipe):
            if assembly.filled[index] and digest in self._taken:
                data = os.pread(self._fd(key), length, assembly.offsets[index])
                if blake3.blake3(data).digest() == digest:
                    keep(digest, data)
                    self._taken.discard(digest)

    def finished(self) -> Iterator[tuple[bytes, int]]:
        """(digest, length) of every piece a finished region holds (counted as staged)."""
        for digest, regions in self._filled.items():
            key, index = regions[0]
            yield digest, self._files[key].recipe[index][1]

    def put(self, digest: bytes, data: bytes | memoryview) -> None:
        """Write a verified piece into every region of an active file waiting for it:
        the first from `data`, the others copied from the first in the kernel (the same
        piece is often in a registry's blob file and in an archive; the kernel's copy
        between page-cache pages costs half a write from user memory)."""
        regions = self._pending.get(digest, [])
        written: tuple[bytes, int] | None = None  # (file, offset) of a region holding it
        while regions:
            key, index = regions[-1]
            assembly = self._files[key]
            offset = assembly.offsets[index]
            try:
                self._write_piece(key, offset, data, written)
            except OSError as exc:  # the regions not written still wait for the piece
                raise stage_failed(digest, self.folder / assembly.name, exc) from exc
            regions.pop()
            self._mark_filled(assembly, index)
            self._dirty.add(key)
            written = written or (key, offset)
        self._pending.pop(digest, None)

    def _write_piece(
        self, key: bytes, offset: int, data: bytes | memoryview, written: tuple[bytes, int] | None
    ) -> None:
        fd = self._fd(key)
        copied = 0
        if written is not None:
            source = self._fd(written[0])  # opening it closes the least recently used, not fd
            with contextlib.suppress(OSError):  # a file system without it: written below
                copied = copy_range(source, fd, len(data), written[1], offset)
        if copied < len(data):
            pwrite_all(fd, data, offset)
        self._writeback.wrote(key, fd, offset, len(data))

    def _mark_filled(self, assembly: _Assembly, index: int) -> None:
        assembly.filled[index] = 1
        assembly.remaining -= 1
        self._filled.setdefault(assembly.recipe[index][0], []).append((assembly.key, index))

    def read(self, digest: bytes, length: int) -> bytes | None:
        """A finished region's bytes for this piece, verified; None if none holds it."""
        for key, index in self._filled.get(digest, ()):
            data = os.pread(self._fd(key), length, self._files[key].offsets[index])
            if blake3.blake3(data).digest() == digest:
                return data
        return None

    def fill(self, source: PieceSource) -> list[tuple[bytes, int]]:
        """Fill every hole of the active files from finished regions or `source`; the
        pieces found nowhere."""
        missing = []
        for digest in list(self._pending):
            key, index = self._pending[digest][0]
            length = self._files[key].recipe[index][1]
            data = self.read(digest, length) or source(digest, length)
            if data is None:
                missing.append((digest, length))
            else:
                self.put(digest, data)
        return missing

    def pending_pieces(self) -> int:
        return len(self._pending)

    def flush(self) -> None:
        """Make every piece written so far durable (OSError: the caller names it)."""
        for key in sorted(self._dirty):
            os.fsync(self._fd(key))
        if self._dirty:
            fsync_dir(self.folder)
        self._dirty.clear()
        self._writeback.clear()

    # -- files out ------------------------------------------------------------------

    def complete(self, recipe: Recipe) -> bool:
        assembly = self._files.get(content_key(recipe))
        return assembly is not None and assembly.remaining == 0

    def take(self, recipe: Recipe, dir_fd: int, name: str, *, last: bool) -> bool:
        """Put the finished file for `recipe` at `name` in `dir_fd`: hard-linked if this
        is its last use, else copied. The work file itself stays until staging is
        cleared, so an apply cut short anywhere still finds every piece it held. False
        when no finished file holds this content."""
        key = content_key(recipe)
        assembly = self._files.get(key)
        if assembly is None or assembly.remaining:
            return False
        if not last:
            self._copy_to(key, dir_fd, name)
            return True
        self.flush()
        folder = os.open(self.folder, _DIR)
        try:
            os.link(
                assembly.name, name, src_dir_fd=folder, dst_dir_fd=dir_fd, follow_symlinks=False
            )
        finally:
            os.close(folder)
        return True

    def _copy_to(self, key: bytes, dir_fd: int, name: str) -> None:
        source = self._fd(key)
        size = os.fstat(source).st_size
        target = os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=dir_fd
        )
        try:
            if copy_range(source, target, size, 0, 0) < size:
                raise StagingError(f"{self.folder / key.hex()} shrank while being copied")
        finally:
            os.close(target)

    # -- housekeeping ---------------------------------------------------------------

    def _fd(self, key: bytes) -> int:
        fd = self._fds.get(key)
        if fd is not None:
            self._fds.move_to_end(key)
            return fd
        if len(self._fds) >= _OPEN_FILES:
            old_key, old_fd = self._fds.popitem(last=False)
            if old_key in self._dirty:
                os.fsync(old_fd)
                self._dirty.discard(old_key)
            os.close(old_fd)
        fd = self._fds[key] = os.open(self.folder / key.hex(), _RW)
        return fd

    def work_files(self) -> Iterator[WorkFile]:
        """Every work file, with its age and the space it takes."""
        for key, assembly in self._files.items():
            used = 0.0
            allocated = 0
            for name in (assembly.name, assembly.name + _SIDECAR):
                with contextlib.suppress(FileNotFoundError):
                    st = (self.folder / name).lstat()
                    used = max(used, st.st_mtime)
                    allocated += st.st_blocks * 512
            taken = sum(
                length
                for (digest, length), done in zip(assembly.recipe, assembly.filled, strict=True)
                if done and digest in self._taken
            )
            yield WorkFile(key, used, allocated, assembly.active, taken)

    def drop(self, key: bytes) -> None:
        """Remove an inactive work file: its pieces no longer count as staged. The
        sidecar goes first: a crash in between leaves an orphan that `open` removes."""
        assembly = self._files[key]
        assert not assembly.active, "the current target fills it"
        assert not any(
            done and digest in self._taken
            for (digest, _), done in zip(assembly.recipe, assembly.filled, strict=True)
        ), "the current target takes pieces from it"
        del self._files[key]
        fd = self._fds.pop(key, None)
        if fd is not None:
            os.close(fd)
        self._dirty.discard(key)
        for digest, _ in assembly.recipe:
            regions = self._filled.get(digest)
            if regions is not None:
                regions[:] = [r for r in regions if r[0] != key]
                if not regions:
                    del self._filled[digest]
        for name in (assembly.name + _SIDECAR, assembly.name):
            with contextlib.suppress(FileNotFoundError):
                (self.folder / name).unlink()

    def _recover(self) -> None:
        for sidecar in sorted(self.folder.glob("*" + _SIDECAR)):
            assembly = self._recovered(sidecar)
            if assembly is None:
                sidecar.unlink()
                with contextlib.suppress(FileNotFoundError):
                    (self.folder / sidecar.name.removesuffix(_SIDECAR)).unlink()
                continue
            self._files[assembly.key] = assembly
            for index, done in enumerate(assembly.filled):
                if done:
                    self._filled.setdefault(assembly.recipe[index][0], []).append(
                        (assembly.key, index)
                    )
        for path in self.folder.iterdir():
            if (
                not path.name.endswith(_SIDECAR)
                and not (self.folder / (path.name + _SIDECAR)).exists()
            ):
                path.unlink()  # a work file whose sidecar never became durable

    def _recovered(self, sidecar: Path) -> _Assembly | None:
        try:
            value = unpack(sidecar.read_bytes())
            recipe = decode_recipe(value, what=str(sidecar))
            key = bytes.fromhex(sidecar.name.removesuffix(_SIDECAR))
        except (ProtocolError, ValueError):
            return None
        if content_key(recipe) != key:
            return None
        assembly = _new_assembly(key, recipe)
        try:
            fd = os.open(self.folder / assembly.name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        try:
            size = os.fstat(fd).st_size
            if size > assembly.size:
                return None
            for index, (digest, length) in enumerate(recipe):
                offset = assembly.offsets[index]
                if offset + length <= size and _all_data(fd, offset, length):
                    data = os.pread(fd, length, offset)
                    assembly.filled[index] = blake3.blake3(data).digest() == digest
        finally:
            os.close(fd)
        assembly.remaining = len(recipe) - sum(assembly.filled)
        return assembly

    def files(self) -> Iterator[tuple[bytes, int]]:
        """(content key, pieces still missing) of every work file."""
        for key, assembly in self._files.items():
            yield key, assembly.remaining

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def clear(self) -> None:
        self.close()
        if self.folder.is_dir():
            for path in self.folder.iterdir():
                path.unlink()
        self._files.clear()
        self._pending.clear()
        self._filled.clear()
        self._dirty.clear()
        self._taken.clear()


def _all_data(fd: int, offset: int, length: int) -> bool:
    """Whether [offset, offset+length) holds no hole: bytes were written there. A file
    system without SEEK_HOLE reports none, and the region is simply hashed."""
    try:
        return os.lseek(fd, offset, os.SEEK_HOLE) >= offset + length
    except OSError:
        return False


def _new_assembly(key: bytes, recipe: Recipe) -> _Assembly:
    offsets = []
    position = 0
    for _, length in recipe:
        offsets.append(position)
        position += length
    return _Assembly(key, recipe, offsets, bytearray(len(recipe)))
