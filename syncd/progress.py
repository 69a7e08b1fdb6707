"""Progress of a transfer: a bar with rate and ETA on a terminal, nothing otherwise.

The total is known before the first blob moves (the far side's PLAN), so the bar is
exact from the start.
"""

from __future__ import annotations

import sys
from typing import Never, Protocol

from tqdm import tqdm


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
            desc=f"{self._label} ({total_blobs} blobs)",
            unit="B",
            unit_scale=True,
            unit_divisor=1000,
            file=sys.stderr,
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
