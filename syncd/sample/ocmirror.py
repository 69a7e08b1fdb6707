"""The content folder as oc-mirror's mirror-to-disk leaves it.

A run removes old `mirror_*.tar`, then writes an archive set holding, in the order of
oc-mirror's MirrorArchive.BuildArchive: the cache's whole `repositories/` tree, the cache
blobs not named in the newest history file (in no set order), the whole working-dir, and
the image set config as `isc_<RFC3339>` last. Only then is the history appended (a new
cumulative file), so the working-dir inside an archive holds the history files of
earlier runs only. Losing the last archive thus loses working-dir and the config.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from syncd.sample.archive import ArchiveSet
from syncd.sample.plan import rfc3339
from syncd.sample.regstore import V2, Storage
from syncd.sample.tarformat import Owner

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


@dataclass(frozen=True, slots=True)
class Run:
    """One mirror-to-disk run: when, how archives are cut, who ran it, its randomness."""

    when: datetime
    archive_size: int
    owner: Owner
    shuffle: random.Random  # Go's map iteration order, made reproducible


def write_archives(
    cache: Path, content: Path, isc: bytes, run: Run
) -> tuple[list[Path], list[str]]:
    """Archive set for a run; returns the archives and the blobs they added.

    In BuildArchive's order (internal/pkg/archive/archive.go, openshift/oc-mirror commit
    855b64a3): the whole `repositories/` tree (filepath.Walk order), the blobs the
    history does not list (gathered in Go maps, so in no set order: shuffled here from
    the seed), then `working-dir/`, then the image set config `isc_<RFC 3339 UTC>`
    last. The history file is written after the archives.
    """
    newest = history_files(content)
    seen = read_history(newest[-1] if newest else None)
    storage = Storage.under(cache)
    added = sorted(storage.blob_digests() - seen)
    run.shuffle.shuffle(added)
    with ArchiveSet(content, run.archive_size, run.owner) as archives:
        for path in _walk_files(cache / V2 / "repositories"):
            archives.add_file(path, path.relative_to(cache).as_posix())
        for digest in added:
            path = storage.blob_path(digest)
            archives.add_file(path, path.relative_to(cache).as_posix())
        for path in _walk_files(content / WORKING_DIR):
            archives.add_file(path, path.relative_to(content).as_posix())
        stamp = int(run.when.timestamp())
        archives.add_bytes(f"isc_{rfc3339(run.when)}", isc, _FILE_MODE, stamp)
        paths = archives.close()
    return paths, sorted(added)


def append_history(content: Path, run: Run, added: list[str]) -> Path:
    """A new cumulative history file: the newest one's blobs plus those just archived,
    one a line in no set order (history.go writes them from a Go set)."""
    newest = history_files(content)
    blobs = sorted(read_history(newest[-1] if newest else None) | set(added))
    run.shuffle.shuffle(blobs)
    path = content / HISTORY_DIR / f"{HISTORY_PREFIX}{rfc3339(run.when)}"
    path.write_text("".join(f"{digest}\n" for digest in blobs))
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
