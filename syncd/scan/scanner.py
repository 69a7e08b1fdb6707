"""Scan a tree into a snapshot: walk, reuse or compute recipes, build the Merkle tree.

The walk is depth-first with children in name order and never follows a symlink: it
dispatches on lstat, opens directories and files with O_NOFOLLOW and checks that what
it opened is the inode it stat'ed. A directory unchanged since the last scan is not
listed again (statcache.py says why that is safe); files whose stat matches the cache
keep their recipe, the others are hashed in a thread pool while the walk goes on.

Each directory becomes a `_Tree` queued in post-order; a tree is encoded, hashed and
written once every file in it is hashed, so memory holds the open path and the files
in flight, not the whole tree.

A rescan first checks, writing nothing, whether anything below the root changed
(`unchanged_summary`). Most rescans of a daemon, and both sides of a push with nothing
new, end there: the state files already say all of it, and rewriting them (~780 MB per
side at 1M files, nearly all copied from the old files) was most of what such a scan
wrote and a large part of its time. Only when something changed are the writers opened
and the walk run, reusing what the check found settled.
"""

from __future__ import annotations

import os
import stat
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from protocol.paths import join
from protocol.tree import (
    DirNode,
    FileNode,
    LinkNode,
    Node,
    Recipe,
    encode_tree,
)
from syncd.errors import ScanAborted
from syncd.scan.hashing import SETTLE_NS, FileChanged, RangeJob, StatKey, run_job
from syncd.scan.jobs import HashQueue, Part
from syncd.scan.problems import Level, Problem, Reporter, describe_oserror, printable
from syncd.scan.statcache import (
    CachedDir,
    DirRow,
    FileRow,
    LinkRow,
    Row,
    StatCache,
    StatCacheWriter,
    dir_key,
    dir_row,
    file_row,
    link_row,
    same_dir,
)
from syncd.scan.tarlayout import cuts_for
from syncd.snapshot import SnapshotWriter, Summary
from syncd.state import STATE_NAME

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_ELOOP = 40
MAX_PENDING_FILES = 20_000
RETRIES = 3

# Deeper than this, unchanged subtrees are walked like changed ones (no recursion).
MAX_SETTLED_DEPTH = 200

# (name, lstat, the stat cache row when the listing came from a trusted cache)
Listing = list[tuple[str, os.stat_result, Row | None]]
# An unchanged subtree: (tree id, (files, dirs, symlinks, bytes) below it, its warnings,
# the directory's (ino, mtime_ns, ctime_ns) when it was checked)
_Settled = tuple[bytes, tuple[int, int, int, int], list[tuple[str, str]], tuple[int, int, int]]


class KnownFiles(Protocol):
    def recipe(self, st: os.stat_result) -> Recipe | None:
        """The recipe of the file with exactly this lstat, if the caller knows it."""


@dataclass(frozen=True, slots=True)
class ScanOptions:
    strict: bool = False
    workers: int = max(2, (os.cpu_count() or 2))
    exclude: frozenset[str] = frozenset()  # relative paths left out, besides ./.syncd
    # Files whose bytes the caller knows (the apply just wrote them from verified pieces),
    # by their stat after writing. Trusted like a stat cache entry, and only once its
    # ctime is settled, so a later write is still seen.
    known: KnownFiles | None = None


@dataclass(slots=True)
class Counters:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0
    errors: int = 0


@dataclass(slots=True)
class _Hashing:
    """A file whose pieces are being hashed."""

    name: str
    path: str
    st: os.stat_result
    lengths: list[int]
    parts: list[Part]
    warning: str | None


@dataclass(slots=True)
class _Known:
    """A child whose node is known now; `row` is its stat cache row."""

    node: Node
    row: Row


@dataclass(slots=True)
class _Same:
    """A file or symlink exactly as the last scan saw it: its row is all there is to it."""

    row: FileRow | LinkRow
    st: os.stat_result

    def known(self) -> _Known:
        row = self.row
        if isinstance(row, FileRow):
            mode = stat.S_IMODE(self.st.st_mode)
            return _Known(FileNode(row.name, mode, row.size, row.mtime_ns, row.pieces()), row)
        return _Known(LinkNode(row.name, row.target), row)


@dataclass(slots=True)
class _Tree:
    rel: str
    key: bytes  # stat cache key of `rel`
    st: os.stat_result
    trusted: bool
    cached: CachedDir | None = None
    # Listed from a trusted cache and nothing changed so far: the old records serve.
    clean: bool = False
    children: list[_Known | _Hashing | _SubDir | _Same] = field(default_factory=list)
    id: bytes | None = None
    _checked: int = 0  # children before this index are known to be ready

    def ready(self) -> bool:
        while self._checked < len(self.children):
            child = self.children[self._checked]
            if isinstance(child, _Hashing) and not all(p.done() for p in child.parts):
                return False
            self._checked += 1
        return True


@dataclass(slots=True)
class _SubDir:
    name: str
    mode: int
    tree: _Tree


@dataclass(slots=True)
class _Frame:
    rel: str
    path: str
    todo: Listing  # remaining children, last in name order first
    cached: CachedDir | None
    tree: _Tree


@dataclass(frozen=True, slots=True)
class Writers:
    """Where a scan's records go: the snapshot and the next stat cache."""

    snapshot: SnapshotWriter
    statcache: StatCacheWriter


class Scanner:
    def __init__(
        self,
        root: Path,
        cache: StatCache,
        *,
        options: ScanOptions,
        report: Reporter,
    ) -> None:
        self._root = os.path.abspath(root)
        self._cache = cache
        self._out: Writers | None = None  # None: checking only, nothing is written
        self._options = options
        self._report = report
        self.counters = Counters()
        self._stack: list[_Frame] = []
        self._queue: deque[_Tree] = deque()
        self._pending = 0
        self._hashes: HashQueue | None = None
        # Unchanged subtrees met while checking a subtree that turned out changed.
        self._settled: dict[str, _Settled] = {}
        self._changed: set[str] = set()  # directories a check found changed: walked
        # Entries of _settled found by unchanged_summary, whose records are not written yet.
        self._unwritten: set[str] = set()
        self.unchanged = False  # after run(): nothing differs from the last scan

    @property
    def hashed_bytes(self) -> int:
        return self._hashes.hashed_bytes if self._hashes else 0

    def unchanged_summary(self, kept: Callable[[Summary], bool]) -> Summary | None:
        """The summary, if nothing below the root changed since the last scan and
        `kept(summary)`: the state files already describe it.

        Writes nothing. When something changed, the subtrees found settled before it
        are kept for `run`, which then neither stats nor lists them again.
        """
        st = os.stat(self._root)
        done = self._check_settled("", self._root, st, 0)
        if done is None:
            return None
        tree_id, counts, warnings, _ = done
        summary = Summary(tree_id, *counts, complete=True)
        if not kept(summary):
            return None  # run() walks it all again, and says its warnings then
        for where, warning in warnings:
            self._problem(where, Level.WARNING, warning)
        self.unchanged = True
        self.counters = Counters(*counts)
        return summary

    def run(self, out: Writers) -> Summary:
        """Scan, writing every record of the new snapshot and stat cache to `out`."""
        self._out = out
        self._unwritten = set(self._settled)  # found by unchanged_summary: copied when used
        with ThreadPoolExecutor(self._options.workers, "syncd-hash") as pool:
            self._hashes = HashQueue(pool)
            try:
                root_tree = self._walk()
                self._drain(block=True)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        assert root_tree.id is not None
        self.unchanged = root_tree.clean
        c = self.counters
        return Summary(root_tree.id, c.files, c.dirs, c.symlinks, c.bytes, c.errors == 0)

    # -- walking --------------------------------------------------------------------

    def _walk(self) -> _Tree:
        root_tree = self._push("", self._root, os.stat(self._root))
        while self._stack:
            frame = self._stack[-1]
            if frame.todo:
                self._visit(frame, *frame.todo.pop())
            else:
                self._stack.pop()
                self._queue.append(frame.tree)
                self._drain(block=False)
        return root_tree

    def _push(self, rel: str, path: str, st: os.stat_result) -> _Tree:
        key = dir_key(rel)
        cached = self._cache.lookup(key, rel)
        tree = _Tree(rel, key, st, st.st_ctime_ns + SETTLE_NS < time.time_ns(), cached)
        listing = None
        if cached is not None and cached.trusted and same_dir(st, cached):
            listing = self._stat_rows(path, cached.row_list)
            tree.clean = listing is not None
        if listing is None:
            listing = self._list(tree, path)
        listing.reverse()
        self._stack.append(_Frame(rel, path, listing, cached, tree))
        return tree

    def _settled_tree(self, rel: str, path: str, st: os.stat_result) -> _Tree | None:
        """A finished, clean tree if nothing below `rel` changed since the last scan.

        Most directories of a rescan are like that; checking them here, with no frames,
        listings or per-child objects, is what keeps a no-change rescan near `find`.
        A subtree that turns out changed is walked again by _push, which then finds its
        unchanged subdirectories in self._settled, and the changed ones in self._changed,
        instead of checking them again: a check of the changed child would otherwise
        check (and write) each unchanged subtree beside the change once more per level
        above it (a change ten levels down wrote the state files five times over).
        """
        done = self._take_settled(rel, st)
        if done is None and rel not in self._changed and len(self._stack) < MAX_SETTLED_DEPTH:
            done = self._check_settled(rel, path, st, len(self._stack))
        if done is None:
            return None
        tree_id, counts, warnings, _ = done
        c = self.counters
        c.files, c.dirs = c.files + counts[0], c.dirs + counts[1]
        c.symlinks, c.bytes = c.symlinks + counts[2], c.bytes + counts[3]
        for where, warning in warnings:
            self._problem(where, Level.WARNING, warning)
        return _Tree(rel, b"", st, True, clean=True, id=tree_id)

    def _check_settled(
        self, rel: str, path: str, st: os.stat_result, depth: int
    ) -> _Settled | None:
        """The _Settled of an unchanged subtree (its records written if the scan writes);
        None, and the directory remembered as changed, otherwise."""
        done = self._check_dir(rel, path, st, depth)
        if done is None:
            self._changed.add(rel)
        return done

    def _check_dir(self, rel: str, path: str, st: os.stat_result, depth: int) -> _Settled | None:
        key = dir_key(rel)
        cached = self._cache.lookup(key, rel)
        if cached is None or not cached.trusted or not same_dir(st, cached):
            return None
        files = dirs = links = size = 0
        warnings: list[tuple[str, str]] = []
        settled: list[tuple[str, _Settled]] = []
        for row in cached.row_list:
            child = f"{path}/{row.name}"
            try:
                child_st = os.lstat(child)
            except OSError:  # _push meets it again and says why
                self._settled.update(settled)
                return None
            if isinstance(row, DirRow):
                child_rel = join(rel, row.name)
                below = None
                if stat.S_ISDIR(child_st.st_mode) and depth < MAX_SETTLED_DEPTH:
                    below = self._take_settled(child_rel, child_st)  # an earlier check's
                    if below is None:
                        below = self._check_settled(child_rel, child, child_st, depth + 1)
                if below is None:
                    self._settled.update(settled)  # for _push's walk of this subtree
                    return None
                settled.append((child_rel, below))
                counts = below[1]
                files, dirs = files + counts[0], dirs + counts[1] + 1
                links, size = links + counts[2], size + counts[3]
                warnings += below[2]  # in walk order, as a walk would report them
                continue
            if not row.matches(child_st):
                self._settled.update(settled)
                return None
            if isinstance(row, FileRow):
                files, size = files + 1, size + row.size
            else:
                links += 1
            if row.warning:
                warnings.append((join(rel, row.name), row.warning))
        if self._out is not None:
            self._copy_record(key, cached)
        return cached.tree_id, (files, dirs, links, size), warnings, cached.stat

    def _take_settled(self, rel: str, st: os.stat_result) -> _Settled | None:
        """The subtree at `rel` an earlier check found settled, if the directory is still
        the one it checked; its records are written now if they are not yet."""
        done = self._settled.pop(rel, None)
        if done is None or done[3] != (st.st_ino, st.st_mtime_ns, st.st_ctime_ns):
            self._unwritten.discard(rel)
            return None  # replaced or changed since: checked again
        if rel in self._unwritten and self._out is not None:
            self._unwritten.discard(rel)
            self._copy_settled(rel)
        return done

    def _copy_settled(self, rel: str) -> None:
        """Copy the last scan's records of the settled subtree at `rel`."""
        todo = [rel]
        while todo:
            here = todo.pop()
            key = dir_key(here)
            cached = self._cache.lookup(key, here)
            assert cached is not None  # found settled from this very cache
            self._copy_record(key, cached)
            todo += (join(here, row.name) for row in cached.row_list if isinstance(row, DirRow))

    def _copy_record(self, key: bytes, cached: CachedDir) -> None:
        assert self._out is not None
        self._out.snapshot.add_known(cached.tree_id, cached.tree_record)
        self._out.statcache.add_unchanged(key, cached)

    def _stat_rows(self, path: str, rows: list[Row]) -> Listing | None:
        """lstat the names a trusted cache gave; None if one is gone (list it instead)."""
        listing: Listing = []
        for row in rows:
            try:
                listing.append((row.name, os.lstat(f"{path}/{row.name}"), row))
            except FileNotFoundError:
                return None
        return listing

    def _list(self, tree: _Tree, path: str) -> Listing:
        try:
            fd = os.open(path, _DIR_FLAGS)
        except OSError as exc:
            self._omit(tree, "", f"cannot open directory: {describe_oserror(exc)}")
            return []
        try:
            if os.fstat(fd).st_ino != tree.st.st_ino:
                self._omit(tree, "", "replaced while being scanned")
                return []
            return self._read_entries(tree, fd)
        finally:
            os.close(fd)

    def _read_entries(self, tree: _Tree, fd: int) -> Listing:
        listing: Listing = []
        try:
            with os.scandir(fd) as entries:
                names = sorted(entry.name for entry in entries)
        except OSError as exc:
            self._omit(tree, "", f"cannot list directory: {describe_oserror(exc)}")
            return listing
        for name in names:
            if not self._wanted(tree, name):
                continue
            try:
                listing.append((name, os.stat(name, dir_fd=fd, follow_symlinks=False), None))
            except FileNotFoundError:
                continue  # deleted since it was listed: it is simply not there
            except OSError as exc:
                self._omit(tree, name, f"cannot stat: {describe_oserror(exc)}")
        return listing

    def _wanted(self, tree: _Tree, name: str) -> bool:
        rel = tree.rel
        if not rel and name == STATE_NAME:
            return False
        if self._options.exclude and join(rel, name) in self._options.exclude:
            return False
        if not name.isascii():
            try:
                name.encode()
            except UnicodeEncodeError:
                self._omit(tree, printable(name), "name is not valid UTF-8")
                return False
        return True

    def _visit(self, frame: _Frame, name: str, st: os.stat_result, row: Row | None) -> None:
        if isinstance(row, (FileRow, LinkRow)) and row.matches(st):  # a tuple: faster than X | Y
            # Unchanged since the last scan: the row is reused as it is.
            if row.warning:
                self._problem(join(frame.rel, name), Level.WARNING, row.warning)
            if isinstance(row, LinkRow):
                self.counters.symlinks += 1
            frame.tree.children.append(_Same(row, st))
            return
        if not isinstance(row, DirRow) or not stat.S_ISDIR(st.st_mode):
            # A directory still a directory leaves its parent clean: its own subtree
            # says whether it changed (_subtrees_clean).
            frame.tree.clean = False
        rel = join(frame.rel, name)
        path = f"{frame.path}/{name}"
        mode = st.st_mode
        if stat.S_ISREG(mode):
            self._add_file(frame, name, path, st)
        elif stat.S_ISDIR(mode):
            self.counters.dirs += 1
            subtree = self._settled_tree(rel, path, st) or self._push(rel, path, st)
            frame.tree.children.append(_SubDir(name, stat.S_IMODE(mode), subtree))
        elif stat.S_ISLNK(mode):
            self._add_link(frame, name, rel, path, st)
        else:
            self._omit(frame.tree, name, f"skipped: {_special_kind(mode)}")

    def _add_link(self, frame: _Frame, name: str, rel: str, path: str, st: os.stat_result) -> None:
        known = frame.cached.unchanged_link(name, st) if frame.cached else None
        if known is None:
            try:
                target = os.readlink(path)
                target.encode()
            except OSError as exc:
                self._omit(frame.tree, name, f"cannot read symlink: {describe_oserror(exc)}")
                return
            except UnicodeEncodeError:
                self._omit(frame.tree, name, "symlink target is not valid UTF-8")
                return
            known = target, _loop_warning(path)
        target, warning = known
        if warning:
            self._problem(rel, Level.WARNING, warning)
        self.counters.symlinks += 1
        row = link_row(name, st, target, warning)
        frame.tree.children.append(_Known(LinkNode(name, target), row))

    # -- files ----------------------------------------------------------------------

    def _add_file(self, frame: _Frame, name: str, path: str, st: os.stat_result) -> None:
        rel = join(frame.rel, name)
        known = frame.cached.unchanged_file(name, st) if frame.cached else None
        if known is None:
            hinted = self._known_recipe(st)
            known = None if hinted is None else (hinted, None)
        if known is not None:
            recipe, warning = known
            if warning:
                self._problem(rel, Level.WARNING, warning)
            node = FileNode(name, stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns, recipe)
            frame.tree.children.append(_Known(node, file_row(name, st, recipe, warning)))
            return
        lengths, warning = cuts_for(path, st)
        if warning:
            self._problem(rel, Level.WARNING, warning)
        assert self._hashes is not None
        parts = self._hashes.submit(path, StatKey.of(st), lengths)
        frame.tree.children.append(_Hashing(name, path, st, lengths, parts, warning))
        self._pending += 1

    def _known_recipe(self, st: os.stat_result) -> Recipe | None:
        known = self._options.known
        if known is None or st.st_ctime_ns + SETTLE_NS >= time.time_ns():
            return None  # none, or too recent to trust a stat (hashing.py says why)
        return known.recipe(st)

    def _resolve(self, item: _Hashing, tree: _Tree) -> _Known | None:
        """The file's node once hashed; retried if it changed, reported if it keeps changing."""
        st, lengths, parts = item.st, item.lengths, item.parts
        for attempt in range(RETRIES + 1):
            try:
                digests = [d for part in parts for d in part.result()]
            except FileChanged:
                if attempt == RETRIES:
                    self._omit(tree, item.name, f"kept changing while read ({attempt + 1} tries)")
                    return None
            except OSError as exc:
                self._omit(tree, item.name, f"cannot read: {describe_oserror(exc)}")
                return None
            else:
                recipe = tuple(zip(digests, lengths, strict=True))
                mode = stat.S_IMODE(st.st_mode)
                node = FileNode(item.name, mode, st.st_size, st.st_mtime_ns, recipe)
                return _Known(node, file_row(item.name, st, recipe, item.warning))
            retry = self._restat(item.path)
            if isinstance(retry, str):
                self._omit(tree, item.name, retry)
                return None
            st = retry
            lengths, item.warning = cuts_for(item.path, st)
            assert self._hashes is not None
            self._hashes.hashed_bytes += st.st_size
            parts = [_Inline(RangeJob(item.path, StatKey.of(st), 0, lengths))]
        return None

    @staticmethod
    def _restat(path: str) -> os.stat_result | str:
        """A fresh stat of a file that changed, or why it can no longer be read."""
        try:
            st = os.lstat(path)
        except OSError as exc:
            return f"vanished while read: {describe_oserror(exc)}"
        if not stat.S_ISREG(st.st_mode):
            return "replaced by something that is not a file while read"
        return st

    # -- finishing trees --------------------------------------------------------------

    def _drain(self, *, block: bool) -> None:
        assert self._hashes is not None
        while self._queue:
            head = self._queue[0]
            if not (block or self._pending > MAX_PENDING_FILES or head.ready()):
                return
            self._hashes.flush()
            self._queue.popleft()
            self._finish(head)

    def _finish(self, tree: _Tree) -> None:
        if tree.clean and tree.cached is not None and self._subtrees_clean(tree):
            self._finish_unchanged(tree, tree.cached)
            return
        tree.clean = False
        nodes: list[Node] = []
        rows: list[Row] = []
        for child in tree.children:
            if isinstance(child, _SubDir):
                assert child.tree.id is not None
                nodes.append(DirNode(child.name, child.mode, child.tree.id))
                rows.append(dir_row(child.name))
                continue
            known = self._known(child, tree)
            if known is None:
                continue
            nodes.append(known.node)
            rows.append(known.row)
            if isinstance(known.node, FileNode):
                self.counters.files += 1
                self.counters.bytes += known.node.size
        record = encode_tree(nodes)
        out = self._out
        assert out is not None
        tree.id = out.snapshot.add_tree(record)
        out.statcache.add_dir(tree.key, tree.rel, tree.st, tree.trusted, (tree.id, record), rows)
        tree.children = []

    def _known(self, child: _Known | _Hashing | _Same, tree: _Tree) -> _Known | None:
        if isinstance(child, _Same):
            return child.known()
        if isinstance(child, _Hashing):
            self._pending -= 1
            return self._resolve(child, tree)
        return child

    @staticmethod
    def _subtrees_clean(tree: _Tree) -> bool:
        return all(c.tree.clean for c in tree.children if isinstance(c, _SubDir))

    def _finish_unchanged(self, tree: _Tree, cached: CachedDir) -> None:
        """Nothing below changed: the last scan's records are this scan's records."""
        tree.id = cached.tree_id
        self._copy_record(tree.key, cached)
        for child in tree.children:
            if isinstance(child, _Same) and isinstance(child.row, FileRow):
                self.counters.files += 1
                self.counters.bytes += child.row.size
        tree.children = []

    def _omit(self, tree: _Tree, name: str, message: str) -> None:
        """Report an entry left out of the snapshot (name '' is the directory itself).

        The directory's listing is then not trusted by the next scan, which must meet
        and report the entry again rather than skip it silently.
        """
        tree.trusted = tree.clean = False
        self._problem(join(tree.rel, name) if name else tree.rel, Level.ERROR, message)

    def _problem(self, path: str, level: Level, message: str) -> None:
        problem = Problem(path, level, message)
        if level is Level.ERROR:
            self.counters.errors += 1
        self._report(problem)
        if self._options.strict:
            raise ScanAborted(f"stopped at the first problem (--strict): {problem}")


class _Inline(Part):
    """A retry, hashed in the scanner's own thread when its result is asked for."""

    def __init__(self, job: RangeJob) -> None:
        super().__init__()
        self._job = job

    def done(self) -> bool:
        return True

    def result(self) -> list[bytes]:
        return run_job(self._job)


def _loop_warning(path: str) -> str | None:
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == _ELOOP:
            return "symlink loop (kept as a link, not followed)"
    return None


def _special_kind(mode: int) -> str:
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "unsupported file type"
