"""Reproducible metadata: what a month changed gets that month's time, the rest keeps its own.

A snapshot taken before a month records every file (small files with their bytes) and
every directory's entries. Afterwards a file that is new or whose bytes changed, and a
directory whose entries changed, is set to the month's time; everything else gets its
old mtime back. Both ways of filling the cache (direct writes, or a registry that
rewrites identical link files) thus end with the same mtimes. Modes are set to 0644 and
0755 whatever the umask, since archive headers record them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

_SMALL = 64 * 1024  # files up to this size are compared by content; larger by size+mtime
FILE_MODE, DIR_MODE = 0o644, 0o755


@dataclass(frozen=True, slots=True)
class _File:
    size: int
    mtime_ns: int
    data: bytes | None


@dataclass(slots=True)
class Snapshot:
    files: dict[Path, _File] = field(default_factory=dict)
    dirs: dict[Path, tuple[int, frozenset[str]]] = field(default_factory=dict)


def take(top: Path) -> Snapshot:
    snapshot = Snapshot()
    for folder, dirs, files in os.walk(top) if top.is_dir() else ():
        path = Path(folder)
        snapshot.dirs[path] = (path.stat().st_mtime_ns, frozenset(dirs + files))
        for name in files:
            snapshot.files[path / name] = _read(path / name)
    return snapshot


def apply(
    top: Path, before: Snapshot, when_ns: int, *, always: frozenset[Path] = frozenset()
) -> None:
    """Set mtimes under `top` (inclusive); directories in `always` count as changed."""
    for folder, dirs, files in os.walk(top):
        path = Path(folder)
        old_dir = before.dirs.get(path)
        changed = old_dir is None or old_dir[1] != frozenset(dirs + files) or path in always
        _set(path, when_ns if changed or old_dir is None else old_dir[0], DIR_MODE)
        for name in files:
            _stamp_file(path / name, before.files.get(path / name), when_ns)


def _stamp_file(path: Path, old: _File | None, when_ns: int) -> None:
    if old is None:
        _set(path, when_ns, FILE_MODE)
        return
    now = _read(path)
    same = now.data == old.data if old.data is not None else now.size == old.size
    same = same and (old.data is not None or now.mtime_ns == old.mtime_ns)
    _set(path, old.mtime_ns if same else when_ns, FILE_MODE)


def _read(path: Path) -> _File:
    info = path.stat()
    data = path.read_bytes() if info.st_size <= _SMALL else None
    return _File(info.st_size, info.st_mtime_ns, data)


def _set(path: Path, mtime_ns: int, mode: int) -> None:
    info = path.lstat()
    if info.st_mode & 0o7777 != mode:
        path.chmod(mode)
    if info.st_mtime_ns != mtime_ns:
        os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
