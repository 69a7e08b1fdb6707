"""Helpers for the daemon tests: far sites behind forced commands, a daemon subprocess.

Each far site gets its own key pair and ssh config alias (`site-NAME`), authorized on the
test sshd only to run `syncd serve --stdio --root FAR --post-apply CMD`: the deployment
systemd/README.md describes. The post-apply command appends the snapshot id to a file
outside the far root, so a test can count how often it ran.
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tests.pushutil import PROJECT
from tests.sshd import SSHServer, authorized_line, forced_options, free_port, make_key

PYTHON_SYNCD = f"{shlex.quote(sys.executable)} -m syncd"
WAIT = 90.0  # generous: the tests assert outcomes, never durations
_R = TypeVar("_R")


@dataclass
class FarSite:
    name: str
    root: Path
    ran: Path  # one line per post-apply run: the snapshot id
    key: Path

    @property
    def alias(self) -> str:
        return f"site-{self.name}"

    @property
    def target(self) -> str:
        return f"ssh://{self.alias}{self.root}"

    def runs(self) -> list[str]:
        return self.ran.read_text().split() if self.ran.exists() else []


def far_sites(sshd: SSHServer, base: Path, names: list[str]) -> dict[str, FarSite]:
    """Keys, forced commands and config aliases for `names`; the far roots do not exist."""
    sites = {}
    lines = [authorized_line(sshd.client_key)]
    for name in names:
        site = FarSite(name, base / f"far-{name}", base / f"ran-{name}.txt", sshd.ssh_dir / name)
        public = make_key(site.key, name)
        post = f'echo "$SYNCD_SNAPSHOT" >> {shlex.quote(str(site.ran))}'
        command = (
            f"{PYTHON_SYNCD} serve --stdio --root {shlex.quote(str(site.root))} "
            f"--post-apply {shlex.quote(post)}"
        )
        lines.append(authorized_line(public, forced_options(command)))
        sites[name] = site
    sshd.set_authorized(lines)
    write_aliases(sshd, list(sites.values()))
    return sites


def write_aliases(sshd: SSHServer, sites: list[FarSite], down: tuple[str, ...] = ()) -> None:
    """ssh config aliases for the sites; those in `down` point at a closed port."""
    text = ""
    for site in sites:
        port = free_port() if site.name in down else sshd.port
        text += (
            f"Host {site.alias}\n    HostName 127.0.0.1\n    Port {port}\n    User root\n"
            f"    IdentityFile {site.key}\n    IdentitiesOnly yes\n    ConnectTimeout 5\n"
        )
    sshd.write_config(text)


def daemon_config(
    path: Path,
    root: Path,
    state: Path,
    sites: dict[str, dict[str, Any]],
    *,
    quiet: str = "1s",
) -> Path:
    """A configuration with short quiet time and backoff, as the tests need."""
    lines = [
        "[source]",
        f'root = "{root}"',
        f'state = "{state}"',
        f'quiet = "{quiet}"',
        "",
        "[retry]",
        'first = "0.3s"',
        'max = "2s"',
        "",
    ]
    for name, keys in sites.items():
        lines.append(f"[sites.{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in keys.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def site_config(site: FarSite, **extra: object) -> dict[str, Any]:
    return {"target": site.target, "post_apply": True, **extra}


class DaemonProcess:
    """`syncd daemon --config FILE` as a child; its stderr (the event log) in a file."""

    def __init__(self, config: Path, env: dict[str, str], log: Path) -> None:
        self.config = config
        self.log = log
        env = dict(env_without_notify(env), PYTHONPATH=str(PROJECT))
        with log.open("ab") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "syncd", "daemon", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )
        self.wait_event("start")

    def events(self) -> list[dict[str, str]]:
        return [parse_logfmt(line) for line in self.log.read_text().splitlines() if line]

    def wait_event(self, event: str, count: int = 1, **fields: str) -> dict[str, str]:
        def found() -> dict[str, str] | None:
            hits = [
                e
                for e in self.events()
                if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
            ]
            return hits[count - 1] if len(hits) >= count else None

        return self.wait_for(found, f"event {event} {fields}")

    def wait_for(self, probe: Callable[[], _R | None], what: str) -> _R:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            value = probe()
            if value is not None:
                return value
            if self.process.poll() is not None:
                raise AssertionError(f"the daemon exited while waiting for {what}:\n{self.tail()}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.tail()}")

    def signal(self, number: int) -> None:
        self.process.send_signal(number)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the daemon did not stop on SIGTERM:\n{self.tail()}") from None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text().splitlines()[-lines:])


def site_state(state: Path, name: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((state / "daemon" / f"{name}.json").read_text())
    except (OSError, ValueError):
        return {}
    return data


def completed(state: Path, name: str, snapshot: str) -> Callable[[], dict[str, Any] | None]:
    def probe() -> dict[str, Any] | None:
        data = site_state(state, name)
        return data if data.get("complete") == snapshot else None

    return probe


def parse_logfmt(line: str) -> dict[str, str]:
    """key=value pairs of one logfmt line (quoted values unescaped)."""
    out: dict[str, str] = {}
    for token in shlex.split(line.replace("\\n", "\n"), posix=True):
        key, _, value = token.partition("=")
        out[key] = value
    return out


def staged_bytes(state: Path) -> int:
    """Bytes the far side holds in staging (packs and assembled files, by blocks)."""
    found = [p for folder in ("staging", "incoming") for p in (state / folder).glob("*")]
    return sum(p.stat().st_blocks * 512 for p in found if p.is_file())


def env_without_notify(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
