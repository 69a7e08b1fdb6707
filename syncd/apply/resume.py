"""Finishing an interrupted apply at the start of a session, without ever letting it
block the session.

Every session that may change the root (serve, import, receipt) first resumes an apply
a crash or a failure cut short (the journal). A resume that fails does not end the
session: the failure is noted in the journal and the session goes on (a push or import
of its own target supersedes the interrupted apply). A resume that fails the same way
as the apply or the resume before it, or for the MAX_FAILURES-th time, is given up: the
journal and the workspace go, the live tree stays as its last completed step left it
(every step keeps it consistent: each listed tag resolves), and the staged data stays
for whichever session next needs it. So a target this side cannot reproduce, a disk
that stays full or a corrupt journal costs each later session at most one attempt,
never its turn.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

from syncd.apply.engine import ApplyResult, resume_pending
from syncd.apply.journal import TARGET_FILE, Journal, read_journal, remove_journal
from syncd.apply.staging import Staging
from syncd.apply.workspace import Workspace
from syncd.errors import SyncdError
from syncd.state import StateDir

log = logging.getLogger("syncd.apply")

MAX_FAILURES = 4  # failed attempts (the apply and its resumes) before one is given up


@dataclass(frozen=True, slots=True)
class Resumed:
    """What the resume at the start of a session did."""

    result: ApplyResult | None = None  # the interrupted apply, finished
    problem: str = ""  # why the resume failed (the session goes on)
    abandoned: bool = False  # the interrupted apply was given up

    def describe(self) -> str:
        if self.result is not None:
            return f"finished an interrupted apply of {self.result.root.hex()[:16]}"
        return self.problem


def resume_or_abandon(root: Path, state: StateDir, *, staging: Staging | None = None) -> Resumed:
    """Resume the journal's apply; on failure note it, or give it up (see above)."""
    try:
        before = read_journal(state)
    except SyncdError as exc:
        return _abandon(state, f"an interrupted apply whose journal is unreadable ({exc})")
    if before is None:
        return Resumed()
    try:
        return Resumed(result=resume_pending(root, state, staging=staging))
    except SyncdError as exc:
        failed = f"{type(exc).__name__}: {exc}"
        after = _journal_or_none(state)
        count = after.failures if after is not None else before.failures + 1
        what = f"the interrupted apply of {before.target.hex()[:16]}"
        if failed == before.failed or count >= MAX_FAILURES:
            why = "the same way twice" if failed == before.failed else f"{count} times"
            return _abandon(state, f"{what}: it failed {why} ({exc})")
        problem = (
            f"{what} failed again ({exc}); noted: the next session retries it once more, "
            "this one goes on"
        )
        log.warning("%s", problem)
        return Resumed(problem=problem)


def _journal_or_none(state: StateDir) -> Journal | None:
    try:
        return read_journal(state)
    except SyncdError:
        return None


def _abandon(state: StateDir, why: str) -> Resumed:
    """Give the interrupted apply up: its journal and scratch folders go, staging stays.
    (Should removing them fail, the next session simply tries again.)"""
    with contextlib.suppress(OSError):
        remove_journal(state)
        (state.path / TARGET_FILE).unlink(missing_ok=True)
        Workspace(state).remove()
    problem = (
        f"gave up {why}: the live tree is as its last completed step left it, which keeps "
        "every listed tag resolvable; its staged data is kept for the next push or import"
    )
    log.warning("%s", problem)
    return Resumed(problem=problem, abandoned=True)
