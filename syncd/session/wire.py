"""Join a sans-IO Connection to a Channel: frames out through one writer, events in.

All outgoing frames go through one queue and one writer task, so frames leave in the
order `send` was called whatever the tasks calling it, and a slow peer slows every
sender: the queue holds at most QUEUED_BYTES (a BLOBS frame can be 16 MiB, so a count
of frames would not bound memory). Byte counters feed the `wire_bytes_*` figures.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol

from protocol.connection import NEED_DATA, Closed, Connection, Event
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import Error, Message
from syncd.errors import SyncdError
from syncd.tasks import cancel_and_wait

QUEUED_BYTES = 16 << 20
READ_SIZE = 1 << 20
# A frame is written in pieces of at most this size, each reported to the frame's
# `on_written` (so a progress bar follows the bytes as they leave, even at 1 MB/s).
WRITE_PIECE = 256 << 10

# Told (bytes of the frame just written, the frame's length) as a frame goes out.
OnWritten = Callable[[int, int], None]


class Channel(Protocol):
    """What a session needs from a transport (syncd/transport implements it)."""

    async def read(self, max_bytes: int = READ_SIZE) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...

    def describe(self) -> str: ...

    def diagnostics(self) -> str: ...


class PeerError(SyncdError):
    """The peer sent ERROR: the conversation is over, for the peer's stated reason."""

    def __init__(self, message: Error) -> None:
        super().__init__(f"the other side reported: {message.message}")
        self.code = message.code
        self.message = message.message


class Wire:
    def __init__(self, connection: Connection, channel: Channel) -> None:
        self.connection = connection
        self.channel = channel
        self.bytes_sent = 0
        self.bytes_received = 0
        self._frames: asyncio.Queue[tuple[list[bytes], int, OnWritten | None] | None] = (
            asyncio.Queue()
        )
        self._queued = 0
        self._room = asyncio.Condition()
        self._writer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Wire:
        self._writer = asyncio.create_task(self._write_frames())
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is asyncio.CancelledError and self._writer is not None:
            # A stopped session (Ctrl-C) does not wait for what is queued to go out.
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        await self.flush()
        if self._writer is not None and self._writer.done() and not self._writer.cancelled():
            # A failed writer is reported through next_event or the session's own error;
            # fetch its exception so that it is not logged a second time as unretrieved.
            self._writer.exception()

    async def send(self, message: Message, on_written: OnWritten | None = None) -> None:
        # In call order, before any wait. A BLOBS frame comes in pieces that are the
        # blobs themselves: queued, a frame costs no copy of what it carries.
        parts = self.connection.send_parts(message)
        size = sum(len(part) for part in parts)
        self.bytes_sent += size
        self._frames.put_nowait((parts, size, on_written))
        self._queued += size
        if self._queued > QUEUED_BYTES:
            async with self._room:
                await self._room.wait_for(self._has_room)

    def _has_room(self, more: int = 0) -> bool:
        return (
            self._queued + more <= QUEUED_BYTES
            or (more > 0 and self._queued == 0)
            or self._writer is None
            or self._writer.done()
        )

    async def room_for(self, size: int) -> None:
        """Wait until a frame of `size` bytes fits the queue (any frame, once it is empty).
        A sender of large frames calls this first: the frame it is about to build then
        waits in its own memory instead of the queue's, so that one large frame is
        written while the next one is read (a 16 MiB blob frame queued behind another
        added 16 MiB to a push's peak)."""
        if not self._has_room(size):
            async with self._room:
                await self._room.wait_for(lambda: self._has_room(size))

    async def flush(self) -> None:
        """Wait until every queued frame has been written (or the writer failed)."""
        if self._writer is None or self._writer.done():
            return
        self._frames.put_nowait(None)
        await self._writer

    async def _write_frames(self) -> None:
        try:
            while (item := await self._frames.get()) is not None:
                parts, size, on_written = item
                for part in parts:
                    await self._write_part(part, size, on_written)
                self._queued -= size
                async with self._room:
                    self._room.notify_all()
        finally:
            async with self._room:
                self._room.notify_all()  # senders waiting for room must see the end

    async def _write_part(self, part: bytes, size: int, on_written: OnWritten | None) -> None:
        if on_written is None:
            await self.channel.write(part)
            return
        for start in range(0, len(part), WRITE_PIECE):
            piece = part[start : start + WRITE_PIECE]
            await self.channel.write(piece)
            on_written(len(piece), size)

    async def next_event(self) -> Event:
        """The next event from the peer; raises PeerError on ERROR, ProtocolError on
        anything malformed, hostile or out of order."""
        while True:
            self._check_writer()
            event = self.connection.next_event()
            if event is not NEED_DATA:
                if isinstance(event, Error):
                    raise PeerError(event)
                return event
            data = await self.channel.read(READ_SIZE)
            self.bytes_received += len(data)
            self.connection.receive_data(data)

    async def take_input(self, limit: int, pause: float) -> None:
        """After the conversation broke (our writes failed: the link is gone), read what
        had already reached this side's input into the connection, so that the caller
        keeps the whole blobs in it: until EOF, `pause` seconds with nothing, or `limit`
        bytes (a live peer would keep sending)."""
        taken = 0
        with contextlib.suppress(OSError, TimeoutError, SyncdError):
            while taken < limit:
                data = await asyncio.wait_for(self.channel.read(READ_SIZE), pause)
                if not data:
                    return
                taken += len(data)
                self.bytes_received += len(data)
                self.connection.receive_data(data)

    def _check_writer(self) -> None:
        if self._writer is not None and self._writer.done() and not self._writer.cancelled():
            error = self._writer.exception()
            if error is not None:
                raise ProtocolError(ErrorCode.TRUNCATED, f"cannot write to the peer: {error}")

    async def fail(self, code: ErrorCode, text: str) -> None:
        """Tell the peer why we stop, if the connection still allows a word."""
        with contextlib.suppress(Exception):
            await self.send(Error(int(code), text[:4000]))
            await asyncio.wait_for(self.flush(), timeout=5)

    async def aclose(self) -> None:
        if self._writer is not None:
            await cancel_and_wait(self._writer)
        await self.channel.close()


def is_closed(event: Event) -> bool:
    return isinstance(event, Closed)
