"""Scratch folders of an apply, inside the state folder (so on the root's file system).

`work/` holds entries being built until they are renamed into the live tree; `trash/`
receives entries renamed out of it (deleted, or moved aside for a kind change). Both are
emptied when an apply starts and when it ends, succeeded or failed, so a crash's
leftovers never matter and the live tree never holds a half-built or hidden temporary
entry.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from syncd.state import StateDir

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Workspace:
    def __init__(self, state: StateDir) -> None:
        self.work = state.path / "work"
        self.trash = state.path / "trash"
        self.work_fd = -1
        self.trash_fd = -1
        self._names = 0

    def reset(self) -> None:
        self.close()
        for folder in (self.work, self.trash):
            purge(folder)
            folder.mkdir(mode=0o700, parents=True)
        self.work_fd = os.open(self.work, _DIR_FLAGS)
        self.trash_fd = os.open(self.trash, _DIR_FLAGS)

    def new_name(self) -> str:
        self._names += 1
        return f"e{self._names}"

    def close(self) -> None:
        for fd in (self.work_fd, self.trash_fd):
            if fd >= 0:
                os.close(fd)
        self.work_fd = self.trash_fd = -1

    def remove(self) -> None:
        self.close()
        purge(self.work)
        purge(self.trash)


def purge(path: Path) -> None:
    """Remove `path` and everything below it, whatever the modes inside."""
    if not os.path.lexists(path):
        return
    if path.is_symlink() or not path.is_dir():
        path.unlink()
        return
    path.chmod(0o700)

    def writable_parent(func: Callable[..., Any], failed: str, *_: object) -> None:
        # A directory built with its target mode (say 0o555) blocks removing its entries.
        Path(failed).parent.chmod(0o700)
        func(failed)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=writable_parent)
    else:
        shutil.rmtree(path, onerror=writable_parent)
