"""A power-loss model of a file system, built by watching every fsync of a real run.

The model (POSIX's promise, nothing more):

- an object is a file or a directory, named by its inode (tmpfs never reuses one within
  a run, so the number is an identity);
- `fsync(fd)` makes durable the object's state as it is at that moment: a file's bytes,
  mode and mtime; a directory's entries (name -> inode, kind, symlink target) and mode;
  `syncfs(fd)` (syncd.apply.durable.syncfs) does so for every object at once;
- nothing else is ever durable: not a file's data before its fsync, not a new name, a
  rename or an unlink before its directory's fsync (and a file's fsync does not persist
  the entry that names it); a rename is atomic per directory - each directory shows the
  name either as it was or as it is - but the two directories of a cross-directory rename
  are independent, so the entry may survive in both or in neither;
- after a power loss, each object is as its last fsync left it (or as it was when the run
  began, everything then being durable); an object never fsynced is empty: a file of no
  bytes, mode 0600, a directory with no entries.

`Recorder` wraps `os.fsync`, `os.fdatasync` and `durable.syncfs` in this process; at
each call it records the durable images it made and, for the mixed states, an image of
the whole tree as it is (what a power loss could also keep, object by object).
`durable_after(k)` is the worst crash state after the first k syncs; `mixed` picks, per
object, its durable or its current image; `materialize` writes a state out as a real
tree.
"""

# It works on str paths and /proc/self/fd links with os-level calls, as the scanner does:
# ruff: noqa: PTH115, PTH116, PTH118, PTH208, PTH211

from __future__ import annotations

import os
import random
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from syncd.apply import durable

Ino = tuple[int, int]
_EMPTY_FILE_MODE = 0o100600


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    ino: Ino
    kind: str  # "dir", "file" or "link"
    target: str | None = None  # a symlink's target (written with the entry)


@dataclass(frozen=True, slots=True)
class FileImage:
    data: bytes
    mode: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class DirImage:
    entries: tuple[Entry, ...]
    mode: int


Image = FileImage | DirImage
Images = dict[Ino, Image]


def _ino(st: os.stat_result) -> Ino:
    return st.st_dev, st.st_ino


class _Reader:
    """Images of files and directories, file bytes cached by their stat (a file whose
    size, mtime and ctime did not change was not written)."""

    def __init__(self) -> None:
        self._bytes: dict[tuple[int, ...], bytes] = {}

    def file(self, path: str, st: os.stat_result) -> FileImage:
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        data = self._bytes.get(key)
        if data is None:
            with open(path, "rb") as stream:
                data = self._bytes[key] = stream.read()
        return FileImage(data, st.st_mode, st.st_mtime_ns)

    def directory(self, path: str, st: os.stat_result) -> DirImage:
        entries = []
        for name in sorted(os.listdir(path)):
            entry = _entry(os.path.join(path, name), name)
            if entry is not None:
                entries.append(entry)
        return DirImage(tuple(entries), st.st_mode)

    def tree(self, root: Path) -> Images:
        """Every object reachable from `root` as it is now (vanishing entries skipped)."""
        images: Images = {}
        stack = [str(root)]
        while stack:
            path = stack.pop()
            try:
                st = os.lstat(path)
                if stat.S_ISDIR(st.st_mode):
                    folder = self.directory(path, st)
                    stack += [os.path.join(path, e.name) for e in folder.entries]
                    image: Image = folder
                elif stat.S_ISREG(st.st_mode):
                    image = self.file(path, st)
                else:
                    continue
            except FileNotFoundError:
                continue  # renamed or removed while we looked: the next image has it
            images[_ino(st)] = image
        return images


def _entry(path: str, name: str) -> Entry | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        return Entry(name, _ino(st), "dir")
    if stat.S_ISLNK(st.st_mode):
        return Entry(name, _ino(st), "link", os.readlink(path))
    return Entry(name, _ino(st), "file")


@dataclass
class Recorder:
    """Watches fsyncs under `root` while active (`with recorder:`)."""

    root: Path
    initial: Images = field(default_factory=dict)
    # What each sync made durable, and what it synced (a path, or "syncfs").
    events: list[tuple[Images, str]] = field(default_factory=list)
    # The whole tree at each event (the unsynced changes made before it), then at the end.
    currents: list[Images] = field(default_factory=list)
    _reader: _Reader = field(default_factory=_Reader)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _saved: list[Callable[..., None]] = field(default_factory=list)

    def __enter__(self) -> Recorder:
        self.initial = self._reader.tree(self.root)
        self._saved = [os.fsync, os.fdatasync, durable.syncfs]
        os.fsync = self._wrap(self._saved[0], self._record)
        os.fdatasync = self._wrap(self._saved[1], self._record)
        durable.syncfs = self._wrap(self._saved[2], self._record_all)
        return self

    def __exit__(self, *exc: object) -> None:
        os.fsync, os.fdatasync, durable.syncfs = self._saved
        # What a power loss after the last fsync could also keep: the tree as it ends.
        self.currents.append(self._reader.tree(self.root))

    def _wrap(
        self, real: Callable[..., None], record: Callable[[int], None]
    ) -> Callable[..., None]:
        def synced(fd: int) -> None:
            # One at a time: the image is taken right after the sync it describes.
            with self._lock:
                real(fd)
                record(fd)

        return synced

    def _record_all(self, fd: int) -> None:
        """A syncfs: every object as it is now is durable."""
        images = self._reader.tree(self.root)
        self.events.append((images, "syncfs"))
        self.currents.append(images)

    def _record(self, fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if not path.startswith(str(self.root)):
            return  # not ours (another tree, a pipe)
        st = os.fstat(fd)
        proc = f"/proc/self/fd/{fd}"
        if stat.S_ISDIR(st.st_mode):
            image: Image = self._reader.directory(proc, st)
        else:
            image = self._reader.file(proc, st)
        self.events.append(({_ino(st): image}, path.removeprefix(str(self.root))))
        self.currents.append(self._reader.tree(self.root))

    def durable_after(self, k: int) -> Images:
        """The worst crash state after the first k fsyncs: only what they made durable."""
        images = dict(self.initial)
        for synced, _ in self.events[:k]:
            images.update(synced)
        return images

    @property
    def root_ino(self) -> Ino:
        return _ino(os.stat(self.root))


def mixed(durable_images: Images, current: Images, rng: random.Random) -> Images:
    """Each object as durable or as it was at the crash, independently (a never-synced
    object's durable state is empty: a file of no bytes, a directory with no entries)."""
    images = dict(durable_images)
    for ino, image in current.items():
        if rng.random() < 0.5:
            images[ino] = image
    return images


def materialize(images: Images, root: Ino, dest: Path) -> None:
    """Write the state reachable from the `root` directory out as a real tree at `dest`."""
    dest.mkdir()
    modes: list[tuple[Path, int]] = []
    for path, entry in _walk(images, root, dest, {root}):
        image = images.get(entry.ino)
        if entry.kind == "link":
            os.symlink(entry.target or "", path)
        elif entry.kind == "dir":
            path.mkdir()
            mode = image.mode if isinstance(image, DirImage) else 0o40700
            modes.append((path, mode))
        else:
            _write_file(path, image if isinstance(image, FileImage) else None)
    for path, mode in reversed(modes):  # deepest first: a read-only parent is set last
        path.chmod(stat.S_IMODE(mode))


def _write_file(path: Path, image: FileImage | None) -> None:
    if image is None:
        image = FileImage(b"", _EMPTY_FILE_MODE, 0)  # never fsynced: its bytes are lost
    path.write_bytes(image.data)
    path.chmod(stat.S_IMODE(image.mode))
    os.utime(path, ns=(image.mtime_ns, image.mtime_ns))


def _walk(images: Images, folder: Ino, dest: Path, above: set[Ino]) -> Iterator[tuple[Path, Entry]]:
    """Entries parent first; a directory met again below itself is left empty."""
    image = images.get(folder)
    if not isinstance(image, DirImage):
        return
    for entry in image.entries:
        yield dest / entry.name, entry
        if entry.kind == "dir" and entry.ino not in above:
            yield from _walk(images, entry.ino, dest / entry.name, above | {entry.ino})
