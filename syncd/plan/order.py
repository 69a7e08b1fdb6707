"""The operations that turn the far side's tree into the target, in a safe order. Pure.

A registry (distribution's filesystem storage, any folder under a `docker/registry/v2`
prefix) reads a tag as `tags/<tag>/current/link` -> `revisions/.../link` -> blob `data`,
and lists every directory under `tags/` as a tag (docs/FACTS.md). So an apply must never let
a listed tag point at something that is not there yet, or no longer there. The plan is
ordered in phases; inside a phase, in path order:

 1. DIRS, DATA, FILES - everything that is not a link or a tag: new directories (created
    empty; their modes are set in the last phase, so that a read-only mode cannot stop
    the writes below them), blob `data` files (a new blob directory `blobs/sha256/xx/<hex>`
    arrives with its `data` in one rename), then every other file and symlink (content/
    archives, working-dir, `_uploads`).
 2. LINKS - `_layers/.../link` and `_manifests/revisions/.../link`.
 3. TAG_INDEX, TAG_CURRENT, NEW_TAGS - existing tags: their `index/.../link` files, then
    `current/link` (renamed over the old one, so a reader sees the old or the new). A new
    tag directory is built complete (index links and current/link) outside the live tree
    and appears in ONE rename, because a tag directory without `current/link` is listed
    and fails. New directories anywhere under `repositories/` are placed the same way, in
    the phase of what they hold: a new repository appears with all its links and tags at
    once, a new `_layers/sha256/<hex>` directory with its link.
 4. DELETE_* - deletions, only after every addition: tag directories (and repository
    directories, which hold tags) first, each gone in one rename out of the tree; then tag
    index links; revision and `_layers` links; blob data; other files and symlinks; then
    other directories. A directory is always removed whole, in one rename.
 5. MODES - directory modes, deepest first.

A file whose mode or modification time changes, its content not, is written anew and
renamed over the old one like any other file (its pieces read from the old one, which
stays readable): never chmod or utime in place, since the far file may have other hard
links, even outside the root, whose mode and time would change with it.

A change of kind at a path (file or symlink <-> directory) cannot be one rename: the old
entry is moved aside (MoveAside) right before the new one is created, in the new one's
phase. A file and a symlink replace each other by a rename over. With `delete=False`,
entries the target lacks are left alone (except below an entry whose kind changes).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum, IntEnum

from protocol.paths import join
from protocol.tree import DirNode, FileNode, LinkNode, Node
from syncd.plan.diff import TreeLookup

STORAGE_PREFIX = ("docker", "registry", "v2")


class Phase(IntEnum):
    DIRS = 10
    DATA = 20
    FILES = 30
    LINKS = 40
    TAG_INDEX = 50
    TAG_CURRENT = 60
    NEW_TAGS = 70
    DELETE_TAGS = 80
    DELETE_TAG_INDEX = 90
    DELETE_LINKS = 100
    DELETE_DATA = 110
    DELETE_FILES = 120
    DELETE_DIRS = 130
    MODES = 140


class Role(Enum):
    """What a path is to a registry reading it (OTHER outside registry storage)."""

    OTHER = "other"
    STORAGE = "storage"  # the `v2` directory itself
    REPOSITORY = "repository"  # `repositories/`, namespaces, repositories, `_manifests`, `tags`
    DATA = "data"  # anything under `blobs/` but a blob's own directory
    BLOB_DIR = "blob-dir"  # `blobs/<algorithm>/<xx>/<hex>`, which holds the blob's `data`
    LAYER_LINK = "layer-link"
    REVISION_LINK = "revision-link"
    TAG_DIR = "tag-dir"  # `_manifests/tags/<tag>`
    TAG_INDEX = "tag-index"  # inside a tag directory, except `current/`
    TAG_CURRENT = "tag-current"
    UPLOAD = "upload"


@dataclass(frozen=True, slots=True)
class MakeDir:
    path: str
    phase: Phase
    mode: int  # set in Phase.MODES; the directory is created private


@dataclass(frozen=True, slots=True)
class WriteFile:
    path: str
    phase: Phase
    node: FileNode
    # The live file at `path` holds this content already (only its mode or time change):
    # its pieces stay readable during the apply, also after the new file replaced it.
    same_content: bool = False


@dataclass(frozen=True, slots=True)
class MakeSymlink:
    path: str
    phase: Phase
    target: str


@dataclass(frozen=True, slots=True)
class PlaceTree:
    """A new directory built whole outside the live tree, then renamed in at once. Its
    own mode lacking owner rwx is set in Phase.MODES: a far side that is not root can
    move a directory into another only while it may write it."""

    path: str
    phase: Phase
    mode: int
    tree: bytes  # the target's tree id of the directory


@dataclass(frozen=True, slots=True)
class SetMode:
    """A directory's mode (a directory has no other hard links)."""

    path: str
    phase: Phase
    mode: int


@dataclass(frozen=True, slots=True)
class MoveAside:
    """Take the entry at `path` out of the tree; the next operation creates its successor."""

    path: str
    phase: Phase
    node: Node  # the entry being replaced, as the current tree has it


@dataclass(frozen=True, slots=True)
class Delete:
    path: str
    phase: Phase
    node: Node  # the entry as the current tree has it; a directory goes whole


Op = MakeDir | WriteFile | MakeSymlink | PlaceTree | SetMode | MoveAside | Delete

# A new directory with one of these roles is placed whole (see the module docstring).
_PLACED_PHASE = {
    Role.BLOB_DIR: Phase.DATA,
    Role.REPOSITORY: Phase.NEW_TAGS,
    Role.TAG_DIR: Phase.NEW_TAGS,
    Role.TAG_CURRENT: Phase.TAG_CURRENT,
    Role.TAG_INDEX: Phase.TAG_INDEX,
    Role.LAYER_LINK: Phase.LINKS,
    Role.REVISION_LINK: Phase.LINKS,
    Role.UPLOAD: Phase.FILES,
}
_WRITE_PHASE = {
    Role.DATA: Phase.DATA,
    Role.BLOB_DIR: Phase.DATA,
    Role.LAYER_LINK: Phase.LINKS,
    Role.REVISION_LINK: Phase.LINKS,
    Role.TAG_INDEX: Phase.TAG_INDEX,
    Role.TAG_CURRENT: Phase.TAG_CURRENT,
    Role.TAG_DIR: Phase.NEW_TAGS,  # a file named like a tag is listed as one
}
_DELETE_PHASE = {
    Role.STORAGE: Phase.DELETE_TAGS,
    Role.REPOSITORY: Phase.DELETE_TAGS,
    Role.TAG_DIR: Phase.DELETE_TAGS,
    Role.TAG_INDEX: Phase.DELETE_TAG_INDEX,
    Role.TAG_CURRENT: Phase.DELETE_TAG_INDEX,
    Role.LAYER_LINK: Phase.DELETE_LINKS,
    Role.REVISION_LINK: Phase.DELETE_LINKS,
    Role.DATA: Phase.DELETE_DATA,
    Role.BLOB_DIR: Phase.DELETE_DATA,
}


_REPOSITORY_PARTS = {"_layers": Role.LAYER_LINK, "_uploads": Role.UPLOAD}


def classify(path: str) -> Role:
    """The role of `path` in registry storage; repository names may hold '/'."""
    parts = path.split("/")
    for i in range(len(parts) - 2):
        if tuple(parts[i : i + 3]) == STORAGE_PREFIX:
            return _storage_role(parts[i + 3 :])
    return Role.OTHER


def _storage_role(rel: list[str]) -> Role:
    if not rel:
        return Role.STORAGE
    if rel[0] == "blobs":
        return Role.BLOB_DIR if len(rel) == 4 else Role.DATA
    if rel[0] != "repositories":
        return Role.OTHER
    # Repository path components never start with '_' (distribution's name grammar).
    j = next((i for i, part in enumerate(rel) if i and part.startswith("_")), None)
    if j is None:
        return Role.REPOSITORY
    if rel[j] == "_manifests":
        return _manifests_role(rel[j + 1 :])
    return _REPOSITORY_PARTS.get(rel[j], Role.OTHER)


def _manifests_role(rel: list[str]) -> Role:
    if not rel:
        return Role.REPOSITORY
    if rel[0] == "revisions":
        return Role.REVISION_LINK
    if rel[0] != "tags":
        return Role.OTHER
    if len(rel) == 1:
        return Role.REPOSITORY
    if len(rel) == 2:
        return Role.TAG_DIR
    return Role.TAG_CURRENT if rel[2] == "current" else Role.TAG_INDEX


def plan_apply(
    target: TreeLookup,
    target_root: bytes,
    current: TreeLookup,
    current_root: bytes,
    *,
    delete: bool,
) -> list[Op]:
    """Operations turning the current tree into the target, in the order to run them."""
    planner = _Planner(target, current, delete)
    planner.enter(target_root, current_root, "")
    planner.walk()
    return planner.ordered()


@dataclass(slots=True)
class _Frame:
    """A directory being compared: the target's children still to visit, and the current
    tree's children not matched yet."""

    prefix: str
    children: Iterator[Node]
    current: dict[str, Node]


class _Planner:
    """Depth-first, children in name order, like a recursive diff; the stack is explicit
    so that no depth of tree can exhaust Python's recursion limit."""

    def __init__(self, target: TreeLookup, current: TreeLookup, delete: bool) -> None:
        self._target = target
        self._current = current
        self._delete = delete
        self._phases: dict[Phase, list[Op]] = {phase: [] for phase in Phase}
        self._stack: list[_Frame] = []

    def ordered(self) -> list[Op]:
        # Deepest first, so that a parent's mode never stops setting its child's.
        self._phases[Phase.MODES].reverse()
        return [op for phase in Phase for op in self._phases[phase]]

    def _emit(self, op: Op) -> None:
        self._phases[op.phase].append(op)

    def enter(self, target_id: bytes, current_id: bytes | None, prefix: str) -> None:
        """Compare two directories, only if their ids differ (None: a new directory)."""
        if target_id == current_id:
            return
        current = {} if current_id is None else {n.name: n for n in self._current(current_id)}
        self._stack.append(_Frame(prefix, iter(self._target(target_id)), current))

    def walk(self) -> None:
        while self._stack:
            frame = self._stack[-1]
            node = next(frame.children, None)
            if node is not None:
                path = join(frame.prefix, node.name)
                self._pair(path, node, frame.current.pop(node.name, None))
                continue
            self._stack.pop()
            if self._delete:
                for old in frame.current.values():
                    self._remove(join(frame.prefix, old.name), old)

    def _pair(self, path: str, new: Node, old: Node | None) -> None:
        if old is None:
            self._add(path, new, None)
        elif isinstance(new, DirNode) and isinstance(old, DirNode):
            if new.mode != old.mode:
                self._emit(SetMode(path, Phase.MODES, new.mode))
            self.enter(new.tree, old.tree, path)
        elif isinstance(new, DirNode) or isinstance(old, DirNode):
            self._add(path, new, old)
        elif isinstance(new, FileNode) and isinstance(old, FileNode):
            self._update_file(path, new, old)
        elif new != old:
            self._add(path, new, None)  # file <-> symlink, or a new target: rename over

    def _update_file(self, path: str, new: FileNode, old: FileNode) -> None:
        if new.recipe != old.recipe:
            self._add(path, new, None)
        elif new.mode != old.mode or new.mtime_ns != old.mtime_ns:
            phase = _WRITE_PHASE.get(classify(path), Phase.FILES)
            self._emit(WriteFile(path, phase, new, same_content=True))

    def _add(self, path: str, node: Node, aside: Node | None) -> None:
        """Create `node` at `path`; `aside` is an entry of another kind to move away first."""
        role = classify(path)
        if isinstance(node, DirNode) and role in _PLACED_PHASE:
            self._create(PlaceTree(path, _PLACED_PHASE[role], node.mode, node.tree), aside)
            if node.mode & 0o700 != 0o700:  # placed owner-writable (see PlaceTree)
                self._emit(SetMode(path, Phase.MODES, node.mode))
        elif isinstance(node, DirNode):
            self._create(MakeDir(path, Phase.DIRS, node.mode), aside)
            self._emit(SetMode(path, Phase.MODES, node.mode))
            self.enter(node.tree, None, path)
        elif isinstance(node, FileNode):
            self._create(WriteFile(path, _WRITE_PHASE.get(role, Phase.FILES), node), aside)
        else:
            assert isinstance(node, LinkNode)
            phase = _WRITE_PHASE.get(role, Phase.FILES)
            self._create(MakeSymlink(path, phase, node.target), aside)

    def _create(self, op: Op, aside: Node | None) -> None:
        if aside is not None:
            self._emit(MoveAside(op.path, op.phase, aside))
        self._emit(op)

    def _remove(self, path: str, node: Node) -> None:
        phase = _DELETE_PHASE.get(classify(path))
        if phase is None:
            phase = Phase.DELETE_DIRS if isinstance(node, DirNode) else Phase.DELETE_FILES
        self._emit(Delete(path, phase, node))


@dataclass(frozen=True, slots=True)
class Touched:
    """Live entries whose content a plan replaces or removes."""

    paths: frozenset[str]  # replaced in place (a file or symlink written over)
    subtrees: frozenset[str]  # removed with everything below them

    def __call__(self, path: str) -> bool:
        if path in self.paths or path in self.subtrees:
            return True
        if not self.subtrees:
            return False
        at = path.rfind("/")
        while at > 0:
            if path[:at] in self.subtrees:
                return True
            at = path.rfind("/", 0, at)
        return False


def touched(ops: list[Op]) -> Touched:
    """What `ops` change in the live tree: its pieces cannot be read back during the apply.
    A file rewritten with the same content (a new mode or time) keeps them readable."""
    paths = {
        op.path
        for op in ops
        if isinstance(op, MakeSymlink) or (isinstance(op, WriteFile) and not op.same_content)
    }
    subtrees = {op.path for op in ops if isinstance(op, MoveAside | Delete)}
    return Touched(frozenset(paths), frozenset(subtrees))
