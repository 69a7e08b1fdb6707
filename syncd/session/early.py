"""The apply's preparation, run on a worker thread while a push's blobs arrive.

Once the descent is done, every tree record of the offer is here, and the apply's work
that reads only tree records (the change's paths for the gate, the target snapshot:
syncd/gate/gated.py `prepare_apply`, syncd/apply/ahead.py) need not wait for the last
byte. Over a link slower than the disk, that work is free; over loopback it shares the
CPU with the transfer.

It is an optimisation only: whatever stops it (an error, a hostile target, the session
ending) leaves gated_apply to do that work itself, where it always did, with the same
errors. Its thread writes into the state folder, so the session waits for it (stopped
at its next record or directory visited) before it lets go of the root's lock.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from syncd.apply.ahead import discard
from syncd.gate.gated import Prepared
from syncd.state import StateDir

log = logging.getLogger("syncd.serve")


class Early:
    def __init__(self, work: Callable[[threading.Event], Prepared], state: StateDir) -> None:
        self._work = work
        self._state = state
        self._stop = threading.Event()
        self._task: asyncio.Task[Prepared] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(asyncio.to_thread(self._work, self._stop))

    async def result(self) -> Prepared | None:
        """What it worked out, once done; None if it did not start or did not finish."""
        if self._task is None:
            return None
        try:
            return await asyncio.shield(self._task)
        except Exception as exc:  # any failure: the apply does the work itself
            log.info("the apply's preparation did not finish ahead (%r): done after", exc)
            return None

    async def close(self) -> None:
        """Stop the work if it still runs, wait for its thread, and remove a target
        snapshot it wrote that no apply took over."""
        self._stop.set()
        if self._task is not None:
            await asyncio.wait([self._task])
            if not self._task.cancelled():
                self._task.exception()  # retrieved: result() reported it, or it is moot
        discard(self._state)
