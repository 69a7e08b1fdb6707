"""Bandwidth limiting for what we send: a token bucket in front of `Channel.write`.

Rates are bytes per second with decimal units ("10M" = 10,000,000 B/s); "1.5MB/s" and
"500k" are accepted, and so are binary units ("4MiB").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from syncd.errors import UsageError
from syncd.transport.channel import DEFAULT_READ, Channel
from syncd.units import parse_size

GRANULARITY = 0.05  # seconds of traffic released at once: smooth at ~50 ms

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


MIN_RATE = 1000  # bytes per second


def parse_rate(text: str) -> float:
    """'10M', '500k', '1.5MB/s', '1G' -> bytes per second (decimal units)."""
    core = text.strip()
    if core.lower().endswith("/s"):
        core = core[:-2]
    try:
        rate = parse_size(core)
    except ValueError:
        raise UsageError(
            f"not a rate: {text!r} (bytes per second, e.g. 10M, 500k, 1.5MB/s; bits are not "
            "accepted: divide Mbit/s by 8)"
        ) from None
    if rate <= 0:
        raise UsageError(f"rate {text!r} must be more than 0 bytes per second")
    if rate < MIN_RATE:
        # `--bwlimit 1.5` meant 1.5 MB/s far more often than 1.5 B/s, which would not
        # even finish the handshake before the far side's timeout.
        raise UsageError(
            f"rate {text!r} is {rate:g} bytes per second: too slow to be meant; give a unit "
            f"(e.g. {core}M for {core} MB/s); at least {MIN_RATE} B/s"
        )
    return float(rate)


class TokenBucket:
    """`reserve(n)` takes n tokens and says how long to wait before using them.

    Tokens accrue at `rate` per second up to `burst`; the balance may go negative (a debt
    the caller pays by sleeping the returned time), so over any interval of length t at
    most `burst + rate * t` tokens are released.
    """

    def __init__(self, rate: float, burst: float, clock: Clock = time.monotonic) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock()

    def reserve(self, n: int) -> float:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= n
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class RateLimited:
    """A `Channel` that sends at most `bytes_per_second` (reads are not limited).

    Each write is cut into pieces of ~50 ms worth of bytes; a piece goes out when the
    bucket has its tokens. Writes stay whole with respect to each other.
    """

    def __init__(
        self,
        channel: Channel,
        bytes_per_second: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not bytes_per_second > 0:
            raise ValueError(f"bytes_per_second must be positive, not {bytes_per_second!r}")
        self.inner = channel
        self.bytes_per_second = bytes_per_second
        self.piece = max(1, int(bytes_per_second * GRANULARITY))
        self._bucket = TokenBucket(bytes_per_second, self.piece, clock)
        self._sleep = sleep
        self._lock = asyncio.Lock()

    async def read(self, max_bytes: int = DEFAULT_READ) -> bytes:
        return await self.inner.read(max_bytes)

    async def write(self, data: bytes) -> None:
        async with self._lock:
            view = memoryview(data)
            for start in range(0, len(view), self.piece):
                piece = view[start : start + self.piece]
                delay = self._bucket.reserve(len(piece))
                if delay > 0:
                    await self._sleep(delay)
                await self.inner.write(bytes(piece))

    async def close(self) -> None:
        await self.inner.close()

    def describe(self) -> str:
        return self.inner.describe()

    def diagnostics(self) -> str:
        return self.inner.diagnostics()
