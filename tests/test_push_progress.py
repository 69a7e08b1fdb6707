"""The push's progress follows the bytes as they are written (issue 14, item 9).

It used to be advanced when a frame was queued: the whole transfer was "done" at once,
and the bar sat at 0% until it jumped to 100%. Here a real push to a local `syncd serve`
records, at every advance, how many bytes the channel had actually written: progress
never runs ahead of the wire, and it moves many times within each frame.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from syncd.scan.api import scan_root
from syncd.session.client import PushOptions, push_session
from syncd.session.wire import WRITE_PIECE
from syncd.snapshot import SnapshotReader
from syncd.state import StateDir
from syncd.transport.channel import DEFAULT_READ, Channel
from syncd.transport.local import open_local

SIZE = 6 << 20  # more than one frame's worth in a few files


class Counted:
    """A channel that counts the bytes written through it."""

    def __init__(self, inner: Channel) -> None:
        self.inner = inner
        self.written = 0

    async def read(self, max_bytes: int = DEFAULT_READ) -> bytes:
        return await self.inner.read(max_bytes)

    async def write(self, data: bytes) -> None:
        await self.inner.write(data)
        self.written += len(data)

    async def close(self) -> None:
        await self.inner.close()

    def describe(self) -> str:
        return self.inner.describe()

    def diagnostics(self) -> str:
        return self.inner.diagnostics()


class Recorder:
    """A Progress noting (payload advanced so far, bytes the channel had written)."""

    def __init__(self, channel: Counted) -> None:
        self.channel = channel
        self.total: int | None = None
        self.advanced = 0
        self.seen: list[tuple[int, int]] = []

    def start(self, total_bytes: int, total_blobs: int) -> None:
        self.total = total_bytes

    def advance(self, nbytes: int) -> None:
        self.advanced += nbytes
        self.seen.append((self.advanced, self.channel.written))

    def finish(self) -> None:
        pass


def test_progress_follows_the_bytes_written(tmp_path: Path) -> None:
    src, far = tmp_path / "src", tmp_path / "far"
    src.mkdir()
    for n in range(3):
        (src / f"f{n}.bin").write_bytes(os.urandom(SIZE // 3))
    scan_root(src, StateDir(src))

    async def push() -> Recorder:
        channel = Counted(await open_local(far))
        recorder = Recorder(channel)
        try:
            with SnapshotReader(StateDir(src).snapshot) as snapshot:
                outcome = await push_session(
                    channel, snapshot, PushOptions(src, True, str(far)), recorder
                )
        finally:
            await channel.close()
        assert outcome.result.status == "applied"
        return recorder

    recorder = asyncio.run(push())
    assert recorder.total is not None and recorder.advanced == recorder.total
    assert all(advanced <= written for advanced, written in recorder.seen)  # never ahead
    assert len(recorder.seen) >= recorder.total // WRITE_PIECE  # every piece, not per frame
