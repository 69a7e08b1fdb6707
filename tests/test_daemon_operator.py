"""The daemon as an operator meets it (issue 14, items 5, 6, 9 and 11).

- a source that fails its own parity check is never pushed; the error names the source
  and the broken images, in the log and in `syncd status`; once fixed it is pushed;
- one daemon per configuration;
- `syncd status` on damaged state files, and on far-side texts full of escapes;
- a transfer's plan and pending bytes are saved as it runs; progress is logged at most
  once a minute.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from protocol.messages import Report, Result
from syncd.daemon import scheduler
from syncd.daemon.backoff import Backoff
from syncd.daemon.config import load_config
from syncd.daemon.logs import EventLog
from syncd.daemon.runner import SessionOutcome
from syncd.daemon.scheduler import SiteWorker
from syncd.session.afterapply import REPLACED
from tests.daemonutil import DaemonProcess, completed, daemon_config, parse_logfmt
from tests.pushutil import snapshot_id, syncd_env

HOSTILE = "\033[1;31mred \x1b]0;owned\x07 \001 \007 \u202eevil"


def run_status(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "syncd", "status", "--config", str(config), *args]
    return subprocess.run(command, capture_output=True, text=True, env=syncd_env(), check=False)


def a_needed_blob(root: Path) -> tuple[Path, str]:
    """The cache file of a manifest that an image of the upload needs and that no archive
    of this month brings (an earlier month archived it): deleting it breaks that image."""
    cache = root / ".oc-mirror/.cache/docker/registry/v2"
    archived: set[str] = set()
    for archive in sorted((root / "content").glob("mirror_*.tar")):
        with tarfile.open(archive) as tar:
            archived.update(tar.getnames())
    verdict = json.loads(
        subprocess.run(
            [sys.executable, "-m", "syncd", "verify", str(root), "--json"],
            capture_output=True,
            text=True,
            env=syncd_env(),
            check=False,
        ).stdout
    )
    for derived in verdict["sections"][0]["derived"]:
        repo, _, tag = derived["image"].rpartition(":")
        link = cache / "repositories" / repo / "_manifests/tags" / tag / "current/link"
        if not link.is_file():
            continue
        hexdigest = link.read_text().removeprefix("sha256:")
        data = cache / "blobs/sha256" / hexdigest[:2] / hexdigest / "data"
        if not any(name.endswith(f"{hexdigest}/data") for name in archived):
            return data, derived["image"]
    raise AssertionError("every needed manifest is in this month's archives")


def test_a_broken_source_is_not_pushed_and_is_named(
    tiny_months: dict[int, Path], tmp_path: Path
) -> None:
    root, far, state = tmp_path / "src", tmp_path / "far", tmp_path / "state"
    shutil.copytree(tiny_months[2], root, symlinks=True, ignore=shutil.ignore_patterns(".syncd"))
    blob, image = a_needed_blob(root)
    saved = blob.read_bytes()
    blob.unlink()
    config = daemon_config(tmp_path / "syncd.toml", root, state, {"a": {"target": str(far)}})
    daemon = DaemonProcess(config, syncd_env(), tmp_path / "daemon.log")
    try:
        broken = daemon.wait_event("source-broken")
        assert str(root) in broken["error"] and image in broken["error"]
        assert not far.exists()  # nothing was pushed
        status = run_status(config)
        assert status.returncode == 1, status.stderr
        assert "FAILS its own parity check" in status.stdout and image in status.stdout
        report = json.loads(run_status(config, "--json").stdout)
        assert report["format"] == 1 and report["command"] == "status"
        assert report["daemon"]["source_check"]["status"] == "failed"
        assert image in report["daemon"]["source_check"]["broken"]

        second = subprocess.run(
            [sys.executable, "-m", "syncd", "daemon", "--config", str(config)],
            capture_output=True,
            text=True,
            env=syncd_env(),
            timeout=60,
            check=False,
        )
        assert second.returncode == 2
        assert f"another syncd daemon (pid {daemon.process.pid})" in second.stderr

        blob.write_bytes(saved)  # fixed: the next scan passes, and the site gets it
        daemon.wait_event("source-verified")
        daemon.wait_for(completed(state, "a", snapshot_id(root)), "the site completes")
    finally:
        assert daemon.stop() == 0


def write_state(tmp_path: Path, site: dict[str, Any]) -> Path:
    root, state = tmp_path / "src", tmp_path / "state"
    root.mkdir()
    config = daemon_config(tmp_path / "syncd.toml", root, state, {"a": {"target": "/x/far"}})
    (state / "daemon").mkdir(parents=True)
    (state / "daemon" / "a.json").write_text(json.dumps({"site": "a", **site}))
    return config


@pytest.mark.parametrize(
    "site",
    [{"bytes_pending": "x"}, {"failures": 1.5}, {"last_success": "yesterday"}, {"verify": []}],
)
def test_status_names_a_field_of_the_wrong_type(tmp_path: Path, site: dict[str, Any]) -> None:
    config = write_state(tmp_path, {"plan_bytes": 10, **site})
    ran = run_status(config)
    assert ran.returncode == 2
    field = next(iter(site))
    assert f"field {field!r}" in ran.stderr and "a.json" in ran.stderr
    assert "Traceback" not in ran.stderr and "TypeError" not in ran.stderr
    as_json = json.loads(run_status(config, "--json").stdout)
    assert as_json["error"].startswith(str(tmp_path)) and as_json["exit_code"] == 2


def test_status_shows_far_side_texts_escaped(tmp_path: Path) -> None:
    config = write_state(
        tmp_path,
        {
            "last_error": f"far side: {HOSTILE}",
            "last_error_at": 1.0,
            "failures": 1,
            "verify": {"status": "failed", "summary": HOSTILE},
            "post_apply": {"status": "failed", "exit_status": 1, "output": f"x\n{HOSTILE}\n"},
        },
    )
    ran = run_status(config)
    assert ran.returncode == 1, ran.stderr
    for raw in ("\033", "\007", "\001", "\u202e"):
        assert raw not in ran.stdout
    assert "\\x1b[1;31mred" in ran.stdout and "\\x1b]0;owned\\x07" in ran.stdout
    assert "\\u202eevil" in ran.stdout


def a_worker(tmp_path: Path, site: dict[str, Any], stream: io.StringIO) -> SiteWorker:
    """Site `a`'s worker, as the daemon makes it, logging to `stream`."""
    root = tmp_path / "src"
    root.mkdir()
    config = load_config(
        daemon_config(tmp_path / "syncd.toml", root, tmp_path / "state", {"a": site})
    )
    return SiteWorker(
        config.sites[0],
        root=root,
        state_dir=tmp_path / "state",
        snapshot_file=tmp_path / "snapshot",
        latest=lambda: "ab" * 32,
        backoff=Backoff(1.0, 2.0),
        recheck=0.0,
        log=EventLog(stream, journal=False),
        on_change=lambda: None,
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return time.time()


def test_a_transfer_is_checkpointed_and_logged_once_a_minute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    worker = a_worker(tmp_path, {"target": "/x"}, stream)
    clock = FakeClock()
    monkeypatch.setattr(scheduler, "time", clock)  # the scheduler's own clock only
    worker._planned(1_000_000, 10)
    saved = json.loads((tmp_path / "state" / "daemon" / "a.json").read_text())
    assert saved["plan_bytes"] == saved["bytes_pending"] == 1_000_000  # at once
    for second in range(1, 181):  # three minutes, a little every second
        clock.now = 1000.0 + second
        worker._advanced(second * 5_000)
    events = [parse_logfmt(line) for line in stream.getvalue().splitlines()]
    progress = [e for e in events if e["event"] == "push-progress"]
    assert [int(e["sent"]) for e in progress] == [300_000, 600_000, 900_000]
    saved = json.loads((tmp_path / "state" / "daemon" / "a.json").read_text())
    assert saved["bytes_pending"] == 1_000_000 - 900_000  # the last checkpoint (every 5 s)


def test_the_journal_gets_far_side_texts_escaped() -> None:
    for fmt in ("logfmt", "json"):
        stream = io.StringIO()
        EventLog(stream, fmt=fmt, journal=True).err("post-apply", output=HOSTILE, code=3)
        line = stream.getvalue()
        assert line.count("\n") == 1 and line.startswith("<3>")
        for raw in ("\033", "\007", "\001", "\u202e"):
            assert raw not in line
        shown = json.loads(line[3:])["output"] if fmt == "json" else line
        assert "\\x1b]0;owned\\x07" in shown


def test_a_replaced_post_apply_command_is_not_reported_ok(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    worker = a_worker(tmp_path, {"target": "/x", "post_apply": "echo mine"}, stream)
    report = Report(b"\xab" * 32, "ok", "OK", "ok", 0, f"{REPLACED}uploaded\n")
    outcome = SessionOutcome("ab" * 32, Result("applied", b"\xab" * 32, 1, 0), report, True, 1, 1)
    worker._record_report(outcome)
    assert worker.state.post_apply is not None
    assert worker.state.post_apply["status"] == "replaced, ok"
    assert worker.state.post_apply["output"] == "uploaded\n"
    event = parse_logfmt(stream.getvalue().splitlines()[-1])
    assert event["level"] == "warning" and event["status"] == "replaced, ok"
