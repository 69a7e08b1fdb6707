"""Time windows: the hours of the local day in which a site may be sent to.

A window is `HH:MM-HH:MM` in local time; one whose end is not after its start runs past
midnight (`22:00-06:00`), and `00:00-24:00` is the whole day. A site with no windows is
always open. Times are naive local datetimes (what the clock on the wall says), so a
window means the same hours in summer and winter; the scheduler asks again at every
boundary, so a daylight-saving jump costs at most one late or early start.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

_DAY = 24 * 60
_FORM = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


class WindowError(ValueError):
    """A window that cannot be parsed; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class Window:
    start: int  # minutes after midnight, 0..1439
    end: int  # minutes after midnight, 1..1440; <= start means it ends the next day

    def __str__(self) -> str:
        return f"{_hhmm(self.start)}-{_hhmm(self.end)}"

    def contains(self, minute: float) -> bool:
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


def parse_window(text: str) -> Window:
    match = _FORM.match(text.strip())
    if not match:
        raise WindowError(f"{text!r} is not a time window: write HH:MM-HH:MM, e.g. 22:00-06:00")
    h1, m1, h2, m2 = (int(group) for group in match.groups())
    if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
        raise WindowError(f"{text!r}: hours run 00..23 (24:00 only as an end), minutes 00..59")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end % _DAY and end != _DAY:
        raise WindowError(f"{text!r} is empty: for the whole day write 00:00-24:00")
    return Window(start, end)


def is_open(windows: Sequence[Window], now: datetime) -> bool:
    return not windows or any(w.contains(_minute(now)) for w in windows)


def next_change(windows: Sequence[Window], now: datetime) -> datetime | None:
    """When `is_open` next changes its answer (None: never, e.g. no windows)."""
    if not windows:
        return None
    state = is_open(windows, now)
    base = now.replace(second=0, microsecond=0)
    # Boundaries are whole minutes: step through the next two days' boundaries in order.
    edges = sorted({w.start for w in windows} | {w.end % _DAY for w in windows})
    for day in range(3):
        for edge in edges:
            moment = base.replace(hour=0, minute=0) + timedelta(days=day, minutes=edge)
            if moment > now and is_open(windows, moment) != state:
                return moment
    return None  # the windows cover the whole day


def _minute(now: datetime) -> float:
    return now.hour * 60 + now.minute + now.second / 60 + now.microsecond / 60e6


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
