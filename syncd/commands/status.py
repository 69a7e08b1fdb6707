"""`syncd status [--json] [--config FILE]`: what the daemon knows about each site.

Read from the daemon's state files (STATE/daemon/*.json), so it works whether or not the
daemon runs; during a transfer the daemon saves its figures every few seconds, so the
plan and the bytes pending are those of that checkpoint. Exit status: 0 when every site
has completed the newest snapshot, 1 when a site is behind, its last attempt failed or
the source fails its own parity check, 2 when the configuration or a state file cannot
be used (named, with the field).

Much of what is shown came from far sides (error texts, their check's summary, their
post-apply command's output): every such text is shown with control characters escaped
(syncd/safetext.py).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from syncd.daemon.config import DEFAULT_PATH, DaemonConfig, load_config
from syncd.daemon.sitestate import (
    DAEMON_TYPES,
    SiteState,
    StateFileError,
    daemon_file,
    field_problem,
    load_daemon,
    load_site,
    pid_alive,
)
from syncd.exitcodes import ExitCode
from syncd.jsonout import dumps
from syncd.safetext import escape
from syncd.state import StateDir
from syncd.units import format_bytes


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "status",
        help="per site: last snapshot applied, last success and error, pending, next attempt",
        description="Show what `syncd daemon` knows about each configured site.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_PATH,
        metavar="FILE",
        help=f"the daemon's configuration (default: {DEFAULT_PATH})",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    state_dir = StateDir(config.root, config.state).path
    daemon = _daemon(state_dir)
    sites = [load_site(state_dir, site.name, strict=True) for site in config.sites]
    latest = daemon.get("snapshot")
    behind = [s.site for s in sites if s.failures or (latest and s.complete != latest)]
    source_failed = not _source_holds(daemon)
    if args.json:
        print(dumps("status", _as_json(config, daemon, sites), indent=1))
    else:
        print("\n".join(_lines(config, daemon, sites)))
    return int(ExitCode.PROBLEMS if behind or source_failed else ExitCode.OK)


def _daemon(state_dir: Path) -> dict[str, Any]:
    """daemon.json, each field checked (a wrong type is an error naming it)."""
    daemon = load_daemon(state_dir) or {}
    for key, value in daemon.items():
        problem = field_problem(key, value, DAEMON_TYPES)
        if problem is not None:
            raise StateFileError(
                f"{daemon_file(state_dir)}: {problem}; the daemon rewrites it when it starts"
            )
    daemon["running"] = bool(not daemon.get("stopped") and pid_alive(daemon.get("pid")))
    return daemon


def _source_holds(daemon: dict[str, Any]) -> bool:
    check = daemon.get("source_check")
    if not isinstance(check, dict) or check.get("snapshot") != daemon.get("snapshot"):
        return True
    return check.get("status") in ("ok", "skipped")


def _as_json(
    config: DaemonConfig, daemon: dict[str, Any], sites: list[SiteState]
) -> dict[str, object]:
    return {
        "config": str(config.path),
        "root": str(config.root),
        "daemon": daemon,
        "sites": [site.as_json() for site in sites],
    }


def _lines(config: DaemonConfig, daemon: dict[str, Any], sites: list[SiteState]) -> list[str]:
    latest = daemon.get("snapshot")
    running = f"running (pid {daemon.get('pid')})" if daemon["running"] else "not running"
    out = [
        f"daemon: {running}; root {escape(config.root)}; newest snapshot "
        f"{_short(latest) if latest else 'not scanned yet'}"
    ]
    source = _source_line(daemon)
    if source:
        out.append(f"source: {source}")
    for site in sites:
        out += _site_lines(site, latest)
    return out


def _source_line(daemon: dict[str, Any]) -> str:
    check = daemon.get("source_check")
    if not isinstance(check, dict):
        return ""
    status, summary = check.get("status"), escape(check.get("summary", ""))
    if status in ("ok", "skipped"):
        return f"parity {status} ({summary})"
    broken = check.get("broken")
    names = ", ".join(escape(name) for name in broken) if isinstance(broken, list) else ""
    count = check.get("broken_count")
    more = count - len(broken) if isinstance(count, int) and isinstance(broken, list) else 0
    names += f" and {more} more" if more > 0 else ""
    return f"FAILS its own parity check: nothing is pushed until it passes ({summary})" + (
        f"; broken: {names}" if names else ""
    )


def _site_lines(site: SiteState, latest: object) -> list[str]:
    done = latest is not None and site.complete == latest
    rows = [
        ("state", f"{escape(site.phase)}" + (", up to date" if done else "")),
        ("applied", _applied(site)),
        ("last success", _when(site.last_success)),
        (
            "last error",
            f"{escape(site.last_error)} ({_when(site.last_error_at)})"
            if site.last_error
            else "none",
        ),
        ("verify", _verify(site)),
        ("post-apply", _post_apply(site)),
        ("pending", _pending(site)),
        ("next attempt", _next(site)),
    ]
    width = max(len(label) for label, _ in rows) + 1
    return [f"{escape(site.site)}  {escape(site.target)}"] + [
        f"  {label + ':':<{width}} {value}" for label, value in rows
    ]


def _applied(site: SiteState) -> str:
    if site.snapshot_applied is None:
        return "nothing yet"
    text = f"far side at {_short(site.snapshot_applied)}"
    if site.complete:
        text += f"; last complete snapshot {_short(site.complete)}"
    return text


def _verify(site: SiteState) -> str:
    if not site.verify:
        return "not reported"
    summary = str(site.verify.get("summary", "")).splitlines()
    return escape(f"{site.verify.get('status')} ({summary[0] if summary else ''})")


def _post_apply(site: SiteState) -> str:
    if not site.post_apply:
        return "not configured or not run"
    report = site.post_apply
    lines = [line for line in str(report.get("output", "")).splitlines() if line.strip()]
    tail = f"; last output: {lines[-1]}" if lines else ""
    return escape(f"{report.get('status')} (exit status {report.get('exit_status')}){tail}")


def _pending(site: SiteState) -> str:
    if site.plan_bytes is None or site.bytes_pending is None:
        if site.phase == "pushing":
            return "not planned yet (the far side is comparing trees)"
        return "unknown (no plan yet)"
    planned = f" of {format_bytes(site.plan_bytes)} planned"
    if site.plan_snapshot:
        planned += f" for {_short(site.plan_snapshot)}"
    live = "; a transfer is running (figures of its last checkpoint)"
    return f"{format_bytes(site.bytes_pending)}{planned}" + (
        live if site.phase == "pushing" else ""
    )


def _next(site: SiteState) -> str:
    if site.phase == "pushing":
        return "now (a session is running)"
    if site.next_attempt is None:
        return "when the tree changes"
    return _when(site.next_attempt)


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "never"
    delta = stamp - time.time()
    try:
        moment = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))
    except (OverflowError, OSError, ValueError):
        return f"{stamp!r} (not a time)"
    if abs(delta) < 1:
        return f"{moment} (now)"
    span = _span(abs(delta))
    return f"{moment} ({span} ago)" if delta < 0 else f"{moment} (in {span})"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _short(snapshot: object) -> str:
    return escape(str(snapshot)[:16])
