"""Problems met while scanning: named by path, reported as they happen, never tracebacks."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Level(StrEnum):
    # The entry is not in the snapshot (unreadable, special file, changing, bad name).
    ERROR = "error"
    # The entry is in the snapshot, but something about it deserves attention.
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    level: Level
    message: str

    def __str__(self) -> str:
        return f"{self.level.value}: {self.path or '.'}: {self.message}"

    def as_json(self) -> dict[str, str]:
        return {"path": self.path, "level": self.level.value, "message": self.message}


Reporter = Callable[[Problem], None]


def printable(name: str) -> str:
    """A name as the user can type it: invalid UTF-8 bytes shown as \\xNN escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def describe_oserror(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
