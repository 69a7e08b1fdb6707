"""The daemon under a pretend systemd: READY=1, STATUS=, WATCHDOG=1 pings, STOPPING=1 on
the notify socket; journal-style lines when stderr is the journal stream."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.daemonutil import daemon_config
from tests.pushutil import syncd_env


def test_notify_watchdog_and_journal_lines(tmp_path: Path) -> None:
    root, far = tmp_path / "src", tmp_path / "far"
    root.mkdir()
    config = daemon_config(
        tmp_path / "syncd.toml", root, tmp_path / "state", {"a": {"target": str(far)}}
    )
    address = str(tmp_path / "notify")
    log = tmp_path / "daemon.log"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, log.open("wb") as err:
        sock.bind(address)
        sock.settimeout(60)
        info = os.fstat(err.fileno())
        env = dict(
            syncd_env(),
            NOTIFY_SOCKET=address,
            WATCHDOG_USEC="400000",  # pings every 0.2 s
            JOURNAL_STREAM=f"{info.st_dev}:{info.st_ino}",
        )
        daemon = subprocess.Popen(
            [sys.executable, "-m", "syncd", "daemon", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
        try:
            messages = [sock.recv(4096).decode()]
            assert messages[0].startswith("READY=1\nSTATUS=")
            # Pings keep coming until the first scan is done (an empty root: nothing pushed).
            while sum(m == "WATCHDOG=1" for m in messages) < 3 or "source-empty" not in (
                log.read_text()
            ):
                messages.append(sock.recv(4096).decode())
            daemon.send_signal(signal.SIGTERM)
            while not messages[-1].startswith("STOPPING=1"):
                messages.append(sock.recv(4096).decode())
            assert daemon.wait(timeout=30) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
    lines = log.read_text().splitlines()
    assert lines and all(line.startswith(("<6>", "<4>")) for line in lines), lines
    assert "ts=" not in lines[0] and "event=start" in lines[0]
    assert any("event=source-empty" in line for line in lines)  # an empty root is not pushed
    assert not far.exists()
