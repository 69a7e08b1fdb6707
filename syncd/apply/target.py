"""The target snapshot file: every tree record reachable from the target root, in one file,
as this far side will write it, checked.

Written into the state folder before an apply starts, so that the apply (and its resumption
after a crash) needs nothing else: not the peer, not the staging area's tree records. The
one pass over the target's records also
- canonicalises them (canon.py: masked modes, times as the file system stores them); the
  file holds the canonical records, so the plan and the final check compare with what
  this side can hold, and the offered ids that changed are returned for the aliases;
- takes a directory this side holds already under an alias (aliases.py) as it holds it;
- refuses, naming the entry, a symlink that leaves the root and a path over PATH_MAX
  (syncd/plan/checks.py), before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from protocol.errors import ProtocolError
from protocol.tree import DirNode, FileNode, LinkNode, Node, decode_tree, encode_tree, tree_id
from syncd.apply.aliases import Aliases
from syncd.apply.canon import Canon
from syncd.apply.errors import ApplyError
from syncd.plan.checks import Extent, check_root, extent
from syncd.snapshot import SnapshotWriter, Summary
from syncd.store.recordfile import replace_atomically

Records = Callable[[bytes], bytes | None]


# A subtree of at least this many entries keeps its totals for the rest of the pass, so
# that an equal subtree met again is not walked again. A smaller one is walked again each
# time it is met, which costs fewer entries than this: a registry's million small leaf
# directories (a folder and its link file) then hold no memory once their parent is
# written, and a target made of one subtree referenced many times over still costs at
# most this factor in work over its distinct records.
REMEMBER_MIN = 64


@dataclass(frozen=True, slots=True)
class _Totals:
    files: int
    dirs: int
    symlinks: int
    size: int
    written: bytes  # the directory's id as written here
    extent: Extent

    @property
    def entries(self) -> int:
        return self.files + self.dirs + self.symlinks


@dataclass(frozen=True, slots=True)
class Written:
    """The target snapshot file as written: its summary (`summary.root` is the tree this
    side makes), and the offered tree ids it wrote under another id."""

    summary: Summary
    offered: bytes
    aliases: list[tuple[bytes, bytes]] = field(default_factory=list)


def write_target(
    path: Path,
    target: bytes,
    records: Records,
    canon: Canon | None = None,
    aliases: Aliases | None = None,
) -> Written:
    """Write the snapshot of `target` to `path` (atomically) from `records`, as `canon`
    writes it; raises ProtocolError for a target this side refuses."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as out:
            writer = SnapshotWriter(out)
            pass_ = _Pass(records, canon or Canon(), aliases or Aliases(), writer)
            totals = pass_.run(target)
            summary = Summary(
                totals.written, totals.files, totals.dirs, totals.symlinks, totals.size, True
            )
            writer.finish(summary)
        replace_atomically(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ApplyError(f"cannot write the target snapshot {path}: {exc.strerror}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Written(summary, target, list(pass_.renamed.items()))


@dataclass(frozen=True, slots=True)
class _Record:
    ident: bytes  # its id: the target's, or the one this side holds it under
    record: bytes
    nodes: list[Node]


@dataclass(slots=True)
class _Frame:
    """A directory of the pass: fetched once its turn comes, written once every
    subdirectory's totals are in `done`; its own totals go `into` its parent's."""

    key: bytes
    into: dict[bytes, _Totals]
    got: _Record | None = None
    done: dict[bytes, _Totals] = field(default_factory=dict)


class _Pass:
    """Every reachable record, bottom-up: canonicalised, counted as a scan would count it
    (with repeats), its extent computed; the root's extent checked last. Memory is the
    open directories' own (the current path, each with its subdirectories' totals) and
    the totals of subtrees of REMEMBER_MIN entries and up."""

    def __init__(self, records: Records, canon: Canon, aliases: Aliases, out: SnapshotWriter):
        self.records, self.canon, self.aliases, self.out = records, canon, aliases, out
        self.remembered: dict[bytes, _Totals] = {}
        self.renamed: dict[bytes, bytes] = {}  # offered id -> the id written here
        self._root = b""

    def run(self, target: bytes) -> _Totals:
        self._root = target
        root = self._solve(target)
        check_root(root.extent, self._children, self._below)
        return root

    def _solve(self, top: bytes) -> _Totals:
        """The totals of `top`, each record below it written (again, for a small subtree
        met before)."""
        out: dict[bytes, _Totals] = {}
        stack = [_Frame(top, out)]
        while stack:
            frame = stack[-1]
            if frame.got is None:
                remembered = self.remembered.get(frame.key)
                if remembered is not None:
                    frame.into[frame.key] = remembered
                    stack.pop()
                    continue
                frame.got = self._fetch(frame.key)
                subdirs = (n.tree for n in frame.got.nodes if isinstance(n, DirNode))
                waiting = dict.fromkeys(t for t in subdirs if t not in self.remembered)
                stack.extend(_Frame(tree, frame.done) for tree in waiting)
                continue
            stack.pop()
            totals = self._write(frame.key, frame.got, frame.done)
            frame.into[frame.key] = totals
            if totals.entries >= REMEMBER_MIN:
                self.remembered[frame.key] = totals
        return out[top]

    def _fetch(self, key: bytes) -> _Record:
        """The record of `key`: the one this side holds for it under an alias, else the
        one received."""
        ident = self.aliases.live(key, self.records) or key
        record = self.records(ident)
        if record is None:
            raise ApplyError(f"tree {key.hex()} of the target is missing: it was never received")
        if tree_id(record) != ident:
            raise ApplyError(f"tree record {key.hex()} of the target does not match its id")
        try:
            return _Record(ident, record, decode_tree(record))
        except ProtocolError as exc:
            raise ApplyError(f"tree record {key.hex()} of the target is invalid: {exc}") from exc

    def _write(self, key: bytes, got: _Record, done: dict[bytes, _Totals]) -> _Totals:
        def below(tree: bytes) -> _Totals:
            found = done.get(tree)
            return self.remembered[tree] if found is None else found

        nodes = got.nodes
        written = [
            self.canon.node(n, below(n.tree).written if isinstance(n, DirNode) else None)
            for n in nodes
        ]
        if all(w is n for w, n in zip(written, nodes, strict=True)):
            ident = got.ident  # already as this side writes it: not encoded again
            self.out.add_known(ident, got.record)
        else:
            ident = self.out.add_tree(encode_tree(written))
        if ident != key:
            self.renamed[key] = ident
        links = not self.canon.policy.allow_outside_symlinks
        reach = extent(nodes, lambda node: below(node.tree).extent, links=links)
        return _count(nodes, ident, reach, below)

    def _below(self, node: DirNode) -> Extent:
        """A subdirectory's extent, for naming what the root's extent refuses."""
        remembered = self.remembered.get(node.tree)
        return (self._solve(node.tree) if remembered is None else remembered).extent

    def _children(self, tree: bytes | None) -> list[Node]:
        return self._fetch(self._root if tree is None else tree).nodes


def _count(
    nodes: list[Node], ident: bytes, reach: Extent, below: Callable[[bytes], _Totals]
) -> _Totals:
    files = dirs = symlinks = size = 0
    for node in nodes:
        if isinstance(node, FileNode):
            files, size = files + 1, size + node.size
        elif isinstance(node, LinkNode):
            symlinks += 1
        else:
            sub = below(node.tree)
            files, dirs = files + sub.files, dirs + 1 + sub.dirs
            symlinks, size = symlinks + sub.symlinks, size + sub.size
    return _Totals(files, dirs, symlinks, size, ident, reach)
