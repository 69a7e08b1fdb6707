"""A hang-up ends the far side's reading, not the far side.

When sshd's session is killed or the link goes, `syncd serve` may get SIGHUP (or, from
a service manager, SIGTERM). Their default action kills the process on the spot: the
blobs received and still queued for the disk are lost, and an apply under way stops
half-way (safely, but to be resumed). `HangUp` turns the first such signal into the end
of input instead: the session then ends as on a dropped link, keeping and syncing every
blob that arrived whole, and an apply already running finishes. The signal's default
action is restored at once, so a second one kills.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

from syncd.session.wire import Channel

SIGNALS = (signal.SIGHUP, signal.SIGTERM)


class HangUp:
    """A Channel whose reads end (b"") once this process gets SIGHUP or SIGTERM."""

    def __init__(self, inner: Channel) -> None:
        self._inner = inner
        self._hung_up = asyncio.Event()
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
        if self._hung_up.is_set():
            return b""
        reading = asyncio.ensure_future(self._inner.read(max_bytes))
        hang_up = asyncio.ensure_future(self._hung_up.wait())
        try:
            await asyncio.wait({reading, hang_up}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hang_up.cancel()
        if reading.done():
            return reading.result()
        reading.cancel()
        with contextlib.suppress(BaseException):
            await reading
        return b""

    async def write(self, data: bytes) -> None:
        await self._inner.write(data)

    async def close(self) -> None:
        await self._inner.close()

    def describe(self) -> str:
        return self._inner.describe()

    def diagnostics(self) -> str:
        return self._inner.diagnostics()
