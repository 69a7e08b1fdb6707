"""Scan a root and keep the result in its state folder: the entry point for commands."""

from __future__ import annotations

import contextlib
import dataclasses
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

from syncd.errors import SnapshotFileError, SyncdError, UsageError
from syncd.roots import real_root
from syncd.scan.problems import Problem, Reporter
from syncd.scan.scanner import Scanner, ScanOptions, Writers
from syncd.scan.statcache import StatCache, StatCacheWriter
from syncd.snapshot import SnapshotReader, SnapshotWriter, Summary
from syncd.state import StateDir
from syncd.store.recordfile import replace_atomically


@dataclass(frozen=True, slots=True)
class ScanResult:
    summary: Summary
    hashed_bytes: int
    seconds: float
    snapshot_path: Path
    problems: list[Problem] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        s = self.summary
        return {
            "snapshot": s.id_hex,
            "files": s.files,
            "dirs": s.dirs,
            "symlinks": s.symlinks,
            "bytes": s.bytes,
            "hashed_bytes": self.hashed_bytes,
            "seconds": round(self.seconds, 3),
            "complete": s.complete,
            "snapshot_file": str(self.snapshot_path),
            "problems": [p.as_json() for p in self.problems],
        }


class ScanFailed(SyncdError):
    """An OSError that stopped a scan: one about a file of the tree is a problem and the
    scan goes on, so this is nearly always the state folder (read-only, full)."""

    def __init__(self, root: Path, cause: OSError) -> None:
        where = f" ({cause.filename})" if cause.filename else ""
        super().__init__(f"scanning {root}: {cause.strerror or cause}{where}")
        self.cause = cause


def scan_root(
    root: Path,
    state: StateDir,
    options: ScanOptions | None = None,
    report: Reporter | None = None,
) -> ScanResult:
    """Scan `root` incrementally; on success the state folder holds the new snapshot.
    A root behind a symlink is scanned at its real path (syncd/roots.py)."""
    root = real_root(root)
    if not root.is_dir():
        raise UsageError(f"{root}: not a directory")
    options = options or ScanOptions()
    excluded = state.excluded_relpath()
    if excluded:
        options = dataclasses.replace(options, exclude=options.exclude | {excluded})
    problems: list[Problem] = []

    def collect(problem: Problem) -> None:
        problems.append(problem)
        if report is not None:
            report(problem)

    _raise_open_file_limit()
    started = time.monotonic()
    with state.lock():
        try:
            summary, hashed = _scan_into_state(root, state, options, collect)
        except OSError as exc:
            raise ScanFailed(root, exc) from exc
    return ScanResult(summary, hashed, time.monotonic() - started, state.snapshot, problems)


def _scan_into_state(
    root: Path, state: StateDir, options: ScanOptions, report: Reporter
) -> tuple[Summary, int]:
    _remove_temporaries(state)  # left by a scan that was killed while writing
    cache = StatCache.open(state.statcache)
    try:
        scanner = Scanner(root, cache, options=options, report=report)
        summary = scanner.unchanged_summary(lambda found: _holds(state.snapshot, found))
        if summary is not None:
            return summary, 0  # the state files already say all of it: nothing is written
        summary = _write_scan(scanner, state)
    finally:
        cache.close()
    return summary, scanner.hashed_bytes


def _write_scan(scanner: Scanner, state: StateDir) -> Summary:
    snap_tmp, cache_tmp = _temporaries(state)
    try:
        with snap_tmp.open("wb") as snap_out, cache_tmp.open("wb") as cache_out:
            out = Writers(SnapshotWriter(snap_out), StatCacheWriter(cache_out))
            summary = scanner.run(out)
            keep = scanner.unchanged and _holds(state.snapshot, summary)
            if not keep:
                out.snapshot.finish(summary)
                out.statcache.finish()
    except BaseException:
        _remove_temporaries(state)
        raise
    if keep:
        # Every record was the last scan's: the state files already say all of it.
        _remove_temporaries(state)
    else:
        replace_atomically(snap_tmp, state.snapshot)
        replace_atomically(cache_tmp, state.statcache)
    return summary


def _temporaries(state: StateDir) -> tuple[Path, Path]:
    return state.path / "snapshot.tmp", state.path / "statcache.tmp"


def _remove_temporaries(state: StateDir) -> None:
    for tmp in _temporaries(state):
        tmp.unlink(missing_ok=True)


def _holds(path: Path, summary: Summary) -> bool:
    """The snapshot file at `path` is readable and describes exactly `summary`."""
    try:
        with SnapshotReader(path) as old:
            return old.summary == summary
    except SnapshotFileError:
        return False


def _raise_open_file_limit() -> None:
    # The walk holds one directory descriptor per level of depth.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, 65536), hard))
