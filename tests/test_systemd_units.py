"""The units in systemd/ pass `systemd-analyze verify` (and its offline security
review), and Python with syncd's dependencies runs under MemoryDenyWriteExecute.

systemd-analyze works without systemd as PID 1 for both: `verify` loads the unit files
and checks every setting and that ExecStart's program exists; `--man=no` skips the man
page lookup (not every CI machine has man pages). The unit names /opt/syncd/bin/syncd,
the documented install path; the copy verified here points at this venv's syncd.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pushutil import PROJECT, syncd_env
from tests.sshd import SSHServer

UNITS = PROJECT / "systemd"
ANALYZE = shutil.which("systemd-analyze")
INSTALLED = "/opt/syncd/bin/syncd"
PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1

needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze (package systemd)")


def unit_copy(tmp_path: Path, name: str) -> Path:
    text = (UNITS / name).read_text()
    assert INSTALLED in text
    here = Path(sys.executable).with_name("syncd")
    assert here.exists(), "syncd is pip-installed in the venv that runs the tests"
    copy = tmp_path / name
    copy.write_text(text.replace(INSTALLED, str(here)))
    return copy


@needs_analyze
def test_the_service_verifies_cleanly(tmp_path: Path) -> None:
    assert ANALYZE is not None
    unit = unit_copy(tmp_path, "syncd.service")
    done = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False
    )
    # verify exits 0 even for unknown keys (it only warns): any word about the unit fails.
    assert done.returncode == 0, done.stderr
    assert unit.name not in done.stdout + done.stderr, done.stdout + done.stderr


@needs_analyze
def test_the_service_is_hardened(tmp_path: Path) -> None:
    assert ANALYZE is not None
    unit = unit_copy(tmp_path, "syncd.service")
    done = subprocess.run(
        [ANALYZE, "security", "--offline=yes", "--threshold=20", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    text = (UNITS / "syncd.service").read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "User=syncd",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "RestrictNamespaces=yes",
        "LockPersonality=yes",
    ):
        assert line in text, line


def _mdwe_supported() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(PR_GET_MDWE, 0, 0, 0, 0)) >= 0


MDWE_LAUNCHER = (
    "import ctypes, os, sys\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    f"assert libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) == 0\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n"
)


@pytest.mark.needs_sshd
@pytest.mark.skipif(not _mdwe_supported(), reason="kernel without PR_SET_MDWE (Linux >= 6.3)")
def test_a_push_over_ssh_runs_under_memory_deny_write_execute(
    sshd: SSHServer, tmp_path: Path
) -> None:
    """PR_SET_MDWE is the kernel's own form of MemoryDenyWriteExecute=yes (systemd uses it
    where the kernel has it): the pushing process, with asyncssh's cryptography, blake3,
    msgpack and the daemon's modules imported, must not need W+X memory."""
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            MDWE_LAUNCHER,
            "-c",
            "import mmap\n"
            "import syncd.daemon.service, syncd.transport.ssh\n"
            "mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)",
        ],
        capture_output=True,
        text=True,
        env=syncd_env(),
        check=False,
    )
    assert probe.returncode != 0 and "Permission denied" in probe.stderr  # MDWE is on
    src, far = tmp_path / "src", tmp_path / "far"
    src.mkdir()
    (src / "file").write_bytes(os.urandom(1 << 20))
    env = dict(sshd.env(), PYTHONPATH=str(PROJECT))
    remote = f"{sys.executable} -m syncd"
    command = [sys.executable, "-c", MDWE_LAUNCHER, "-m", "syncd", "push", str(src)]
    done = subprocess.run(
        [*command, f"ssh://far{far}", "--json", "--remote-syncd", remote],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (far / "file").read_bytes() == (src / "file").read_bytes()
