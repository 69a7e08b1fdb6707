"""Closing a channel once, whoever asks and however often.

Every channel's `close()` may be called twice, from two tasks at once, or after the far
side has gone: the first call starts the real close, and every call waits for it
(shielded, so a caller's cancellation does not cut a close halfway).
"""

from __future__ import annotations

import asyncio


class ClosesOnce:
    def __init__(self) -> None:
        self._closing = False
        self._close_task: asyncio.Task[None] | None = None

    async def close(self) -> None:
        self._closing = True
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._close())
        await asyncio.shield(self._close_task)

    async def _close(self) -> None:
        raise NotImplementedError
