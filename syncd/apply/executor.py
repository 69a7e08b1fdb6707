"""Running an ordered plan against the live tree, one atomic step at a time.

Each entry is built complete in the workspace (builder.py), made durable, then renamed
into place. Building runs up to AHEAD entries ahead of the renames. Durability is
batched: a syncfs(2) of the file system (the workspace and the live tree share it)
makes everything built before it started durable at once, files and directories alike,
where an fsync of each would cost a journal commit per file (a registry is mostly small
link files: a cold push of 114k of them made 250k fsyncs). One is started on a thread
every SYNC_EVERY built entries, so building goes on meanwhile, and an entry is renamed
in only once a syncfs started after it was built has returned; the renames keep the
plan's order. syncfs also writes back other writers' dirty data on that file system;
for many small files that is still far cheaper than a commit per file.

At the end of each phase that changed the live tree another syncfs makes its changes
durable before the next phase starts, so no step of a later phase can outlive, in a
power loss, a step of an earlier one: a tag link is never durable before the data it
names.

Each live mutation (mkdir, rename in or out, unlink, chmod) is one step; the hook is
called before it, numbered from 1. Stopping anywhere leaves the tree as the last
completed step left it. A directory the far side's user may not write is opened for the
steps that change it and its mode put back at the end (writable.py).
"""

from __future__ import annotations

import os
import stat
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from protocol.tree import DirNode
from syncd import faults
from syncd.apply import durable
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
AHEAD = 1024  # entries built ahead of the renames
SYNC_EVERY = 512  # entries built between two syncfs started ahead of need


def _sync_built(fd: int) -> None:
    """What makes the built entries durable (a test replaces it to prove the model sees
    its absence)."""
    durable.syncfs(fd)


class _Barrier:
    """Built entries are numbered 1, 2, ... as built; entry n is durable once a syncfs
    started after n was built has returned. Syncs run one at a time, in order, on one
    thread."""

    def __init__(self, pool: ThreadPoolExecutor, fd: int) -> None:
        self._pool, self._fd = pool, fd
        self.built = 0
        self._started = 0  # entries covered by the syncs started so far
        self._syncs: deque[tuple[int, Future[None]]] = deque()

    def add(self) -> int:
        """Count one more built entry; its number."""
        self.built += 1
        if self.built - self._started >= SYNC_EVERY:
            self._start()
        return self.built

    def _start(self) -> None:
        self._syncs.append((self.built, self._pool.submit(_sync_built, self._fd)))
        self._started = self.built

    def wait(self, number: int) -> None:
        """Return once entry `number` is durable (raises what the syncfs raised)."""
        if self._started < number:
            self._start()
        while True:
            covered, future = self._syncs[0]
            future.result()
            if covered >= number:
                return
            self._syncs.popleft()

    def drain(self) -> None:
        """Let the syncs started end (stopping early: their errors do not matter)."""
        for _, future in self._syncs:
            future.exception()


class _Built:
    """An entry built in the workspace (`number` in the barrier's count; 0: nothing was
    built)."""

    def __init__(self, index: int, op: Op, temp: str | None, number: int):
        self.index, self.op, self.temp, self.number = index, op, temp, number


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
        self._changed = False  # the live tree changed since the last syncfs
        self._opener = Opener(self._step)

    def run(self, ops: list[Op]) -> None:
        ahead: deque[_Built] = deque()
        with ThreadPoolExecutor(1, "syncd-syncfs") as pool:
            barrier = _Barrier(pool, self._work.work_fd)
            try:
                for i, op in enumerate(ops):
                    temp = self._prepare(op)
                    number = barrier.add() if isinstance(op, WriteFile | PlaceTree) else 0
                    ahead.append(_Built(i, op, temp, number))
                    while len(ahead) > AHEAD:
                        self._finish(ahead.popleft(), ops, barrier)
                while ahead:
                    self._finish(ahead.popleft(), ops, barrier)
                self._close_opened(ops)
            finally:
                barrier.drain()

    def _finish(self, built: _Built, ops: list[Op], barrier: _Barrier) -> None:
        """Rename one built entry in, once it is durable."""
        if built.number:
            try:
                barrier.wait(built.number)
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
                # Owner-writable until Phase.MODES: a directory moved into another one must
                # be writable for a far side that is not root (its `..` changes).
                mode = op.mode | stat.S_IRWXU
                self._builder.tree(op.tree, mode, fd, name)
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
        """Make the phase's changes to the live tree durable, all at once."""
        if not self._changed:
            return
        try:
            durable.syncfs(self._work.work_fd)
        except OSError as exc:
            raise os_error(str(self._live.root), exc, "syncing the changes") from exc
        self._changed = False

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
        self._changed = True
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
            self._changed = True  # made durable with the rest of the phase
            os.fchmod(fd, op.mode)
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
