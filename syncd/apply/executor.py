"""Running an ordered plan against the live tree, one atomic step at a time.

Each entry is built complete and fsynced in the workspace (builder.py), then renamed into
place. Every directory a step changed is fsynced at the end of its phase, before the next
phase starts, so no step of a later phase can outlive, in a power loss, a step of an
earlier one: a tag link is never durable before the data it names. (Only our own files
and directories are synced: syncfs(2) would be cheaper for many small files, but it
waits for every other writer's dirty data on the file system too.)

Each live mutation (mkdir, rename in or out, unlink, chmod) is one step; the hook is
called before it, numbered from 1. Stopping anywhere leaves the tree as the last
completed step left it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from protocol.tree import DirNode
from syncd.apply.builder import Builder
from syncd.apply.livetree import LiveTree, os_error
from syncd.apply.workspace import Workspace
from syncd.plan.order import (
    Delete,
    MakeDir,
    MakeSymlink,
    MoveAside,
    Op,
    PlaceTree,
    SetMode,
    WriteFile,
)

StepHook = Callable[[int, str], None]


class Executor:
    def __init__(
        self, live: LiveTree, workspace: Workspace, builder: Builder, hook: StepHook | None
    ) -> None:
        self._live = live
        self._work = workspace
        self._builder = builder
        self._hook = hook
        self.steps = 0
        self.deleted = 0  # entries removed (a directory counts once)
        self._changed: set[str] = set()  # directories changed since their last fsync

    def run(self, ops: list[Op]) -> None:
        for i, op in enumerate(ops):
            temp = self._prepare(op)
            try:
                self._apply(op, temp)
            except OSError as exc:
                raise self._live.error(op.path, exc, _doing(op)) from exc
            if i + 1 == len(ops) or ops[i + 1].phase != op.phase:
                self._sync_changed()

    # -- building ---------------------------------------------------------------------

    def _prepare(self, op: Op) -> str | None:
        if not isinstance(op, WriteFile | MakeSymlink | PlaceTree):
            return None
        name = self._work.new_name()
        fd = self._work.work_fd
        try:
            if isinstance(op, WriteFile):
                self._builder.file(op.node, fd, name)
            elif isinstance(op, MakeSymlink):
                self._builder.symlink(op.target, fd, name)
            else:
                self._builder.tree(op.tree, op.mode, fd, name)
        except OSError as exc:
            raise os_error(
                f"{self._live.describe(op.path)} (built in {self._work.work})", exc, "building"
            ) from exc
        return name

    def _sync_changed(self) -> None:
        for path in sorted(self._changed):
            try:
                self._live.sync_dir(path)
            except OSError as exc:
                raise self._live.error(path, exc, "syncing the directory") from exc
        self._changed.clear()

    # -- changing the live tree -----------------------------------------------------------

    def _step(self, what: str) -> None:
        self.steps += 1
        if self._hook is not None:
            self._hook(self.steps, what)

    def _apply(self, op: Op, temp: str | None) -> None:
        if isinstance(op, SetMode):
            self._set_mode(op)
            return
        # The hook runs before the parent is opened, so that a test can change the tree
        # right before a step as a concurrent writer would.
        self._step(f"{_doing(op)} {op.path}")
        self._changed.add(op.path.rpartition("/")[0])
        with self._live.parent(op.path) as (parent, name):
            if temp is not None:
                os.rename(temp, name, src_dir_fd=self._work.work_fd, dst_dir_fd=parent)
            elif isinstance(op, MakeDir):
                # Writable for us whatever its mode; Phase.MODES sets the exact mode
                # (a no-op, and no step, when this already is it).
                os.mkdir(name, (op.mode & 0o777) | 0o700, dir_fd=parent)
            elif isinstance(op, MoveAside):
                self._take_out(parent, name)
            else:
                assert isinstance(op, Delete)
                self._delete(op, parent, name)

    def _set_mode(self, op: SetMode) -> None:
        fd = self._live.open_entry(op.path, directory=op.mtime_ns is None)
        try:
            st = os.fstat(fd)
            if stat.S_IMODE(st.st_mode) == op.mode and op.mtime_ns in (None, st.st_mtime_ns):
                return  # already right: nothing to change
            self._step(f"{_doing(op)} {op.path}")
            os.fchmod(fd, op.mode)
            if op.mtime_ns is not None:
                os.utime(fd, ns=(op.mtime_ns, op.mtime_ns))
            os.fsync(fd)
        finally:
            os.close(fd)

    def _delete(self, op: Delete, parent: int, name: str) -> None:
        try:
            if isinstance(op.node, DirNode):
                self._take_out(parent, name)
            else:
                os.unlink(name, dir_fd=parent)
        except FileNotFoundError:
            return  # already gone
        self.deleted += 1

    def _take_out(self, parent: int, name: str) -> None:
        """One rename out of the tree: the entry and all below it vanish at once."""
        os.rename(name, self._work.new_name(), src_dir_fd=parent, dst_dir_fd=self._work.trash_fd)


def _doing(op: Op) -> str:
    if isinstance(op, MakeDir):
        return "creating directory"
    if isinstance(op, SetMode):
        return "setting mode of"
    if isinstance(op, MoveAside):
        return "moving aside"
    if isinstance(op, Delete):
        return "deleting"
    return "renaming into place"
