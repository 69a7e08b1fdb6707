"""Progress of a transfer: a bar with rate and ETA on a terminal, nothing otherwise.

The total is known before the first blob moves (the far side's PLAN), so the bar is
exact from the start. A push advances it as the bytes of each frame are written to the
channel (syncd/session/wire.py), not when they are queued: at --bwlimit 1M the bar moves
every quarter of a megabyte. `Counting` keeps the figures (planned, sent) for whoever
needs them besides the bar: the daemon's state and log, a Ctrl-C's "what was kept".
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Never, Protocol

from tqdm import tqdm

from syncd.safetext import escape, raw


class Progress(Protocol):
    def start(self, total_bytes: int, total_blobs: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def finish(self) -> None: ...


class NoProgress:
    def start(self, total_bytes: int, total_blobs: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def finish(self) -> None:
        pass


class TerminalProgress:
    def __init__(self, label: str) -> None:
        self._label = label
        self._bar: tqdm[Never] | None = None

    def start(self, total_bytes: int, total_blobs: int) -> None:
        self._bar = tqdm(
            total=total_bytes,
            desc=escape(f"{self._label} ({total_blobs} blobs)"),
            unit="B",
            unit_scale=True,
            unit_divisor=1000,
            file=raw(sys.stderr),  # it draws with \r itself; its label is escaped
            dynamic_ncols=True,
            mininterval=0.2,
        )

    def advance(self, nbytes: int) -> None:
        if self._bar is not None:
            self._bar.update(nbytes)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def for_terminal(label: str, *, quiet: bool) -> Progress:
    if quiet or not sys.stderr.isatty():
        return NoProgress()
    return TerminalProgress(label)


@dataclass(slots=True)
class Counting:
    """A `Progress` that keeps the far side's PLAN and the bytes sent, tells `on_plan` and
    `on_advance`, and passes everything on to `inner` (a bar, or nothing)."""

    inner: Progress = field(default_factory=NoProgress)
    on_plan: Callable[[int, int], None] | None = None
    on_advance: Callable[[int], None] | None = None  # told the bytes sent so far
    plan_bytes: int | None = None
    plan_blobs: int | None = None
    sent_bytes: int = 0

    def start(self, total_bytes: int, total_blobs: int) -> None:
        self.plan_bytes, self.plan_blobs = total_bytes, total_blobs
        self.inner.start(total_bytes, total_blobs)
        if self.on_plan is not None:
            self.on_plan(total_bytes, total_blobs)

    def advance(self, nbytes: int) -> None:
        self.sent_bytes += nbytes
        self.inner.advance(nbytes)
        if self.on_advance is not None:
            self.on_advance(self.sent_bytes)

    def finish(self) -> None:
        self.inner.finish()

    @property
    def pending(self) -> int | None:
        return None if self.plan_bytes is None else max(0, self.plan_bytes - self.sent_bytes)
