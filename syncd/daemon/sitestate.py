"""What the daemon remembers per site, in `STATE/daemon/<site>.json` (written atomically).

`syncd status` reads these files, also while the daemon runs, so each one is always a
whole JSON object: written to a temporary file, fsynced, renamed over the old one.
Times are seconds since the epoch (wall clock), so that they survive restarts and are
meaningful to another process.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from syncd.apply.durable import write_atomically

FOLDER = "daemon"
DAEMON_FILE = "daemon.json"


@dataclass(slots=True)
class SiteState:
    site: str
    target: str = ""
    phase: str = "idle"  # idle, waiting-window, pushing, backoff, done
    snapshot_applied: str | None = None  # the far side's snapshot id after the last session
    offered: str | None = None  # the snapshot last offered to it
    complete: str | None = None  # the snapshot for which push, verify, post-apply all held
    last_success: float | None = None
    last_attempt: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    failures: int = 0  # consecutive
    plan_bytes: int | None = None  # what the far side's last PLAN asked for
    bytes_pending: int | None = None  # of that, what had not arrived when the session ended
    bytes_sent_total: int = 0
    next_attempt: float | None = None  # None: when the tree next changes
    verify: dict[str, Any] | None = None  # status, summary, snapshot, at
    post_apply: dict[str, Any] | None = None  # status, exit_status, output, snapshot, at

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def state_folder(state_dir: Path) -> Path:
    return state_dir / FOLDER


def site_file(state_dir: Path, site: str) -> Path:
    return state_folder(state_dir) / f"{site}.json"


def load_site(state_dir: Path, site: str) -> SiteState:
    """The stored state, or a fresh one when there is none (or it is unreadable)."""
    try:
        data = json.loads(site_file(state_dir, site).read_text())
    except (OSError, ValueError):
        return SiteState(site)
    known = {f.name for f in fields(SiteState)}
    if not isinstance(data, dict):
        return SiteState(site)
    kept = {key: value for key, value in data.items() if key in known}
    kept["site"] = site
    try:
        return SiteState(**kept)
    except TypeError:
        return SiteState(site)


def save_site(state_dir: Path, state: SiteState) -> None:
    _write_json(site_file(state_dir, state.site), state.as_json())


def save_daemon(state_dir: Path, info: dict[str, Any]) -> None:
    _write_json(state_folder(state_dir) / DAEMON_FILE, info)


def load_daemon(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((state_folder(state_dir) / DAEMON_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


def pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
