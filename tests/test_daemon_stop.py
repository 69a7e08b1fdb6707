"""SIGTERM in the middle of a transfer checkpoints it; a restarted daemon resumes it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from syncd.sample import TINY, generate_month
from tests.daemonutil import (
    DaemonProcess,
    completed,
    daemon_config,
    far_sites,
    site_config,
    site_state,
    staged_bytes,
)
from tests.pushutil import snapshot_id
from tests.sshd import SSHServer

pytestmark = pytest.mark.needs_sshd

# Incompressible bytes on top of month 1, sent at 8 MB/s: blobs travel in frames of up to
# 16 MiB, and the far side stages each frame as it arrives.
EXTRA = 40 << 20
STAGED = 16 << 20


def test_sigterm_mid_transfer_then_restart_resumes(sshd: SSHServer, tmp_path: Path) -> None:
    root, state = tmp_path / "src", tmp_path / "state"
    generate_month(root, 1, TINY, via_registry=False)
    (root / "extra").mkdir()
    for i in range(10):
        (root / "extra" / f"blob{i}").write_bytes(os.urandom(EXTRA // 10))
    sites = far_sites(sshd, tmp_path, ["a"])
    far_state = sites["a"].root / ".syncd"
    slow = site_config(sites["a"], bwlimit="8M")
    config = daemon_config(tmp_path / "syncd.toml", root, state, {"a": slow})
    daemon = DaemonProcess(config, sshd.env(), tmp_path / "daemon.log")
    try:
        plan = daemon.wait_event("push-plan", site="a")
        deadline = time.monotonic() + 60
        while staged_bytes(far_state) < STAGED and time.monotonic() < deadline:
            time.sleep(0.05)
        assert staged_bytes(far_state) >= STAGED
    finally:
        code = daemon.stop()
    assert code == 0
    events = [e["event"] for e in daemon.events()]
    assert events[-3:] == ["stopping", "push-checkpoint", "stopped"]
    assert "push-done" not in events and "push-failed" not in events
    assert not (sites["a"].root / "extra").exists()  # nothing applied: the live tree is as was
    # What `syncd status` shows: the plan, and what was pending at the stop (issue 14,
    # item 9: bytes counted as they are written, not as they are queued).
    saved = site_state(state, "a")
    assert saved["plan_bytes"] == int(plan["bytes"])
    assert 0 < saved["bytes_pending"] < saved["plan_bytes"]

    config.write_text(config.read_text().replace('bwlimit = "8M"\n', ""))
    again = DaemonProcess(config, sshd.env(), tmp_path / "daemon2.log")
    try:
        done = again.wait_event("push-done", site="a")
        again.wait_for(completed(state, "a", snapshot_id(root)), "a complete after the restart")
    finally:
        assert again.stop() == 0
    # The far side asked only for what it had not staged before the stop.
    assert int(done["bytes"]) <= int(plan["bytes"]) - STAGED
    assert snapshot_id(sites["a"].root) == snapshot_id(root)
