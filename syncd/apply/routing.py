"""What the far side lacks for a target, and where arriving pieces go.

Shared by the two ways pieces reach a far side: a push (syncd/session/server.py) and an
import from removable media (syncd/media/importer.py). Both descend the target from the
far side's own state (live tree, staging, files being assembled), so each piece is asked
for, or read from a volume, only when it is found nowhere here; and both route what
arrives the same way: large files are assembled in place (written once), the rest goes
to the staging packs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from protocol.tree import FileNode, Node, decode_tree
from syncd import faults
from syncd.apply.aliases import Aliases
from syncd.apply.blobindex import BlobIndex
from syncd.apply.incoming import ASSEMBLE_MIN
from syncd.apply.livetree import LiveTree
from syncd.apply.pieces import PieceReader
from syncd.apply.staging import Staging
from syncd.errors import SyncdError
from syncd.plan.descent import Descent
from syncd.snapshot import SnapshotReader


class LiveBlobs:
    """The far side's live pieces, indexed on first use (a no-change push never needs it)."""

    def __init__(self, current: SnapshotReader) -> None:
        self._current = current
        self._index: BlobIndex | None = None

    @property
    def index(self) -> BlobIndex:
        if self._index is None:
            self._index = BlobIndex.build(self._current)
        return self._index

    def has(self, digest: bytes) -> bool:
        return self.index.has(digest)


class Routing:
    """Where arriving pieces go: into the large files being assembled (written once, in
    place), and into the packs when a small file needs them too (incoming.py)."""

    def __init__(self, staging: Staging) -> None:
        self.staging = staging
        self._for_packs: set[bytes] = set()

    def plan(self, node: FileNode, transfer: bool) -> None:
        if not transfer:
            return  # built from local pieces by the apply
        if node.size >= ASSEMBLE_MIN:
            self.staging.incoming.prepare(node.recipe)
        else:
            self._for_packs.update(digest for digest, _ in node.recipe)

    def put(self, digest: bytes, data: bytes) -> None:
        faults.reached("blob")
        incoming = self.staging.incoming
        assembled = incoming.needs(digest)
        if assembled:
            incoming.put(digest, data)
        if digest in self._for_packs or not assembled:
            self.staging.add_blob(digest, data)

    def finish(self, root: Path, live: LiveBlobs) -> None:
        """Fill the assembled files' remaining holes from local pieces, before anything
        in the live tree changes (the files that hold some of them may be replaced)."""
        incoming = self.staging.incoming
        if not incoming.pending_pieces():
            return
        tree = LiveTree(root)
        reader = PieceReader(self.staging, live.index, tree)
        try:
            missing = incoming.fill(reader.read_if_present)
        finally:
            reader.close()
            tree.close()
        if missing:
            raise SyncdError(
                f"{len(missing)} pieces are neither received nor on the far side "
                f"(first: {missing[0][0].hex()}); nothing was changed"
            )


def far_descent(
    target: bytes,
    current: SnapshotReader,
    staging: Staging,
    live: LiveBlobs,
    route: Routing | None,
    *,
    trees: Callable[[bytes], list[Node] | None] | None = None,
    aliases: Aliases | None = None,
) -> Descent:
    """The descent of `target` from the far side's state: live trees are skipped (also
    those held under an alias: aliases.py), and a piece is wanted only when it is neither
    live, staged nor in a file being assembled. Trees come from `trees` when given (a
    volume's index), else from staging; `route`, when given, prepares the large files to
    assemble."""
    held = aliases or Aliases()
    return Descent(
        target,
        live_tree=lambda tree: (
            current.record(tree) is not None or held.live(tree, current.record) is not None
        ),
        staged=trees or (lambda tree: staged_tree(staging, tree)),
        have_blob=lambda digest: (
            staging.has_blob(digest) or staging.incoming.has(digest) or live.has(digest)
        ),
        on_file=route.plan if route is not None else None,
    )


def staged_tree(staging: Staging, tree: bytes) -> list[Node] | None:
    record = staging.tree_record(tree)
    return None if record is None else decode_tree(record)
