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

from protocol.tree import FileNode, Node, Recipe, decode_tree
from syncd import faults
from syncd.apply.aliases import Aliases
from syncd.apply.blobindex import BlobIndex
from syncd.apply.incoming import ASSEMBLE_MIN, content_key
from syncd.apply.livetree import LiveTree
from syncd.apply.pieces import PieceReader
from syncd.apply.room import Need, state_need
from syncd.apply.staging import Staging
from syncd.errors import SyncdError
from syncd.plan.descent import Descent
from syncd.snapshot import SnapshotReader
from syncd.state import StateDir


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
    place), and into the packs when a small file needs them too (incoming.py).

    It answers the descent's "is this piece here?" (`have`), so it knows what the
    target uses of staging (marked needed there) and which pieces only a work file of
    another target holds: those are copied where the apply can read them (`finish`).
    `need` adds up the room the apply will take (room.py); the work files are made only
    once that room is there (`start`), so a target refused for room leaves nothing."""

    def __init__(self, staging: Staging, live: LiveBlobs) -> None:
        self.staging = staging
        self.live = live
        self.need = Need()
        self._for_packs: set[bytes] = set()
        # Pieces held by no pack or live file, only by some work file: piece -> length.
        self._in_work_files: dict[bytes, int] = {}
        self._to_assemble: dict[bytes, Recipe] = {}  # content key -> recipe

    def have(self, digest: bytes) -> bool:
        if self.staging.use_blob(digest) or self.live.has(digest):
            return True
        if self.staging.incoming.use(digest):
            self._in_work_files[digest] = 0  # its length comes with the file (plan)
            return True
        return False

    def plan(self, node: FileNode, transfer: bool) -> None:
        from_work_files = False
        for digest, length in node.recipe:
            if digest in self._in_work_files:
                self._in_work_files[digest] = length
                from_work_files = True
        if not (transfer or from_work_files):
            return  # built from the packs and live files by the apply
        if node.size >= ASSEMBLE_MIN:
            key = content_key(node.recipe)
            if key not in self._to_assemble:
                self._to_assemble[key] = node.recipe
                self.need.assembled += self.staging.incoming.missing_bytes(node.recipe)
        else:
            self.need.built += node.size
            self._for_packs.update(digest for digest, _ in node.recipe)

    def account(self, wanted: dict[bytes, int], state: StateDir) -> Need:
        """The room the apply needs, once the descent is over (`wanted` what it lacks)."""
        need = self.need
        need.packs = sum(n for d, n in wanted.items() if d in self._for_packs)
        need.packs += sum(n for d, n in self._in_work_files.items() if d in self._for_packs)
        need.state = state_need(state, self.staging)
        return need

    def start(self) -> None:
        """Make the target's work files, once its room is there: pieces may then come."""
        for recipe in self._to_assemble.values():
            self.staging.incoming.prepare(recipe)
        self._to_assemble.clear()

    def put(self, digest: bytes, data: bytes | memoryview) -> None:
        faults.reached("blob")
        incoming = self.staging.incoming
        assembled = incoming.needs(digest)
        if assembled:
            incoming.put(digest, data)
        if digest in self._for_packs or not assembled:
            self.staging.add_blob(digest, data)

    def finish(self, root: Path) -> None:
        """Fill the target's assembled files' remaining holes from local pieces, and copy
        into the packs what the files built from them need of other work files, before
        anything in the live tree changes (the files that hold some of them may be
        replaced). Work files of other targets are left as they are."""
        incoming = self.staging.incoming
        missing = []
        for digest, length in self._in_work_files.items():
            if digest in self._for_packs and not self.staging.has_blob(digest):
                data = incoming.read(digest, length)
                if data is None:
                    missing.append((digest, length))
                else:
                    self.staging.add_blob(digest, data)
        if incoming.pending_pieces():
            tree = LiveTree(root)
            reader = PieceReader(self.staging, self.live.index, tree)
            try:
                missing += incoming.fill(reader.read_if_present)
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
    assemble (and knows which staged data the target uses)."""
    held = aliases or Aliases()

    def have_blob(digest: bytes) -> bool:
        if route is not None:
            return route.have(digest)
        return staging.has_blob(digest) or staging.incoming.has(digest) or live.has(digest)

    return Descent(
        target,
        live_tree=lambda tree: (
            current.record(tree) is not None or held.live(tree, current.record) is not None
        ),
        staged=trees or (lambda tree: staged_tree(staging, tree)),
        have_blob=have_blob,
        on_file=route.plan if route is not None else None,
    )


def staged_tree(staging: Staging, tree: bytes) -> list[Node] | None:
    record = staging.tree_record(tree)
    return None if record is None else decode_tree(record)
