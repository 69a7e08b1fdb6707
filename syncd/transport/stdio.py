"""The far side's end: a `Channel` over this process's own stdin and stdout.

Used by `syncd serve --stdio`, whose stdin/stdout are the protocol stream (an SSH session
or a pipe from a local `syncd push`). In that mode NOTHING ELSE MAY WRITE TO STDOUT:
every byte there is read as protocol. Log and report on stderr only.

`open_stdio()` enforces this as far as it can: it moves the stream onto private file
descriptors, then points fd 1 (and so `print()` and `sys.stdout`) at stderr and fd 0 at
/dev/null, so that a stray print or input() cannot corrupt or steal protocol bytes.

Pipes, sockets and terminals are driven by the event loop; a regular file (e.g.
`serve --stdio < frames.bin`) or /dev/null is read and written from a worker thread
instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import stat
from typing import Protocol

from syncd.transport.channel import DEFAULT_READ
from syncd.transport.closing import ClosesOnce
from syncd.transport.errors import ChannelClosed

_READ_LIMIT = 1 << 20
CLOSE_TIMEOUT = 30.0


class _Reader(Protocol):
    async def read(self, n: int) -> bytes: ...
    def close(self) -> None: ...


class _Writer(Protocol):
    async def write(self, data: bytes) -> None: ...
    async def close(self, timeout: float) -> None: ...


def _is_stream(fd: int) -> bool:
    """Whether the event loop can drive fd: a pipe, socket or terminal, but not a
    character device epoll refuses (/dev/null: the loop would then never see input)."""
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
        return False
    with selectors.DefaultSelector() as selector:
        try:
            selector.register(fd, selectors.EVENT_READ | selectors.EVENT_WRITE)
        except PermissionError:
            return False
    return True


class _LoopReader:
    def __init__(self, reader: asyncio.StreamReader, transport: asyncio.BaseTransport) -> None:
        self._reader = reader
        self._transport = transport

    async def read(self, n: int) -> bytes:
        return await self._reader.read(n)

    def close(self) -> None:
        self._transport.close()


class _ThreadReader:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    async def read(self, n: int) -> bytes:
        return await asyncio.to_thread(os.read, self._fd, n)

    def close(self) -> None:
        os.close(self._fd)


class _WriteProtocol(asyncio.Protocol):
    """Flow control for a write pipe: `drain()` waits while the transport is paused."""

    def __init__(self) -> None:
        self._paused = False
        self._waiters: list[asyncio.Future[None]] = []
        self.lost = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._wake()
        if not self.closed.done():
            self.closed.set_result(None)

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def drain(self) -> None:
        while self._paused and not self.lost:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter


class _LoopWriter:
    def __init__(self, transport: asyncio.WriteTransport, protocol: _WriteProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def write(self, data: bytes) -> None:
        if self._protocol.lost or self._transport.is_closing():
            raise ChannelClosed("stdio: the other side stopped reading our output")
        self._transport.write(data)
        await self._protocol.drain()
        if self._protocol.lost:
            raise ChannelClosed("stdio: the other side stopped reading our output")

    async def close(self, timeout: float) -> None:
        self._transport.close()  # flushes what is buffered, then closes
        try:
            await asyncio.wait_for(asyncio.shield(self._protocol.closed), timeout)
        except TimeoutError:  # the other side stopped reading: drop what is left
            self._transport.abort()


class _ThreadWriter:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    async def write(self, data: bytes) -> None:
        try:
            await asyncio.to_thread(self._write_all, data)
        except OSError as exc:
            raise ChannelClosed(f"stdio: writing our output: {exc.strerror or exc}") from exc

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    async def close(self, timeout: float) -> None:
        os.close(self._fd)


class StdioChannel(ClosesOnce):
    """A `Channel` over the stream that was this process's stdin/stdout."""

    def __init__(
        self,
        reader: _Reader,
        writer: _Writer,
        restore: list[tuple[int, bool]],
        *,
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        super().__init__()
        self._close_timeout = close_timeout
        self._reader = reader
        self._writer = writer
        self._restore = restore

    async def read(self, max_bytes: int = DEFAULT_READ) -> bytes:
        if self._closing:
            return b""
        try:
            return await self._reader.read(max_bytes)
        except OSError as exc:
            raise ChannelClosed(f"stdio: reading our input: {exc.strerror or exc}") from exc

    async def write(self, data: bytes) -> None:
        if self._closing:
            raise ChannelClosed("stdio: write after close")
        if data:
            await self._writer.write(data)

    async def _close(self) -> None:
        try:
            with contextlib.suppress(OSError):
                await self._writer.close(self._close_timeout)
            with contextlib.suppress(OSError):
                self._reader.close()
        finally:
            # The event loop made the stream non-blocking; a terminal or pipe shared with
            # the parent must not stay that way after we exit.
            for fd, blocking in self._restore:
                with contextlib.suppress(OSError):
                    os.set_blocking(fd, blocking)
                with contextlib.suppress(OSError):
                    os.close(fd)

    def describe(self) -> str:
        return "stdio"

    def diagnostics(self) -> str:
        return ""


async def open_stdio(
    *,
    stdin_fd: int = 0,
    stdout_fd: int = 1,
    protect: bool = True,
    close_timeout: float = CLOSE_TIMEOUT,
) -> StdioChannel:
    """Take over stdin/stdout as a channel (see the module docstring).

    With `protect` (the default, and the only sensible choice for `serve --stdio`), fd 1
    is re-pointed at stderr and fd 0 at /dev/null once the stream has been moved away.
    `close()` flushes our output for at most `close_timeout` seconds, then drops it.
    """
    loop = asyncio.get_running_loop()
    in_fd, out_fd = os.dup(stdin_fd), os.dup(stdout_fd)
    restore = [(os.dup(fd), os.get_blocking(fd)) for fd in (in_fd, out_fd)]
    if protect:
        os.dup2(2, stdout_fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, stdin_fd)
        os.close(devnull)

    reader: _Reader
    if _is_stream(in_fd):
        stream = asyncio.StreamReader(limit=_READ_LIMIT)
        read_transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stream), os.fdopen(in_fd, "rb", buffering=0)
        )
        reader = _LoopReader(stream, read_transport)
    else:
        reader = _ThreadReader(in_fd)

    writer: _Writer
    if _is_stream(out_fd):
        write_transport, protocol = await loop.connect_write_pipe(
            _WriteProtocol, os.fdopen(out_fd, "wb", buffering=0)
        )
        writer = _LoopWriter(write_transport, protocol)
    else:
        writer = _ThreadWriter(out_fd)
    return StdioChannel(reader, writer, restore, close_timeout=close_timeout)
