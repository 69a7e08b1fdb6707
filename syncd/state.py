"""A root's state folder (`ROOT/.syncd` unless --state says otherwise).

Holds the latest snapshot and the stat cache; later also staging and the apply journal.
The folder at `ROOT/.syncd` is never part of a scan. One process at a time may change it:
`lock()` takes an exclusive flock and says who holds it when it cannot. Within a process
the lock is re-entrant, so a session can hold it throughout while the scans and the
apply it runs take it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from syncd.errors import SyncdError, UsageError

STATE_NAME = ".syncd"

# Locks this process holds: state folder -> [descriptor, depth].
_held: dict[str, list[int]] = {}


class StateLocked(SyncdError):
    """Another syncd process is using this state folder."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(
            f"{path} is in use by {holder} (another syncd push, import, receipt or scan of "
            "this root): run again once it has finished"
        )
        self.holder = holder


class StateDir:
    def __init__(self, root: Path, state: Path | None = None) -> None:
        self.root = root
        self.path = state if state is not None else root / STATE_NAME

    @property
    def snapshot(self) -> Path:
        return self.path / "snapshot"

    @property
    def statcache(self) -> Path:
        return self.path / "statcache"

    def excluded_relpath(self) -> str | None:
        """The state folder's path inside the root, if it lies inside the root."""
        try:
            rel = self.path.resolve().relative_to(self.root.resolve())
        except ValueError:
            return None
        return rel.as_posix() if rel.parts else None

    def ensure(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create state folder {self.path}: {exc.strerror}") from exc

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        self.ensure()
        key = os.path.realpath(self.path)
        if key in _held:
            _held[key][1] += 1
            try:
                yield
            finally:
                _held[key][1] -= 1
            return
        try:
            fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise UsageError(f"cannot lock state folder {self.path}: {exc.strerror}") from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                raise StateLocked(self.path, holder) from None
            with contextlib.suppress(OSError):  # who holds it is a courtesy; a full disk
                os.ftruncate(fd, 0)  # must not stop the lock (issue 14)
                os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
            _held[key] = [fd, 1]
            yield
        finally:
            _held.pop(key, None)
            os.close(fd)
