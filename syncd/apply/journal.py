"""The apply journal: `STATE/journal` names the target being applied.

It is written (temp file, fsync, rename, directory fsync) after every piece is staged
and before the first live change, and removed once the tree equals the target. Finding
it at startup means an apply was cut short: `resume_pending` finishes it.

When an apply or a resume fails (rather than being killed), the journal also records
how (`failures`, `failed`): resume.py gives up an apply that fails twice the same way,
so a target this side cannot reproduce, or a disk that stays full, never has every
later session replay it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from protocol.codec import pack, unpack
from protocol.errors import ProtocolError
from protocol.limits import DIGEST_SIZE
from syncd.apply.durable import fsync_dir, write_atomically
from syncd.apply.errors import ApplyError
from syncd.state import StateDir

FORMAT = 1
TARGET_FILE = "apply-target"  # the target snapshot, next to the journal


@dataclass(frozen=True, slots=True)
class Journal:
    target: bytes
    delete: bool
    failures: int = 0  # how many times the apply or a resume of it failed
    failed: str = ""  # how it failed the last time


def write_journal(state: StateDir, journal: Journal) -> None:
    meta: dict[str, object] = {"format": FORMAT, "target": journal.target}
    meta.update(snapshot=TARGET_FILE, delete=journal.delete)
    if journal.failures:
        meta.update(failures=journal.failures, failed=journal.failed)
    try:
        write_atomically(state.path / "journal", pack(meta))
    except OSError as exc:
        raise ApplyError(f"cannot write the apply journal in {state.path}: {exc.strerror}") from exc


def read_journal(state: StateDir) -> Journal | None:
    path = state.path / "journal"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        meta = unpack(raw)
    except ProtocolError as exc:
        raise ApplyError(f"{path}: corrupt apply journal: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ApplyError(f"{path}: apply journal of an unknown format")
    target, delete = meta.get("target"), meta.get("delete")
    if not isinstance(target, bytes) or len(target) != DIGEST_SIZE or not isinstance(delete, bool):
        raise ApplyError(f"{path}: corrupt apply journal")
    failures, failed = meta.get("failures", 0), meta.get("failed", "")
    if type(failures) is not int or failures < 0 or not isinstance(failed, str):
        raise ApplyError(f"{path}: corrupt apply journal")
    return Journal(target, delete, failures, failed)


def remove_journal(state: StateDir) -> None:
    path = state.path / "journal"
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        fsync_dir(state.path)


def note_failure(state: StateDir, target: bytes, error: Exception) -> None:
    """Record in the journal (if it is about `target`) that its apply failed, and how.
    Best effort: a disk too full to take the note leaves the journal as it was. (A stop
    by the operator, syncd.interrupt.Interrupted, is no Exception and never comes here:
    two Ctrl-Cs at the same step must not give the apply up.)"""
    with contextlib.suppress(ApplyError, OSError):
        journal = read_journal(state)
        if journal is None or journal.target != target:
            return
        failed = f"{type(error).__name__}: {error}"
        write_journal(state, Journal(target, journal.delete, journal.failures + 1, failed))
