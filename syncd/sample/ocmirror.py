"""The content folder as oc-mirror's mirror-to-disk leaves it.

A run removes old `mirror_*.tar`, then writes an archive set holding, in the order of
oc-mirror's MirrorArchive.BuildArchive: the cache's whole `repositories/` tree, the whole
working-dir, the image set config as `isc_<RFC3339>`, and the cache blobs not named in
the newest history file. Only then is the history appended (a new cumulative file), so
the working-dir inside an archive holds the history files of earlier runs only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from syncd.sample.archive import ArchiveSet
from syncd.sample.plan import rfc3339
from syncd.sample.regstore import V2, Storage

CACHE = Path(".oc-mirror/.cache")  # oc-mirror's cache under --cache-dir
CONTENT = Path("content")  # mirror-to-disk's destination
WORKING_DIR = "working-dir"
HISTORY_DIR = Path(WORKING_DIR) / ".history"
HISTORY_PREFIX = ".history-"
_FILE_MODE = 0o644


def history_files(content: Path) -> list[Path]:
    """History files, oldest first (their names sort by time: RFC 3339 in UTC)."""
    folder = content / HISTORY_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.startswith(HISTORY_PREFIX))


def read_history(path: Path | None) -> set[str]:
    if path is None:
        return set()
    return {line for line in path.read_text().splitlines() if line}


def remove_archives(content: Path) -> None:
    for old in content.glob("mirror_*.tar"):
        old.unlink()


def write_working_dir(content: Path, files: dict[str, bytes]) -> None:
    """Write files under working-dir, leaving identical ones untouched."""
    for name, data in sorted(files.items()):
        path = content / WORKING_DIR / name
        if path.is_file() and path.read_bytes() == data:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (content / HISTORY_DIR).mkdir(parents=True, exist_ok=True)


def write_archives(
    cache: Path, content: Path, isc: bytes, when: datetime, archive_size: int
) -> tuple[list[Path], list[str]]:
    """Archive set for a run at `when`; returns the archives and the blobs they added."""
    newest = history_files(content)
    seen = read_history(newest[-1] if newest else None)
    storage = Storage.under(cache)
    added = sorted(storage.blob_digests() - seen)
    with ArchiveSet(content, archive_size) as archives:
        for path in _walk_files(cache / V2 / "repositories"):
            archives.add_file(path, path.relative_to(cache).as_posix())
        for path in _walk_files(content / WORKING_DIR):
            archives.add_file(path, path.relative_to(content).as_posix())
        archives.add_bytes(f"isc_{rfc3339(when)}", isc, _FILE_MODE, int(when.timestamp()))
        for digest in added:
            path = storage.blob_path(digest)
            archives.add_file(path, path.relative_to(cache).as_posix())
        paths = archives.close()
    return paths, added


def append_history(content: Path, when: datetime, added: list[str]) -> Path:
    """A new cumulative history file: the newest one's blobs plus those just archived."""
    newest = history_files(content)
    blobs = read_history(newest[-1] if newest else None) | set(added)
    path = content / HISTORY_DIR / f"{HISTORY_PREFIX}{rfc3339(when)}"
    path.write_text("".join(f"{digest}\n" for digest in sorted(blobs)))
    return path


def _walk_files(top: Path) -> Iterator[Path]:
    """Regular files in Go filepath.Walk order: names sorted, depth first."""
    with os.scandir(top) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    for entry in entries:
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            yield from _walk_files(path)
        elif entry.is_file(follow_symlinks=False):
            yield path
