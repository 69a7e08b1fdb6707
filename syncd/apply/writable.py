"""Directories the far side's own user cannot write, opened while an apply fills them.

A far side running as its own user (the shipped `syncd` user) is stopped by a directory
mode like any process: an entry cannot be added to or removed from a 0555 directory,
and a directory whose mode lacks owner write cannot be moved to another parent (its
`..` changes). An apply that gives a 0555 directory a new file used to fail at that
step, and every later session resumed it and failed again. So, before a step changes a
directory the user owns but may not write, the apply adds owner rwx to it, and puts the
mode back once every step is done (a directory the plan gives a mode in its last phase
gets that one instead). A crash in between leaves only a mode the next apply plans to
set again. Root is never stopped by modes, and a directory of another owner cannot be
changed: both are left alone.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from syncd.apply.errors import ApplyError
from syncd.apply.livetree import LiveTree

_OWNER_RWX = stat.S_IRWXU
_NEEDED = stat.S_IWUSR | stat.S_IXUSR
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
Step = Callable[[str], None]  # told before each change of a live directory's mode


class Opener:
    def __init__(self, step: Step) -> None:
        self._step = step
        self._euid = os.geteuid()
        self.opened: dict[str, int] = {}  # path -> the mode it had

    def parent(self, fd: int, path: str) -> None:
        """Make the directory `fd` (at `path`) writable for a step that changes it."""
        if self._euid == 0 or path in self.opened:
            return  # root is not stopped by modes: no stat per step
        mode = self._closed(os.fstat(fd))
        if mode is not None:
            self._step(f"opening directory {path or '.'}")
            os.fchmod(fd, mode | _OWNER_RWX)
            self.opened[path] = mode

    def moved_out(self, parent: int, name: str) -> None:
        """Make the entry `name` writable if it is a directory about to leave `parent`
        for another directory (it is leaving the tree: no mode to put back)."""
        if self._euid == 0:
            return
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode) or (mode := self._closed(st)) is None:
            return
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        try:
            os.fchmod(fd, mode | _OWNER_RWX)
        finally:
            os.close(fd)

    def _closed(self, st: os.stat_result) -> int | None:
        """The mode of a directory this user must open before changing it, else None."""
        mode = stat.S_IMODE(st.st_mode)
        if self._euid == 0 or st.st_uid != self._euid or mode & _NEEDED == _NEEDED:
            return None
        return mode

    def restore(self, live: LiveTree, planned: set[str]) -> None:
        """Put back the mode of every directory opened, deepest first, but those the
        plan sets itself."""
        for path in sorted(self.opened, key=lambda p: -p.count("/") - bool(p)):
            if path in planned:
                continue
            try:
                fd = live.open_dir(path)
            except ApplyError:
                continue  # gone since (moved out by a later step)
            try:
                self._step(f"setting mode of {path or '.'}")
                os.fchmod(fd, self.opened[path])
                os.fsync(fd)
            finally:
                os.close(fd)
        self.opened.clear()
