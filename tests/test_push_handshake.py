"""The far side's handshake timeout bounds a silent client, never a slow source scan:
the client says HELLO on connecting and OFFERs once its snapshot is there."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from syncd.sample import TINY, generate_month
from syncd.scan.api import scan_root
from syncd.session.client import PushOptions, PushOutcome, push_session
from syncd.snapshot import SnapshotReader
from syncd.state import StateDir
from syncd.transport.local import open_local
from tests.pushutil import far_syncd, snapshot_id

FAR_TIMEOUT = "500ms"
SCAN_DELAY = 5.0  # far longer than FAR_TIMEOUT, even when the far side starts slowly


def test_a_scan_longer_than_the_far_timeout_still_pushes(tmp_path: Path) -> None:
    source, far = tmp_path / "src", tmp_path / "far"
    generate_month(source, 1, TINY, via_registry=False)
    scan_root(source, StateDir(source))
    remote = far_syncd(tmp_path, "--handshake-timeout", FAR_TIMEOUT)

    async def run() -> PushOutcome:
        channel = await open_local(far, remote_syncd=remote)
        try:
            with contextlib.ExitStack() as readers:

                async def late_snapshot() -> SnapshotReader:
                    await asyncio.sleep(SCAN_DELAY)  # a source scan still running
                    return readers.enter_context(SnapshotReader(StateDir(source).snapshot))

                options = PushOptions(source, True, str(far))
                return await push_session(channel, late_snapshot(), options)
        finally:
            await channel.close()

    outcome = asyncio.run(run())
    assert outcome.result.status == "applied"
    assert snapshot_id(far) == snapshot_id(source)
