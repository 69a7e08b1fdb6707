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


@dataclass(frozen=True, slots=True)
class _Totals:
    files: int
    dirs: int
    symlinks: int
    size: int
    written: bytes  # the directory's id as written here
    extent: Extent


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
    return Written(summary, target, pass_.renamed)


@dataclass(frozen=True, slots=True)
class _Record:
    ident: bytes  # its id: the target's, or the one this side holds it under
    record: bytes
    nodes: list[Node]


class _Pass:
    """Every reachable record once, bottom-up: canonicalised, counted as a scan would
    count it (with repeats), its extent computed; the root's extent checked last."""

    def __init__(self, records: Records, canon: Canon, aliases: Aliases, out: SnapshotWriter):
        self.records, self.canon, self.aliases, self.out = records, canon, aliases, out
        self.totals: dict[bytes, _Totals] = {}
        self.renamed: list[tuple[bytes, bytes]] = []
        self._root = b""

    def run(self, target: bytes) -> _Totals:
        self._root = target
        stack: list[tuple[bytes, _Record | None]] = [(target, None)]
        while stack:
            key, got = stack.pop()
            if key in self.totals:
                continue  # an equal subtree met before
            if got is None:
                got = self._fetch(key)
                waiting = [n.tree for n in got.nodes if isinstance(n, DirNode)]
                waiting = [tree for tree in waiting if tree not in self.totals]
                if waiting:
                    stack.append((key, got))
                    stack.extend((sub, None) for sub in waiting)
                    continue
            self.totals[key] = self._write(key, got)
        root = self.totals[target]
        check_root(root.extent, self._children, self._below)
        return root

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

    def _write(self, key: bytes, got: _Record) -> _Totals:
        nodes = got.nodes
        written = [
            self.canon.node(n, self.totals[n.tree].written if isinstance(n, DirNode) else None)
            for n in nodes
        ]
        if all(w is n for w, n in zip(written, nodes, strict=True)):
            ident = got.ident  # already as this side writes it: not encoded again
            self.out.add_known(ident, got.record)
        else:
            ident = self.out.add_tree(encode_tree(written))
        if ident != key:
            self.renamed.append((key, ident))
        links = not self.canon.policy.allow_outside_symlinks
        return self._count(nodes, ident, extent(nodes, self._below, links=links))

    def _below(self, node: DirNode) -> Extent:
        return self.totals[node.tree].extent

    def _children(self, tree: bytes | None) -> list[Node]:
        return self._fetch(self._root if tree is None else tree).nodes

    def _count(self, nodes: list[Node], ident: bytes, reach: Extent) -> _Totals:
        files = dirs = symlinks = size = 0
        for node in nodes:
            if isinstance(node, FileNode):
                files, size = files + 1, size + node.size
            elif isinstance(node, LinkNode):
                symlinks += 1
            else:
                below = self.totals[node.tree]
                files, dirs = files + below.files, dirs + 1 + below.dirs
                symlinks, size = symlinks + below.symlinks, size + below.size
        return _Totals(files, dirs, symlinks, size, ident, reach)
