"""`syncd status [--json] [--config FILE]`: what the daemon knows about each site.

Read from the daemon's state files (STATE/daemon/*.json), so it works whether or not the
daemon runs. Exit status: 0 when every site has completed the newest snapshot, 1 when a
site is behind or its last attempt failed, 2 when the configuration cannot be used.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from syncd.daemon.config import DEFAULT_PATH, DaemonConfig, load_config
from syncd.daemon.sitestate import SiteState, load_daemon, load_site, pid_alive
from syncd.exitcodes import ExitCode
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
    daemon = load_daemon(state_dir) or {}
    daemon["running"] = bool(not daemon.get("stopped") and pid_alive(daemon.get("pid")))
    sites = [load_site(state_dir, site.name) for site in config.sites]
    latest = daemon.get("snapshot")
    behind = [s.site for s in sites if s.failures or (latest and s.complete != latest)]
    if args.json:
        print(json.dumps(_as_json(config, daemon, sites), indent=1))
    else:
        print("\n".join(_lines(config, daemon, sites)))
    return int(ExitCode.PROBLEMS if behind else ExitCode.OK)


def _as_json(config: DaemonConfig, daemon: dict[str, Any], sites: list[SiteState]) -> object:
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
        f"daemon: {running}; root {config.root}; newest snapshot "
        f"{_short(latest) if latest else 'not scanned yet'}"
    ]
    for site in sites:
        out += _site_lines(site, latest)
    return out


def _site_lines(site: SiteState, latest: object) -> list[str]:
    done = latest is not None and site.complete == latest
    rows = [
        ("state", f"{site.phase}" + (", up to date" if done else "")),
        ("applied", _applied(site)),
        ("last success", _when(site.last_success)),
        (
            "last error",
            f"{site.last_error} ({_when(site.last_error_at)})" if site.last_error else "none",
        ),
        ("verify", _verify(site)),
        ("post-apply", _post_apply(site)),
        ("pending", _pending(site)),
        ("next attempt", _next(site)),
    ]
    width = max(len(label) for label, _ in rows) + 1
    return [f"{site.site}  {site.target}"] + [
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
    return f"{site.verify.get('status')} ({summary[0] if summary else ''})"


def _post_apply(site: SiteState) -> str:
    if not site.post_apply:
        return "not configured or not run"
    report = site.post_apply
    lines = [line for line in str(report.get("output", "")).splitlines() if line.strip()]
    tail = f"; last output: {lines[-1]}" if lines else ""
    return f"{report.get('status')} (exit status {report.get('exit_status')}){tail}"


def _pending(site: SiteState) -> str:
    if site.bytes_pending is None:
        return "unknown (no plan yet)"
    plan = f" of {format_bytes(site.plan_bytes)} planned" if site.plan_bytes else ""
    return f"{format_bytes(site.bytes_pending)}{plan}"


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
    moment = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))
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
    return str(snapshot)[:16]
