"""Helpers for push tests: run the real CLI, compare trees, ask the registry oracle."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from syncd.sample import Registry, list_images, pull_all
from syncd.scan.api import scan_root
from syncd.state import StateDir

PROJECT = Path(__file__).resolve().parent.parent
CACHE = Path(".oc-mirror/.cache")
LOCAL_SYNCD = f"{sys.executable} -m syncd"


def syncd_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child running this checkout's syncd; `extra` may be a whole
    environment (it often copies os.environ, PYTHONPATH included)."""
    return {**os.environ, **(extra or {}), "PYTHONPATH": str(PROJECT)}


def push(src: Path, target: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`syncd push SRC TARGET --json ARGS`; returns the summary, asserts it succeeded."""
    result = run_push(src, target, *args, env=env)
    assert result.returncode == 0, f"push failed ({result.returncode}): {result.stderr}"
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def run_push(
    src: Path, target: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "syncd", "push", str(src), target, "--json", *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=env or syncd_env(), timeout=600, check=False
    )


def far_syncd(tmp_path: Path, *flags: str) -> list[str]:
    """A far-side syncd started with `flags` after serve's own arguments."""
    script = tmp_path / "far-syncd"
    extra = " ".join(shlex.quote(flag) for flag in flags)
    script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m syncd "$@" {extra}\n')
    script.chmod(0o755)
    return [str(script)]


def snapshot_id(root: Path) -> str:
    """A fresh scan's id, with the state kept outside the tree so nothing is changed."""
    state = root.parent / f".{root.name}-verify-state"
    try:
        return scan_root(root, StateDir(root, state)).summary.id_hex
    finally:
        shutil.rmtree(state, ignore_errors=True)


def pull_every_tag(root: Path) -> dict[str, str]:
    """Serve ROOT's cache with docker-registry, pull every tag with skopeo: failures."""
    with Registry(root / CACHE, read_only=True) as registry:
        images = list_images(registry)
        assert images, "the registry lists no images"
        results = pull_all(registry, images)
    return {name: r.error for name, r in results.items() if not r.ok}
