"""Helper tasks end without swallowing the caller's cancellation; frames are packed once.

A caller cancelled while it waits for a helper task to end (Ctrl-C during a session's
clean-up, a daemon stopping) must itself end cancelled, not run on as if nothing had
asked it to stop.
"""

from __future__ import annotations

import asyncio

from protocol.connection import Connection, Role
from protocol.messages import Hello
from syncd.session.client import ITEM_SLACK, pack_frames
from syncd.session.wire import QUEUED_BYTES, Wire
from syncd.tasks import cancel_and_wait

SETTLE = 20  # event-loop turns for a cancellation to reach its task


class StubbornChannel:
    """A channel whose write, once cancelled, waits for `release` before it ends."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.writing = asyncio.Event()
        self.closed = False

    async def read(self, max_bytes: int = 0) -> bytes:
        await asyncio.Event().wait()
        return b""

    async def write(self, data: bytes) -> None:
        self.writing.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await self.release.wait()
            raise

    async def close(self) -> None:
        self.closed = True

    def describe(self) -> str:
        return "stub"

    def diagnostics(self) -> str:
        return ""


async def _settle() -> None:
    for _ in range(SETTLE):
        await asyncio.sleep(0)


def test_cancel_and_wait_drops_the_tasks_error() -> None:
    async def failing() -> None:
        raise OSError("the helper's own failure")

    async def run() -> None:
        task = asyncio.create_task(failing())
        await _settle()
        await cancel_and_wait(task)  # does not raise the helper's OSError
        assert isinstance(task.exception(), OSError)

    asyncio.run(run())


def test_cancel_and_wait_passes_on_the_callers_cancellation() -> None:
    async def run() -> None:
        release = asyncio.Event()

        async def slow_to_stop() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                await release.wait()

        helper = asyncio.create_task(slow_to_stop())
        await _settle()
        caller = asyncio.create_task(cancel_and_wait(helper))
        await _settle()
        caller.cancel()
        await _settle()
        assert caller.cancelled()
        release.set()
        await asyncio.wait({helper})

    asyncio.run(run())


def test_wire_close_passes_on_the_callers_cancellation() -> None:
    async def run() -> None:
        channel = StubbornChannel()
        wire = Wire(Connection(Role.CLIENT), channel)
        await wire.__aenter__()
        await wire.send(Hello((1, 1), "test", (), {}))
        await channel.writing.wait()
        closing = asyncio.create_task(wire.aclose())
        await _settle()
        closing.cancel()  # the caller gives up while the writer is still ending
        await _settle()
        assert closing.cancelled()
        assert not channel.closed
        channel.release.set()
        await _settle()

    asyncio.run(run())


def test_frames_keep_order_and_fit_the_budget() -> None:
    items = [(bytes([i]) * 32, b"x" * size) for i, size in enumerate([10, 500, 90, 2000, 1, 1])]
    budget = 700
    frames = list(pack_frames(items, budget))
    assert [item for frame in frames for item in frame] == items
    for frame in frames:
        size = sum(len(data) + ITEM_SLACK for _, data in frame)
        assert size <= budget or len(frame) == 1  # a lone oversized item goes alone
    assert list(pack_frames([], budget)) == []


class GatedChannel(StubbornChannel):
    """A channel whose writes each wait for `release`."""

    async def write(self, data: bytes) -> None:
        self.writing.set()
        await self.release.wait()


def test_room_for_a_large_frame_waits_until_the_queue_is_written() -> None:
    """Issue 17 (the push client's memory): a 16 MiB blob frame waits to be built until
    the frame ahead of it is written, instead of queueing behind it."""

    async def run() -> None:
        channel = GatedChannel()
        wire = Wire(Connection(Role.CLIENT), channel)
        async with wire:
            await wire.send(Hello((1, 1), "test", (), {}))
            await wire.room_for(1000)  # small frames still queue behind it
            waiting = asyncio.create_task(wire.room_for(QUEUED_BYTES))
            await _settle()
            assert channel.writing.is_set() and not waiting.done()
            channel.release.set()
            await asyncio.wait_for(waiting, 5)

    asyncio.run(run())
