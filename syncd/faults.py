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

`SYNCD_FAULT_FILL=POINT:N:LEAVE:DIR` instead fills the file system of DIR the Nth time
this process reaches POINT, leaving about LEAVE bytes free (a file `DIR/ballast-fault`,
allocated at once): the disk-full campaign (reliability/diskfull.py) runs out of space
at every phase that way, after the far side's own space check has passed.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

ENV = "SYNCD_FAULT"
FILL_ENV = "SYNCD_FAULT_FILL"
BALLAST = "ballast-fault"
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


def _parse_fill(text: str | None) -> tuple[tuple[str, int], int, str] | None:
    if not text:
        return None
    where, _, rest = text.partition(":")
    count, _, rest = rest.partition(":")
    leave, _, folder = rest.partition(":")
    if not (leave.isdigit() and folder):
        raise SystemExit(f"syncd: {FILL_ENV}={text!r}: expected POINT:N:LEAVE:DIR")
    armed = _parse(f"{where}:{count}")
    assert armed is not None
    return armed, int(leave), folder


_armed = _parse(os.environ.get(ENV))
_fill = _parse_fill(os.environ.get(FILL_ENV))
_seen: dict[str, int] = {}


def reached(point: str) -> None:
    """Die here (SIGKILL, no cleanup of any kind) if this is the armed point's Nth time;
    or fill the disk there, if that is armed."""
    if _armed is None and _fill is None:
        return
    seen = _seen[point] = _seen.get(point, 0) + 1
    if (point, seen) == _armed:
        os.kill(os.getpid(), signal.SIGKILL)
    if _fill is not None and (point, seen) == _fill[0]:
        fill_disk(_fill[2], _fill[1])


def fill_disk(folder: str, leave: int) -> None:
    """Allocate `folder/ballast-fault` so that about `leave` bytes stay free."""
    stats = os.statvfs(folder)
    size = stats.f_bavail * stats.f_frsize - leave
    fd = os.open(Path(folder) / BALLAST, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if size > 0:
            os.posix_fallocate(fd, os.fstat(fd).st_size, size)
    finally:
        os.close(fd)
