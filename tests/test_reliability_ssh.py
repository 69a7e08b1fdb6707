"""CI's slice of the ssh campaign (reliability/ssh.py), and the regression tests for what
the campaign found on the far side (the host key findings are in test_transport_ssh.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reliability import ssh
from reliability.campaign import Context
from syncd.errors import UsageError
from syncd.session.rootguard import refuse_unsafe_root
from tests.pushutil import syncd_env


@pytest.mark.needs_sshd
def test_quick_slice(tmp_path: Path) -> None:
    outcome = ssh.run(Context(20261125, tmp_path, quick=True))
    assert outcome.ok, outcome.failures
    figures = {f.name: f.value for f in outcome.figures}
    assert figures["marker files created (commands that ran)"] == "0"
    assert figures["bytes changed outside the root (wire cases)"] == "0"


def serve(root: Path, home: Path) -> tuple[int, str]:
    """`syncd serve` with no input (the session ends at once): exit status and stderr."""
    command = [sys.executable, "-m", "syncd", "serve", "--stdio", "--root", str(root)]
    env = syncd_env({"HOME": str(home)})
    # An empty pipe, as sshd gives: asyncio cannot watch /dev/null.
    done = subprocess.run(command, input=b"", capture_output=True, env=env, timeout=60, check=False)
    return done.returncode, done.stderr.decode(errors="replace")


@pytest.mark.parametrize("where", ["the home itself", "above the home"])
def test_serve_refuses_a_root_holding_the_home_directory(tmp_path: Path, where: str) -> None:
    """Found by the campaign: with R = the login's home, a push through the pinned key
    replaced .ssh/authorized_keys and the key then ran any command. Refused before
    anything is created."""
    home = tmp_path / "srv" / "mirror"
    root = home if where == "the home itself" else tmp_path / "srv"
    code, stderr = serve(root, home)
    assert code == 2
    assert "Traceback" not in stderr
    assert f"refusing to serve {root}" in stderr and "home directory" in stderr
    assert not root.exists()


def test_serve_accepts_a_root_below_the_home_directory(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _, stderr = serve(home / "mirror", home)
    assert "refusing to serve" not in stderr
    assert (home / "mirror").is_dir()  # served (its state folder waits for a HELLO)


def test_a_root_holding_syncd_itself_is_refused() -> None:
    # Not served: the check runs before serve creates or scans anything.
    with pytest.raises(UsageError, match=r"syncd's installation|the Python installation"):
        refuse_unsafe_root(Path(sys.prefix).parent)
    with pytest.raises(UsageError, match="syncd's installation"):
        refuse_unsafe_root(Path(ssh.__file__).resolve().parent.parent)
