"""Watch the source root for changes (inotify, through watchfiles).

The watcher only says "something changed, now": what changed is the scanner's business
(its stat cache finds it), so events are not kept. Changes inside the state folder are
the daemon's own writes (snapshot, stat cache, site state) and are ignored, or every
scan would trigger the next.

watchfiles runs inotify in a Rust thread that wakes every `step` ms to see whether it
should stop; up to 200 ms keeps an idle daemon near zero CPU while stopping promptly.
Changes come in batches (`debounce`), kept well inside the quiet time. When
inotify cannot watch the tree (fs.inotify.max_user_watches too low, or a file system
without inotify), it falls back to polling the tree every `poll_seconds`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import watchfiles

from syncd.tasks import cancel_and_wait

STEP_MS = 200
DEBOUNCE_MS = 1000


class Watcher:
    """Calls `on_change()` whenever something under `root` (but not `ignore`) changes."""

    def __init__(
        self,
        root: Path,
        ignore: Path | None,
        on_change: Callable[[], None],
        *,
        poll_seconds: float = 60.0,
        quiet: float = 60.0,
        on_fallback: Callable[[str], None] | None = None,
    ) -> None:
        self.root = root
        self._ignore = str(ignore) + os.sep if ignore is not None else None
        self._on_change = on_change
        self._poll_ms = max(int(poll_seconds * 1000), 1000)
        self._on_fallback = on_fallback
        # A batch of changes must arrive well within the quiet time, or a tree still being
        # written could look quiet between two batches.
        self._debounce = max(20, min(DEBOUNCE_MS, int(quiet * 1000 / 3)))
        self._step = min(STEP_MS, self._debounce)
        self._stop = asyncio.Event()
        self.polling = False

    def _keep(self, change: watchfiles.Change, path: str) -> bool:
        return self._ignore is None or not (path + os.sep).startswith(self._ignore)

    def _changes(self, polling: bool) -> AsyncIterator[set[tuple[watchfiles.Change, str]]]:
        return watchfiles.awatch(
            self.root,
            watch_filter=self._keep,
            debounce=self._debounce,
            step=self._step,
            stop_event=self._stop,
            force_polling=polling,
            poll_delay_ms=self._poll_ms,
            ignore_permission_denied=True,
        )

    async def run(self, started: asyncio.Event) -> None:
        """Watch until `stop()`; `started` is set once the watches are in place."""
        try:
            await self._watch(polling=False, started=started)
        except OSError as exc:  # e.g. "OS file watch limit reached"
            if self._stop.is_set():
                return
            if self._on_fallback is not None:
                self._on_fallback(str(exc))
            self.polling = True
            await self._watch(polling=True, started=started)

    async def _watch(self, *, polling: bool, started: asyncio.Event) -> None:
        changes = self._changes(polling)
        # awatch sets up its watches synchronously on the first step of the first
        # __anext__, before its first await: once that step ran, the watches exist.
        first = asyncio.ensure_future(anext(changes, None))
        try:
            await asyncio.sleep(0)
            if first.done() and first.exception() is not None:
                raise first.exception()  # type: ignore[misc]
            started.set()
            batch = await first
            while batch is not None:
                self._on_change()
                batch = await anext(changes, None)
        finally:
            # The first step must have ended before the generator can be closed (aclose
            # refuses a generator still running in another task).
            await cancel_and_wait(first)
            await changes.aclose()  # type: ignore[attr-defined]

    def stop(self) -> None:
        self._stop.set()
