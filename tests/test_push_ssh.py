"""`syncd push` over SSH to a real OpenSSH sshd on loopback, which runs `syncd serve`."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

import pytest

from tests.pushutil import pull_every_tag, push, run_push, snapshot_id
from tests.sshd import SSHServer

pytestmark = pytest.mark.needs_sshd

REMOTE = f"{shlex.quote(sys.executable)} -m syncd"


@pytest.fixture
def months(tiny_months: dict[int, Path]) -> dict[int, Path]:
    return tiny_months


def source(months: dict[int, Path], month: int, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(months[month], dst, symlinks=True, ignore=shutil.ignore_patterns(".syncd"))
    return dst


@pytest.mark.needs_registry
def test_month_one_then_two_over_ssh(
    sshd: SSHServer, months: dict[int, Path], tmp_path: Path
) -> None:
    src, far = tmp_path / "src", tmp_path / "far"
    target = f"ssh://far{far}"
    first = push(source(months, 1, src), target, "--remote-syncd", REMOTE, env=sshd.env())
    assert first["status"] == "applied"
    assert first["target"].startswith("ssh://")
    assert snapshot_id(far) == first["snapshot"]
    assert pull_every_tag(far) == {}
    second = push(source(months, 2, src), f"far:{far}", "--remote-syncd", REMOTE, env=sshd.env())
    assert second["status"] == "applied"
    assert snapshot_id(far) == second["snapshot"]
    assert pull_every_tag(far) == {}
    unchanged = push(src, target, "--remote-syncd", REMOTE, env=sshd.env())
    assert unchanged["status"] == "up-to-date" and unchanged["blobs_sent"] == 0
    assert unchanged["wire_bytes_sent"] + unchanged["wire_bytes_received"] < 1024


def test_unknown_host_is_refused_before_anything_moves(
    sshd: SSHServer, months: dict[int, Path], tmp_path: Path
) -> None:
    sshd.known_hosts.write_text("")
    src, far = source(months, 1, tmp_path / "src"), tmp_path / "far"
    result = run_push(src, f"ssh://far{far}", "--remote-syncd", REMOTE, env=sshd.env())
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--accept-new-host-key" in result.stderr
    assert not far.exists()
    accepted = push(
        src, f"ssh://far{far}", "--remote-syncd", REMOTE, "--accept-new-host-key", env=sshd.env()
    )
    assert accepted["status"] == "applied"


def test_changed_host_key_is_refused(
    sshd: SSHServer, months: dict[int, Path], tmp_path: Path
) -> None:
    other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBq0qU0YmTp2Yq3mvKxVj7uKpXK4ZMQ0nY9Vq0J3nq0k"
    sshd.known_hosts.write_text(f"{sshd.host_label} {other}\n")
    src, far = source(months, 1, tmp_path / "src"), tmp_path / "far"
    for extra in ([], ["--accept-new-host-key"]):
        result = run_push(src, f"ssh://far{far}", "--remote-syncd", REMOTE, *extra, env=sshd.env())
        assert result.returncode == 2
        assert "changed" in result.stderr.lower()
    assert not far.exists()


def test_forced_command_pins_the_root(
    sshd: SSHServer, months: dict[int, Path], tmp_path: Path
) -> None:
    far, elsewhere = tmp_path / "far", tmp_path / "elsewhere"
    sshd.force_command(f"{REMOTE} serve --stdio --root {shlex.quote(str(far))}")
    src = source(months, 1, tmp_path / "src")
    refused = run_push(src, f"far-forced:{elsewhere}", env=sshd.env())
    assert refused.returncode == 2
    assert f"serves {far}" in refused.stderr
    assert not elsewhere.exists()
    assert not (far / "content").exists()
    accepted = push(src, f"far-forced:{far}", env=sshd.env())
    assert accepted["status"] == "applied"
    assert snapshot_id(far) == accepted["snapshot"]
