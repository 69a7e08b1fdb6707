"""The daemon's small parts: windows, backoff, the event log, sd_notify, site state."""

from __future__ import annotations

import io
import json
import os
import random
import socket
from datetime import datetime
from pathlib import Path

import pytest

from syncd.daemon.backoff import Backoff
from syncd.daemon.logs import EventLog
from syncd.daemon.notify import Notifier, watchdog_interval
from syncd.daemon.sitestate import SiteState, load_site, save_site
from syncd.daemon.windows import WindowError, is_open, next_change, parse_window
from tests.daemonutil import parse_logfmt

DAY = datetime(2026, 11, 25)


def at(hour: int, minute: int = 0, day: int = 0) -> datetime:
    return DAY.replace(day=25 + day, hour=hour, minute=minute)


@pytest.mark.parametrize(
    ("windows", "now", "open_", "change"),
    [
        ([], at(12), True, None),
        (["22:00-06:00"], at(23), True, at(6, day=1)),
        (["22:00-06:00"], at(3), True, at(6)),
        (["22:00-06:00"], at(12), False, at(22)),
        (["22:00-06:00"], at(6), False, at(22)),
        (["09:00-10:00", "12:00-13:30"], at(10, 30), False, at(12)),
        (["09:00-10:00", "12:00-13:30"], at(12, 45), True, at(13, 30)),
        (["00:00-24:00"], at(5), True, None),
        (["20:00-24:00", "00:00-02:00"], at(23), True, at(2, day=1)),
    ],
)
def test_windows(windows: list[str], now: datetime, open_: bool, change: datetime | None) -> None:
    parsed = [parse_window(w) for w in windows]
    assert is_open(parsed, now) is open_
    assert next_change(parsed, now) == change


@pytest.mark.parametrize(
    "text", ["22-06", "25:00-06:00", "10:00-10:00", "12:60-13:00", "24:30-1:00"]
)
def test_bad_windows(text: str) -> None:
    with pytest.raises(WindowError):
        parse_window(text)


def test_backoff_doubles_to_the_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(1.0, 10.0, random.Random(7))
    delays = [backoff.next_delay() for _ in range(8)]
    for n, delay in enumerate(delays):
        step = min(10.0, 2.0**n)
        assert step / 2 <= delay <= step
    assert len(set(delays)) == len(delays)  # jittered
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_logfmt_is_one_parseable_line_per_event() -> None:
    out = io.StringIO()
    log = EventLog(out, journal=False)
    log.info("push-done", site="dc1", bytes=12, seconds=1.5, message='a "b"\nc=d', none=None)
    line = out.getvalue()
    assert line.count("\n") == 1 and line.startswith("ts=")
    fields = parse_logfmt(line.strip())
    assert fields["event"] == "push-done" and fields["site"] == "dc1" and fields["bytes"] == "12"
    assert fields["message"] == 'a "b"\nc=d' and "none" not in fields


def test_journal_lines_carry_priority_and_no_timestamp() -> None:
    out = io.StringIO()
    EventLog(out, journal=True).err("push-failed", site="a")
    EventLog(out, fmt="json", journal=True).warn("scan-failed", error="x y")
    first, second = out.getvalue().splitlines()
    assert first == "<3>level=error event=push-failed site=a"
    assert second.startswith("<4>") and json.loads(second[3:]) == {
        "level": "warning",
        "event": "scan-failed",
        "error": "x y",
    }


def test_journal_stream_is_detected_by_device_and_inode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (tmp_path / "stream").open("w") as stream:
        info = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        assert EventLog(stream).journal
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino + 1}")
        assert not EventLog(stream).journal


@pytest.mark.parametrize("abstract", [False, True])
def test_sd_notify_datagrams(tmp_path: Path, abstract: bool) -> None:
    name = f"\0syncd-test-{os.getpid()}" if abstract else str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(name)
        server.settimeout(5)
        spec = "@" + name[1:] if abstract else name
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": spec})
        assert notifier.ready("watching /srv\nnow")
        assert server.recv(4096) == b"READY=1\nSTATUS=watching /srv now"
        assert notifier.watchdog()
        assert server.recv(4096) == b"WATCHDOG=1"
        notifier.close()
    assert not Notifier.from_environment({}).ready("x")


def test_watchdog_interval() -> None:
    pid = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": pid}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({}) is None


def test_site_state_round_trip_and_damage(tmp_path: Path) -> None:
    state = SiteState("dc1", target="ssh://x/y", complete="ab", failures=2, bytes_pending=5)
    save_site(tmp_path, state)
    assert load_site(tmp_path, "dc1") == state
    (tmp_path / "daemon" / "dc1.json").write_text("{not json")
    assert load_site(tmp_path, "dc1") == SiteState("dc1")
