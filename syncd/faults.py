"""Test-only fault injection: a kill -9 at a chosen, repeatable place in a real process.

`SYNCD_FAULT=POINT:N` in the environment makes this process SIGKILL itself the Nth time
it reaches POINT (counted from 1). The reliability campaign (reliability/crash.py) uses it
on `syncd serve` and `syncd import` child processes, where in-process hooks cannot reach
and timing alone cannot hit one step out of a hundred. Unset (always, outside tests),
`reached` costs one global lookup.

Points: `tree` (a tree record about to be staged), `blob` (an arriving blob about to be
routed), `flush` (staging about to be made durable), `volume` (a media volume staged and
recorded), `apply` (an apply starting), `journal` (the journal written, no live change
yet), `step` (before each live-tree mutation), `verified` (the final scan matched, the
journal not yet removed), `cleared` (journal and staging removed), `imported` (an
import's apply returned, its progress not yet saved).
"""

from __future__ import annotations

import os
import signal

ENV = "SYNCD_FAULT"
POINTS = frozenset(
    {
        "tree",
        "blob",
        "flush",
        "volume",
        "apply",
        "journal",
        "step",
        "verified",
        "cleared",
        "imported",
    }
)


def _parse(text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    point, _, count = text.partition(":")
    if point not in POINTS or not count.isdigit() or int(count) < 1:
        raise SystemExit(f"syncd: {ENV}={text!r}: expected POINT:N with POINT one of {POINTS}")
    return point, int(count)


_armed = _parse(os.environ.get(ENV))
_seen: dict[str, int] = {}


def reached(point: str) -> None:
    """Die here (SIGKILL, no cleanup of any kind) if this is the armed point's Nth time."""
    if _armed is None:
        return
    seen = _seen[point] = _seen.get(point, 0) + 1
    if (point, seen) == _armed:
        os.kill(os.getpid(), signal.SIGKILL)
