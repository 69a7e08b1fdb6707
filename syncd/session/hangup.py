"""A hang-up ends the far side's reading, not the far side.

When sshd's session is killed or the link goes, `syncd serve` may get SIGHUP (or, from
a service manager, SIGTERM). Their default action kills the process on the spot: the
blobs received and still queued for the disk are lost, and an apply under way stops
half-way (safely, but to be resumed). `HangUp` turns the first such signal into the end
of input instead: what had already reached this process's input is still read (until
EOF, or until none comes for DRAIN_PAUSE), then the session ends as on a dropped link,
keeping and syncing every blob that arrived whole, and an apply already running
finishes. The signal's default action is restored at once, so a second one kills.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

from syncd.session.wire import Channel

SIGNALS = (signal.SIGHUP, signal.SIGTERM)
DRAIN_PAUSE = 0.2  # seconds without input that end the reading after a hang-up
DRAIN_MAX = 32 << 20  # bytes read after a hang-up, at most (a live client keeps sending)


class HangUp:
    """A Channel whose reads end (b"") once this process gets SIGHUP or SIGTERM."""

    def __init__(self, inner: Channel) -> None:
        self._inner = inner
        self._hung_up = asyncio.Event()
        self._drained = 0  # bytes read since the hang-up
        self._ended = False  # the input has ended for this session
        self.signal: int | None = None

    def __enter__(self) -> HangUp:
        loop = asyncio.get_running_loop()
        for number in SIGNALS:
            loop.add_signal_handler(number, self._hang_up, number)
        return self

    def __exit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for number in SIGNALS:
            loop.remove_signal_handler(number)

    def _hang_up(self, number: int) -> None:
        self.signal = number
        self._hung_up.set()
        asyncio.get_running_loop().remove_signal_handler(number)  # a second one kills

    async def read(self, max_bytes: int = 1 << 20) -> bytes:
        if self._ended:
            return b""
        reading = asyncio.ensure_future(self._inner.read(max_bytes))
        if not self._hung_up.is_set():
            hang_up = asyncio.ensure_future(self._hung_up.wait())
            try:
                await asyncio.wait({reading, hang_up}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                hang_up.cancel()
            if reading.done():
                return reading.result()
        # Hung up: what is already here is still read, then the input ends.
        if self._drained < DRAIN_MAX:
            done, _ = await asyncio.wait({reading}, timeout=DRAIN_PAUSE)
            if done:
                data = reading.result()
                self._drained += len(data)
                self._ended = not data
                return data
        reading.cancel()
        with contextlib.suppress(BaseException):
            await reading
        self._ended = True
        return b""

    async def write(self, data: bytes) -> None:
        await self._inner.write(data)

    async def close(self) -> None:
        await self._inner.close()

    def describe(self) -> str:
        return self._inner.describe()

    def diagnostics(self) -> str:
        return self._inner.diagnostics()
