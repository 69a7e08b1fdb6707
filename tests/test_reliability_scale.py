"""CI's slice of the scale campaign (reliability/scale.py), and regression tests for what
its full run found: a tree with more entries than the far side may open descriptors
could not be applied, and the far side's memory grew by kilobytes per entry."""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
from collections import deque
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from bench.linktree import LinkTreeSpec, generate
from protocol.messages import Blobs, Want
from reliability import scale
from reliability.campaign import Context
from syncd.session import transfer
from tests.pushutil import snapshot_id, syncd_env

SEED = 20261125
DESCRIPTOR_LIMIT = 1024


def test_quick_slice(tmp_path: Path) -> None:
    outcome = scale.run(Context(SEED, tmp_path, quick=True))
    assert outcome.ok, outcome.failures or outcome.figures
    names = {figure.name for figure in outcome.figures}
    for size in ("N", "N/10"):
        assert f"tree at {size}" in names
        for step in ("cold scan", "no-change rescan", "cold push: client", "cold push: far serve"):
            assert f"{step} at {size}" in names, (step, size)
    assert "diff of the two snapshot files at N" in names
    assert "cold scan: growth from N/10 to N" in names


def _limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTOR_LIMIT, DESCRIPTOR_LIMIT))


def test_a_tree_of_more_entries_than_open_descriptors_is_pushed(tmp_path: Path) -> None:
    """Regression: a placed tree (a cold push places the whole root as one) kept every
    file and directory it built open until its end, for one fsync batch: beyond the
    descriptor limit the far side failed with 'building failed: Too many open files'."""
    src = tmp_path / "src"
    generate(src, LinkTreeSpec(links=1_200, manifests=True))  # ~3,100 entries
    far = tmp_path / "far"
    command = [sys.executable, "-m", "syncd", "push", str(src), str(far), "--json"]
    command += ["--state", str(tmp_path / "state")]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=syncd_env(),
        preexec_fn=_limit_descriptors,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "applied"
    assert snapshot_id(far) == summary["snapshot"]


class _Peer:
    """The source side of the blob transfer, answering the oldest WANTs first."""

    def __init__(self) -> None:
        self.asked: deque[tuple[bytes, int]] = deque()
        self.most = 0
        self.connection = SimpleNamespace(blobs_due=0, rest_agreed=False)

    async def send(self, message: Want) -> None:
        self.asked.extend(message.blobs)
        self.most = max(self.most, len(self.asked))
        self.connection.blobs_due = len(self.asked)

    async def next_event(self) -> Blobs:
        count = min(1_000, len(self.asked))
        answer = [self.asked.popleft() for _ in range(count)]
        self.connection.blobs_due = len(self.asked)
        return Blobs(tuple((digest, b"x" * length) for digest, length in answer))


class _Stager:
    async def stage(self, blobs: tuple[tuple[bytes, bytes], ...]) -> None:
        pass

    async def drain(self) -> None:
        pass


def test_the_far_side_asks_for_a_bounded_number_of_blobs_at_once() -> None:
    """Regression: only the bytes in flight were bounded (64 MiB), so a tree of 200,000
    link files had all of them asked for at once, each one bookkept on both sides."""
    wanted = {i.to_bytes(32, "big"): 71 for i in range(200_000)}
    peer = _Peer()
    route = SimpleNamespace(staging=SimpleNamespace(partials=SimpleNamespace(needed=set())))
    run = transfer.Transfer(cast(Any, peer), wanted, cast(Any, route))
    asyncio.run(run._receive(cast(Any, _Stager())))
    assert not peer.asked
    assert peer.most <= transfer.WANT_WINDOW_BLOBS + transfer.WANT_BATCH
