"""The far side as a child process on this machine: `syncd serve --stdio --root PATH`."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

from syncd.transport.channel import DEFAULT_READ, Channel
from syncd.transport.closing import ClosesOnce
from syncd.transport.errors import ChannelClosed, ConnectError
from syncd.transport.ratelimit import RateLimited
from syncd.transport.tail import TailBuffer, describe_exit, format_diagnostics

DEFAULT_LOCAL_SYNCD: tuple[str, ...] = (sys.executable, "-m", "syncd")
CLOSE_TIMEOUT = 30.0
_KILL_GRACE = 5.0
_PIPE_LIMIT = 1 << 20


def serve_argv(remote_syncd: Sequence[str], root: str, flags: Sequence[str] = ()) -> list[str]:
    return [*remote_syncd, "serve", "--stdio", "--root", root, *flags]


async def open_local(
    path: Path,
    *,
    remote_syncd: Sequence[str] = DEFAULT_LOCAL_SYNCD,
    bwlimit: float | None = None,
    close_timeout: float = CLOSE_TIMEOUT,
    serve_flags: Sequence[str] = (),
) -> Channel:
    """Start `[*remote_syncd, "serve", "--stdio", "--root", str(path)]` and talk to it.

    `bwlimit` (bytes per second) throttles what we send; `serve_flags` follow serve's
    own arguments (the far operator's options, given to a local push). `close_timeout` is how long
    `close()` waits for the child to exit after end of input before terminating it.
    """
    if not remote_syncd:
        raise ValueError("remote_syncd must name a program")
    argv = serve_argv(remote_syncd, str(path), serve_flags)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=_PIPE_LIMIT,
            # Its own session: a terminal's Ctrl-C reaches the push, which decides (it
            # closes the channel; the far side keeps what it staged, and an apply it
            # has begun runs to its end), not the far side in the middle of its work.
            start_new_session=True,
        )
    except OSError as exc:
        raise ConnectError(
            f"cannot start {argv[0]!r} to serve {path}: {exc.strerror or exc}"
        ) from None
    channel: Channel = LocalChannel(proc, str(path), close_timeout=close_timeout)
    if bwlimit is not None:
        channel = RateLimited(channel, bwlimit)
    return channel


class LocalChannel(ClosesOnce):
    """A `Channel` over a child's stdin/stdout; its stderr is kept for `diagnostics()`."""

    def __init__(
        self, proc: asyncio.subprocess.Process, description: str, *, close_timeout: float
    ) -> None:
        super().__init__()
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        self._proc = proc
        self._stdin = proc.stdin
        self._stdout = proc.stdout
        self._description = description
        self._close_timeout = close_timeout
        self._stderr = TailBuffer()
        self._stderr_task = asyncio.create_task(self._stderr.pump(proc.stderr.read))
        self._note: str | None = None

    async def read(self, max_bytes: int = DEFAULT_READ) -> bytes:
        if self._closing:
            return b""
        try:
            return await self._stdout.read(max_bytes)
        except OSError as exc:
            raise ChannelClosed(f"{self._description}: reading from the far side: {exc}") from exc

    async def write(self, data: bytes) -> None:
        if self._closing:
            raise ChannelClosed(f"{self._description}: write after close")
        if self._stdin.is_closing():
            raise self._gone()
        try:
            self._stdin.write(data)
            await self._stdin.drain()
        except OSError as exc:  # BrokenPipeError, ConnectionResetError
            raise self._gone() from exc

    def _gone(self) -> ChannelClosed:
        return ChannelClosed(f"{self._description}: the far side stopped reading its input")

    async def _close(self) -> None:
        drain = asyncio.create_task(self._discard_output())
        try:
            async with asyncio.timeout(self._close_timeout):
                self._stdin.close()
                with contextlib.suppress(OSError):
                    await self._stdin.wait_closed()
                await self._proc.wait()
        except TimeoutError:
            self._note = f"it did not exit within {self._close_timeout:g} s of end of input"
            await self._stop_process()
        finally:
            for task in (drain, self._stderr_task):
                try:
                    await asyncio.wait_for(task, _KILL_GRACE)
                except TimeoutError:  # a grandchild still holds the pipe open
                    task.cancel()

    async def _stop_process(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._proc.terminate()
        try:
            await asyncio.wait_for(self._proc.wait(), _KILL_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await self._proc.wait()

    async def _discard_output(self) -> None:
        with contextlib.suppress(OSError):
            while await self._stdout.read(_PIPE_LIMIT):
                pass

    def describe(self) -> str:
        return self._description

    def diagnostics(self) -> str:
        status = describe_exit(self._proc.returncode) if self._proc.returncode is not None else None
        if status and self._note:
            status = f"{status}; {self._note}"
        return format_diagnostics(self._stderr, status)
