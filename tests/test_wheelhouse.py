"""Installing on a far host without network, as README says (issue 14, item 11):
`pip wheel` builds syncd and every dependency into a wheelhouse on the connected side;
a fresh virtual environment installs from that folder alone (`--no-index`, with pip's
own configuration switched off, so that no other index or folder can help), and the
installed `syncd` runs.

Marked slow: building the wheelhouse downloads the dependencies from the package index.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pushutil import PROJECT

TIMEOUT = 600


def run(*command: str | Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout


@pytest.mark.slow
def test_a_wheelhouse_installs_without_an_index(tmp_path: Path) -> None:
    # The checkout as a user has it (no virtual environment, caches or git metadata),
    # copied so that the build leaves nothing in this one.
    source = tmp_path / "syncd"
    skip = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "build", ".*cache")
    shutil.copytree(PROJECT, source, ignore=skip)
    wheels = tmp_path / "wheelhouse"
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", wheels, source)
    names = {path.name.split("-")[0].lower() for path in wheels.glob("*.whl")}
    assert {"syncd", "blake3", "msgpack", "asyncssh", "tqdm", "watchfiles"} <= names

    venv = tmp_path / "far-venv"
    run(sys.executable, "-m", "venv", venv)
    offline = {**os.environ, "PIP_CONFIG_FILE": os.devnull}  # no configured index or folder
    offline.pop("PYTHONPATH", None)
    pip = venv / "bin" / "pip"
    run(pip, "install", "--quiet", "--no-index", "--find-links", wheels, "syncd", env=offline)
    assert "serve" in run(venv / "bin" / "syncd", "--help", env=offline)
    assert run(venv / "bin" / "syncd", "--version", env=offline).startswith("syncd ")
