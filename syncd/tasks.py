"""Ending a helper task without taking on its outcome, and without eating our own.

`with suppress(BaseException): await task` after `task.cancel()` also swallows a
cancellation aimed at the caller (Ctrl-C, a daemon stop, a timeout around the session):
the caller would then run on as if nothing had asked it to stop. `asyncio.wait` never
raises the awaited task's exception, only the caller's own CancelledError, which is
the split wanted here.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

_T = TypeVar("_T")


async def cancel_and_wait(task: asyncio.Future[_T]) -> None:
    """Cancel `task` and wait until it has ended. Its own exception, if any, is marked
    retrieved and dropped (whoever needs it read it before); a cancellation of the
    caller propagates."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()
