"""The target snapshot written ahead: while a push's blobs are still arriving.

Every tree record of an offer has arrived (the descent is done) before its first blob
is asked for, and writing the target snapshot (target.py) needs only those records. A
month-2 push spent ~0.35 s of its far side's time after the last byte on that pass (and
a cold push of a million files some seconds), while the CPU waited on the link. So the
far side writes it during the transfer, on a worker thread, to a file of its own
(`apply-target.next`); the apply then takes it over by a rename.

Nothing about the apply changes: the file is the one `write_target` writes, from the
same records (staged tree records are verified as read, SPEC.md 3.2), with the same
canon and aliases, and it is only taken over by an apply of that very target under that
very canon (`adopt`). Before that it is no part of any apply's state: a crash leaves a
stray file, which the next session removes (`discard`); the journal, written after the
takeover, still names `apply-target`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

from syncd.apply.aliases import Aliases
from syncd.apply.canon import Canon
from syncd.apply.durable import fsync_dir
from syncd.apply.journal import TARGET_FILE
from syncd.apply.target import Records, Written, write_target
from syncd.state import StateDir

NEXT_FILE = TARGET_FILE + ".next"


class Stopped(Exception):
    """Raised inside a pass asked to stop (`stoppable`): its session is ending."""


@dataclass(frozen=True, slots=True)
class TargetAhead:
    """A target snapshot written to NEXT_FILE, and how it was written."""

    canon: Canon
    written: Written


def stop_check(stop: threading.Event) -> Callable[[], None]:
    """A check that raises Stopped once `stop` is set, for a pass to call at each step:
    a pass over a million records then ends at its next step, not its last, and does
    not hold its session open."""

    def check() -> None:
        if stop.is_set():
            raise Stopped

    return check


def stoppable(records: Records, stop: threading.Event) -> Records:
    """`records`, checking `stop` (stop_check) before each record."""
    check = stop_check(stop)

    def read(tree: bytes) -> bytes | None:
        check()
        return records(tree)

    return read


def write_ahead(
    state: StateDir, target: bytes, records: Records, canon: Canon, aliases: Aliases
) -> TargetAhead:
    """write_target's pass, into NEXT_FILE."""
    written = write_target(state.path / NEXT_FILE, target, records, canon, aliases)
    return TargetAhead(canon, written)


def adopt(
    state: StateDir, ahead: TargetAhead | None, target: bytes, canon: Canon
) -> Written | None:
    """Make `ahead` the apply's target snapshot (TARGET_FILE) if it is `target` written
    under `canon`; None (and NEXT_FILE gone) if not, or if it cannot be taken over: the
    apply then writes its own."""
    if ahead is None or ahead.written.offered != target or ahead.canon != canon:
        discard(state)
        return None
    try:
        (state.path / NEXT_FILE).replace(state.path / TARGET_FILE)
        fsync_dir(state.path)
    except OSError:
        discard(state)
        return None
    return ahead.written


def discard(state: StateDir) -> None:
    """Remove a target written ahead that no apply took over."""
    # Should this fail, the next session tries again: the file is no part of any apply.
    # `.tmp`: the one write_target was writing when a crash cut it short.
    for name in (NEXT_FILE, NEXT_FILE + ".tmp"):
        with contextlib.suppress(OSError):
            (state.path / name).unlink(missing_ok=True)
