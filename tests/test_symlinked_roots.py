"""Roots behind symlinks (issue 14 item 2): `ln -s /data/mirror /srv/mirror` is how many
hosts are laid out. The far root itself a symlink, or a parent of it, for push (local and
over SSH via serve), import, receipt, export, verify and the daemon; symlinks inside the
tree keep their own rules."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from reliability.farside import run_syncd
from syncd.sample import TINY, generate_month
from tests.daemonutil import DaemonProcess, completed, daemon_config, far_sites, site_config
from tests.pushutil import pull_every_tag, snapshot_id
from tests.sshd import SSHServer
from tests.test_apply_support import copy_tree

REMOTE = f"{shlex.quote(sys.executable)} -m syncd"


def linked(tmp_path: Path, name: str, *, parent: bool = False) -> Path:
    """A path to an empty real folder behind a symlink: the folder itself, or (parent)
    its parent folder, is the link."""
    real = tmp_path / "data" / name
    real.mkdir(parents=True)
    if parent:
        (tmp_path / f"srv-{name}").symlink_to(real.parent)
        return tmp_path / f"srv-{name}" / name
    (tmp_path / f"srv-{name}").symlink_to(real)
    return tmp_path / f"srv-{name}"


def ok(*args: str | Path, env: dict[str, str] | None = None) -> dict[str, object]:
    done = run_syncd(*args, "--json", env=env)
    assert done.returncode == 0, (args[0], done.stderr)
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("parent", [False, True], ids=["root-link", "parent-link"])
def test_push_import_receipt_export_verify(tmp_path: Path, parent: bool) -> None:
    """Regression: the far side's check after the apply saw an empty root ("does not equal
    the target (817 differences left: MakeDir .oc-mirror, ...)") and every later run
    failed with pieces "neither staged nor in the live tree"."""
    src = linked(tmp_path, "src", parent=parent)
    generate_month(src, 1, TINY, via_registry=False)
    far = linked(tmp_path, "far", parent=parent)
    assert ok("push", src, far)["status"] == "applied"
    assert ok("push", src, far)["status"] == "up-to-date"
    assert snapshot_id(far) == snapshot_id(src)
    assert run_syncd("verify", far).returncode == 0
    generate_month(src, 2, TINY, via_registry=False)
    receipt = tmp_path / "receipt"
    ok("receipt", "--root", far, "--to", receipt)
    media = tmp_path / "media"
    ok("export", src, "--to", media, "--receipt", receipt)
    assert ok("import", media, "--root", far)["status"] == "applied"
    assert snapshot_id(far) == snapshot_id(src)
    assert run_syncd("import", "--status", "--root", far).returncode == 0


@pytest.mark.needs_sshd
@pytest.mark.needs_registry
def test_push_over_ssh_to_a_symlinked_root(
    sshd: SSHServer, tiny_months: dict[int, Path], tmp_path: Path
) -> None:
    src = tmp_path / "src"
    copy_tree(tiny_months[2], src)
    far = linked(tmp_path, "far")
    env = sshd.env()
    result = ok("push", src, f"ssh://far{far}", "--remote-syncd", REMOTE, env=env)
    assert result["status"] == "applied"
    assert ok("push", src, f"far:{far}", "--remote-syncd", REMOTE, env=env)["blobs_sent"] == 0
    assert snapshot_id(far) == snapshot_id(src)
    assert pull_every_tag(far) == {}


@pytest.mark.needs_sshd
def test_the_daemon_with_symlinked_roots(sshd: SSHServer, tmp_path: Path) -> None:
    """The daemon's own root and the far site's root (in its forced command) are links."""
    root, state = linked(tmp_path, "src"), tmp_path / "state"
    sites = far_sites(sshd, tmp_path / "sites", ["a"])
    site = sites["a"]
    real = tmp_path / "data" / "site-a"
    real.mkdir(parents=True)
    site.root.parent.mkdir(parents=True, exist_ok=True)
    site.root.symlink_to(real)
    config = daemon_config(tmp_path / "syncd.toml", root, state, {"a": site_config(site)})
    daemon = DaemonProcess(config, sshd.env(), tmp_path / "daemon.log")
    try:
        generate_month(root, 1, TINY, via_registry=False)
        wanted = snapshot_id(root)
        done = daemon.wait_for(completed(state, "a", wanted), "site a at month 1")
        assert done["verify"]["status"] == "ok"
    finally:
        assert daemon.stop() == 0
    assert snapshot_id(real) == wanted
