"""`syncd daemon` against two far sites behind forced commands on a real sshd.

Nothing is typed between the months: the daemon sees the tree change, waits for it to
be quiet, rescans, pushes to both sites, has each verify its own tree and run its
post-apply command once per snapshot.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
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
    write_aliases,
)
from tests.pushutil import snapshot_id, syncd_env
from tests.sshd import SSHServer

pytestmark = pytest.mark.needs_sshd

# In a registry tree of its own: in the cache, verify judges only what the upload copies.
# Registry storage of its own at the far root: a target the far side accepts as one, and a
# tree verify judges whole (not the cache an upload reads, judged by what it copies).
BROKEN_TAG = Path("docker/registry/v2/repositories/broken/app/_manifests/tags/v1/current")


def _layout(tmp_path: Path) -> tuple[Path, Path]:
    root, state = tmp_path / "src", tmp_path / "state"
    root.mkdir()
    return root, state


def test_two_months_reach_two_sites_verified_post_apply_once(
    sshd: SSHServer, tmp_path: Path
) -> None:
    root, state = _layout(tmp_path)
    sites = far_sites(sshd, tmp_path, ["a", "b"])
    config = daemon_config(
        tmp_path / "syncd.toml", root, state, {n: site_config(s) for n, s in sites.items()}
    )
    daemon = DaemonProcess(config, sshd.env(), tmp_path / "daemon.log")
    try:
        ids = []
        for month in (1, 2):
            generate_month(root, month, TINY, via_registry=False)
            ids.append(snapshot_id(root))
            for name in sites:
                done = daemon.wait_for(completed(state, name, ids[-1]), f"{name} at month {month}")
                assert done["verify"]["status"] == "ok"
                assert done["post_apply"]["status"] == "ok"
                assert done["post_apply"]["exit_status"] == 0
        for site in sites.values():
            assert snapshot_id(site.root) == ids[-1]
            assert site.runs() == ids  # once per snapshot, in order

        # A reload with a broken file keeps the running configuration (and says why).
        good = config.read_text()
        config.write_text(good.replace("[sites.a]", '[sites.a]\nwindows = ["25:00-06:00"]'))
        daemon.signal(signal.SIGHUP)
        failed = daemon.wait_event("reload-failed")
        assert "[sites.a] windows" in failed["error"] and str(config) in failed["error"]
        config.write_text(good)
        daemon.signal(signal.SIGHUP)
        daemon.wait_event("reload")
        assert daemon.process.poll() is None
    finally:
        code = daemon.stop()
    assert code == 0
    assert daemon.events()[-1]["event"] == "stopped"
    for site in sites.values():
        assert site.runs() == ids  # the reload pushed nothing new and ran nothing again
    status = run_status(config, "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["daemon"]["running"] is False and report["daemon"]["snapshot"] == ids[-1]
    for entry in report["sites"]:
        assert entry["complete"] == entry["snapshot_applied"] == ids[-1]
        assert entry["last_error"] is None and entry["bytes_pending"] == 0
        assert entry["post_apply"]["status"] == "ok" and entry["next_attempt"] is None
    text = run_status(config).stdout
    assert "site-a" in text and "up to date" in text and "when the tree changes" in text


def run_status(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "syncd", "status", "--config", str(config), *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=syncd_env(), timeout=60, check=False
    )


def test_site_down_gets_month_two_when_back_without_delaying_the_other(
    sshd: SSHServer, tmp_path: Path
) -> None:
    root, state = _layout(tmp_path)
    sites = far_sites(sshd, tmp_path, ["a", "b"])
    config = daemon_config(
        tmp_path / "syncd.toml", root, state, {n: site_config(s) for n, s in sites.items()}
    )
    generate_month(root, 1, TINY, via_registry=False)
    one = snapshot_id(root)
    daemon = DaemonProcess(config, sshd.env(), tmp_path / "daemon.log")
    try:
        for name in sites:
            daemon.wait_for(completed(state, name, one), f"{name} at month 1")
        write_aliases(sshd, list(sites.values()), down=("b",))
        generate_month(root, 2, TINY, via_registry=False)
        two = snapshot_id(root)
        daemon.wait_for(completed(state, "a", two), "a at month 2 while b is down")
        down = daemon.wait_event("site-unreachable", site="b")
        assert "cannot connect" in down["error"]
        assert site_state(state, "b")["complete"] == one
        write_aliases(sshd, list(sites.values()))
        back = daemon.wait_for(completed(state, "b", two), "b at month 2 once it is back")
        assert back["failures"] == 0 and back["last_error"] is None
    finally:
        assert daemon.stop() == 0
    assert sites["a"].runs() == [one, two]
    assert sites["b"].runs() == [one, two]


def test_post_apply_waits_for_parity(sshd: SSHServer, tmp_path: Path) -> None:
    """A far-only broken tag (kept: delete is off) fails the far side's check: the
    command does not run until someone repairs the far tree."""
    root, state = _layout(tmp_path)
    sites = far_sites(sshd, tmp_path, ["a"])
    far = sites["a"].root
    (far / BROKEN_TAG).mkdir(parents=True)
    (far / BROKEN_TAG / "link").write_text("sha256:" + "0" * 64)
    config = daemon_config(
        tmp_path / "syncd.toml", root, state, {"a": site_config(sites["a"], delete=False)}
    )
    generate_month(root, 1, TINY, via_registry=False)
    daemon = DaemonProcess(config, sshd.env(), tmp_path / "daemon.log")
    try:
        failed = daemon.wait_event("push-failed", site="a")
        assert "parity" in failed["error"]
        assert daemon.wait_event("verify", site="a")["result"] == "failed"
        skipped = daemon.wait_event("post-apply", site="a")
        assert skipped["status"] == "skipped"
        # The event is logged before the site's record is saved: wait for the record.
        data = daemon.wait_for(
            lambda: site_state(state, "a").get("verify") and site_state(state, "a"),
            "the report saved",
        )
        assert data["verify"]["status"] == "failed" and "broken/app:v1" in data["verify"]["summary"]
        assert data["complete"] is None
        assert sites["a"].runs() == []
        # Someone repairs the far side; the next retry verifies and runs the command.
        (far / BROKEN_TAG / "link").unlink()
        for path in (BROKEN_TAG, *BROKEN_TAG.parents):
            if path.name == "":  # the whole planted registry goes
                break
            (far / path).rmdir()
        one = snapshot_id(root)
        daemon.wait_for(completed(state, "a", one), "a complete once repaired")
    finally:
        assert daemon.stop() == 0
    assert sites["a"].runs() == [one]
