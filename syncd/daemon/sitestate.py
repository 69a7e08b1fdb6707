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
from syncd.errors import SyncdError

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
    plan_snapshot: str | None = None  # the snapshot that PLAN was for
    # Of that, what had not been sent at the last checkpoint: saved every few seconds
    # during a transfer, and when the session ends or is stopped.
    bytes_pending: int | None = None
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


class StateFileError(SyncdError):
    """A daemon state file holds something other than what syncd writes there."""


_TEXT, _NUMBER, _COUNT, _RECORD = (str,), (int, float), (int,), (dict,)
# The type each field may have in a file (None is allowed where the default is None).
_SITE_TYPES: dict[str, tuple[type, ...]] = {
    "site": _TEXT,
    "target": _TEXT,
    "phase": _TEXT,
    "snapshot_applied": _TEXT,
    "offered": _TEXT,
    "complete": _TEXT,
    "last_success": _NUMBER,
    "last_attempt": _NUMBER,
    "last_error": _TEXT,
    "last_error_at": _NUMBER,
    "failures": _COUNT,
    "plan_bytes": _COUNT,
    "plan_snapshot": _TEXT,
    "bytes_pending": _COUNT,
    "bytes_sent_total": _COUNT,
    "next_attempt": _NUMBER,
    "verify": _RECORD,
    "post_apply": _RECORD,
}
DAEMON_TYPES: dict[str, tuple[type, ...]] = {
    "pid": _COUNT,
    "config": _TEXT,
    "root": _TEXT,
    "snapshot": _TEXT,
    "source_check": _RECORD,
    "scans": _COUNT,
    "updated": _NUMBER,
    "stopped": (bool,),
}
_NAMES = {str: "text", int: "a number", float: "a number", dict: "an object", bool: "true/false"}


def field_problem(key: str, value: object, types: dict[str, tuple[type, ...]]) -> str | None:
    """Why `value` cannot be field `key` (None when it can, or when `key` is unknown)."""
    allowed = types.get(key)
    if allowed is None or value is None:
        return None
    if isinstance(value, bool) and bool not in allowed:
        return f"field {key!r} is {json.dumps(value)}, not {_NAMES[allowed[0]]}"
    if isinstance(value, allowed):
        return None
    return f"field {key!r} is {json.dumps(value)[:40]}, not {_NAMES[allowed[0]]}"


def load_site(state_dir: Path, site: str, *, strict: bool = False) -> SiteState:
    """The stored state, or a fresh one when there is none.

    A file that is unreadable, or holds a field of the wrong type, gives a fresh state
    (the daemon starts the site's record over), or with `strict` (`syncd status`) a
    StateFileError naming the file and the field.
    """
    path = site_file(state_dir, site)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return SiteState(site)
    except (OSError, ValueError) as exc:
        if strict:
            raise StateFileError(f"{path}: not a daemon state file ({exc}); {_RESET}") from exc
        return SiteState(site)
    if not isinstance(data, dict):
        if strict:
            raise StateFileError(f"{path}: not a JSON object; {_RESET}")
        return SiteState(site)
    known = {f.name for f in fields(SiteState)}
    kept = {key: value for key, value in data.items() if key in known}
    kept["site"] = site
    for key, value in list(kept.items()):
        problem = field_problem(key, value, _SITE_TYPES)
        if problem is not None:
            if strict:
                raise StateFileError(f"{path}: {problem}; {_RESET}")
            return SiteState(site)
    return SiteState(**kept)


_RESET = (
    "the daemon rewrites it, or delete it to forget this site's record (the far side "
    "is not affected)"
)


def save_site(state_dir: Path, state: SiteState) -> None:
    _write_json(site_file(state_dir, state.site), state.as_json())


def daemon_file(state_dir: Path) -> Path:
    return state_folder(state_dir) / DAEMON_FILE


def save_daemon(state_dir: Path, info: dict[str, Any]) -> None:
    _write_json(daemon_file(state_dir), info)


def load_daemon(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(daemon_file(state_dir).read_text())
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
