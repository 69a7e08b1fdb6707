"""Running an ordered plan against the live tree, one atomic step at a time.

Each entry is built complete in the workspace (builder.py), made durable, then renamed
into place. Building runs up to AHEAD entries ahead of the renames, and their fsyncs run
on a few threads meanwhile: fsyncs issued together are committed together, where one
after another each costs a journal commit. An entry is renamed in only after all of its
own files and directories are durable, and the renames keep the plan's order. A tree
too large to keep all of its descriptors open (a cold push places the whole root as one
tree) has its fsyncs started in batches while it is still being built.

Every directory a step changed is fsynced at the end of its phase, before the next
phase starts, so no step of a later phase can outlive, in a power loss, a step of an
earlier one: a tag link is never durable before the data it names. (Only our own files
and directories are synced: syncfs(2) would be cheaper for many small files, but it
waits for every other writer's dirty data on the file system too.)

Each live mutation (mkdir, rename in or out, unlink, chmod) is one step; the hook is
called before it, numbered from 1. Stopping anywhere leaves the tree as the last
completed step left it. A directory the far side's user may not write is opened for the
steps that change it and its mode put back at the end (writable.py).
"""

from __future__ import annotations

import os
import resource
import stat
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from protocol.tree import DirNode
from syncd import faults
from syncd.apply.builder import Builder
from syncd.apply.livetree import LiveTree, os_error
from syncd.apply.workspace import Workspace
from syncd.apply.writable import Opener
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
AHEAD = 64  # entries built ahead of the renames
AHEAD_FDS = 4096  # open descriptors waiting for their fsync, at most (roughly)
SYNC_THREADS = 4


def fd_budget() -> int:
    """Descriptors waiting for their fsync, at most: AHEAD_FDS, or a quarter of the
    process's limit when that is lower. The entries built ahead and one large tree's
    batches may each hold this many; the staging, the scan and the connection need some
    of their own."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return AHEAD_FDS
    return max(16, min(AHEAD_FDS, soft // 4))


def _sync_and_close(fds: list[int]) -> None:
    try:
        for fd in fds:
            os.fsync(fd)
    finally:
        for fd in fds:
            os.close(fd)


class _Early:
    """The fsyncs of a large tree's parts, started while the rest of it is still being
    built (the builder's `spill`). Once more than `budget` descriptors are in flight it
    waits for the oldest batches: building outruns fsyncs, and every queued batch keeps
    its descriptors open."""

    def __init__(self, pool: ThreadPoolExecutor, budget: int) -> None:
        self._pool, self._budget = pool, budget
        self._running: deque[tuple[Future[None], int]] = deque()
        self.fds = 0  # descriptors in the batches still listed

    def __call__(self, fds: list[int]) -> None:
        self._running.append((self._pool.submit(_sync_and_close, fds), len(fds)))
        self.fds += len(fds)
        while self.fds > self._budget:
            future, count = self._running.popleft()
            future.result()
            self.fds -= count

    def futures(self) -> list[Future[None]]:
        return [future for future, _ in self._running]


class _Built:
    """An entry built in the workspace, its fsyncs running."""

    def __init__(self, index: int, op: Op, temp: str | None, synced: list[Future[None]], fds: int):
        self.index, self.op, self.temp, self.synced, self.fds = index, op, temp, synced, fds


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
        self._opener = Opener(self._step)

    def run(self, ops: list[Op]) -> None:
        ahead: deque[_Built] = deque()
        open_fds = 0
        budget = fd_budget()
        with ThreadPoolExecutor(SYNC_THREADS, "syncd-fsync") as pool:
            try:
                for i, op in enumerate(ops):
                    early = _Early(pool, budget)
                    temp = self._prepare(op, early, max(1, budget // 8))
                    fds = self._builder.take_pending()
                    synced = early.futures()
                    if fds:
                        synced.append(pool.submit(_sync_and_close, fds))
                    ahead.append(_Built(i, op, temp, synced, early.fds + len(fds)))
                    open_fds += early.fds + len(fds)
                    while len(ahead) > AHEAD or open_fds > budget:
                        open_fds -= self._finish(ahead.popleft(), ops)
                while ahead:
                    open_fds -= self._finish(ahead.popleft(), ops)
                self._close_opened(ops)
            finally:
                for built in ahead:  # stopped early: let the pending fsyncs end
                    for future in built.synced:
                        future.exception()

    def _finish(self, built: _Built, ops: list[Op]) -> int:
        """Rename one built entry in, once its own fsyncs are done; returns its fds."""
        if built.synced:
            try:
                for future in built.synced:
                    future.result()
            except OSError as exc:
                raise os_error(
                    f"{self._live.describe(built.op.path)} (built in {self._work.work})",
                    exc,
                    "making it durable",
                ) from exc
        op = built.op
        try:
            self._apply(op, built.temp)
        except OSError as exc:
            raise self._live.error(op.path, exc, _doing(op)) from exc
        if built.index + 1 == len(ops) or ops[built.index + 1].phase != op.phase:
            self._sync_changed()
        return built.fds

    # -- building ---------------------------------------------------------------------

    def _prepare(self, op: Op, spill: _Early, spill_at: int) -> str | None:
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
                # Owner-writable until Phase.MODES: a directory moved into another one must
                # be writable for a far side that is not root (its `..` changes).
                mode = op.mode | stat.S_IRWXU
                self._builder.tree(op.tree, mode, fd, name, spill=spill, spill_at=spill_at)
        except OSError as exc:
            raise os_error(
                f"{self._live.describe(op.path)} (built in {self._work.work})", exc, "building"
            ) from exc
        return name

    def _close_opened(self, ops: list[Op]) -> None:
        planned = {op.path for op in ops if isinstance(op, SetMode)}
        try:
            self._opener.restore(self._live, planned)
        except OSError as exc:
            raise os_error(str(self._live.root), exc, "setting directory modes back") from exc

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
        faults.reached("step")
        if self._hook is not None:
            self._hook(self.steps, what)

    def _apply(self, op: Op, temp: str | None) -> None:
        if isinstance(op, SetMode):
            self._set_mode(op)
            return
        # The hook runs before the parent is opened, so that a test can change the tree
        # right before a step as a concurrent writer would.
        self._step(f"{_doing(op)} {op.path}")
        head = op.path.rpartition("/")[0]
        self._changed.add(head)
        with self._live.parent(op.path) as (parent, name):
            self._opener.parent(parent, head)
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
        fd = self._live.open_entry(op.path, directory=True)
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) == op.mode:
                return  # already right: nothing to change
            self._step(f"{_doing(op)} {op.path}")
            os.fchmod(fd, op.mode)
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
        self._opener.moved_out(parent, name)
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
