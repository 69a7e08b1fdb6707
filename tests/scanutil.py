"""Helpers for scan tests: run scans in-process or through the real CLI."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

from protocol.tree import FileNode
from syncd.scan.api import ScanResult, scan_root
from syncd.scan.scanner import ScanOptions
from syncd.snapshot import SnapshotReader
from syncd.state import StateDir

PROJECT = Path(__file__).resolve().parent.parent


def scan(root: Path, **options: object) -> ScanResult:
    return scan_root(root, StateDir(root), ScanOptions(**options))  # type: ignore[arg-type]


def files(root: Path) -> dict[str, FileNode]:
    """Every file node of the root's latest snapshot, by path."""
    with SnapshotReader(StateDir(root).snapshot) as snap:
        return {path: node for path, node in snap.walk() if isinstance(node, FileNode)}


def run_cli(*args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    """`syncd ARGS` in a child process, optionally as another user (tests run as root)."""
    command = [sys.executable, "-m", "syncd", *args]
    if user is not None:
        entry = pwd.getpwnam(user)
        ids = [f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]
        command = ["setpriv", *ids, *command]
    env = dict(os.environ, PYTHONPATH=str(PROJECT))
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=300, check=False
    )


def set_mtimes(root: Path, ns: int = 1_700_000_000_000_000_000) -> None:
    """Give every entry the same mtime so that equal trees are equal snapshots."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(Path(dirpath) / name, ns=(ns, ns), follow_symlinks=False)
