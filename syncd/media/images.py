"""The images a tree's registry storage serves, and how two trees differ in them.

Read from tree records and pieces only, so the same code answers on the exporting side
(the source snapshot against a receipt's trees; pieces from the source's files) and on
the far side (its live snapshot against a staged target; pieces from staging or live
files). A registry storage tree is any `docker/registry/v2` folder; a tag is
`repositories/<repo>/_manifests/tags/<tag>/current/link` (distribution's
registry/storage/paths.go, manifestTagCurrentPathSpec, at commit 0d6b721dc), whose bytes
name the manifest digest; only the tags whose link changes are read. Platforms come
from the manifest: an index's children, or an image manifest's config (`os`,
`architecture`, `variant`).
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from protocol.manifest import Change, ImageChange, PathChange, valid_image
from protocol.tree import DirNode, FileNode, Node
from syncd.verify.digests import match_digest
from syncd.verify.layout import blob_data
from syncd.verify.manifest import Kind, ManifestError, parse_manifest
from syncd.verify.store import LINK_LIMIT, MANIFEST_LIMIT

TreeLookup = Callable[[bytes], list[Node] | None]
ReadPiece = Callable[[bytes, int], bytes | None]
TagKey = tuple[str, str, str]  # registry folder, repository, tag

CONFIG_LIMIT = 1 << 20
RECENT_TREES = 1024


@dataclass(slots=True)
class TreeView:
    """A tree to read images from: its records, its root and its pieces."""

    lookup: TreeLookup
    root: bytes
    read: ReadPiece
    # Decoded records met last: paths share their upper folders (blobs/sha256/xx, ...).
    _recent: OrderedDict[bytes, list[Node]] = field(default_factory=OrderedDict)
    # Called at every directory visited, read or recent: a walk that must be stoppable
    # raises from it (a target that repeats one subtree can be walked long from 6 records).
    visit: Callable[[], None] = field(default=lambda: None)

    def children(self, tree: bytes) -> list[Node]:
        self.visit()
        found = self._recent.get(tree)
        if found is None:
            found = self._recent[tree] = self.lookup(tree) or []
            if len(self._recent) > RECENT_TREES:
                self._recent.popitem(last=False)
        return found

    def node(self, path: str) -> Node | None:
        tree: bytes | None = self.root
        node: Node | None = None
        for name in path.split("/"):
            if tree is None:
                return None
            node = next((n for n in self.children(tree) if n.name == name), None)
            tree = node.tree if isinstance(node, DirNode) else None
        return node

    def content(self, node: FileNode, limit: int) -> bytes | None:
        """A file's bytes, when at most `limit` and every piece can be read."""
        if node.size > limit:
            return None
        parts = [self.read(digest, length) for digest, length in node.recipe]
        return None if any(p is None for p in parts) else b"".join(p or b"" for p in parts)


# A tag's link, as distribution lays it out: repository components never start with "_".
_TAG_LINK = re.compile(
    r"(?P<registry>(?:.+/)?docker/registry/v2)/repositories/"
    r"(?P<repository>[^_/][^/]*(?:/[^_/][^/]*)*)/_manifests/tags/(?P<tag>[^/]+)/current/link"
)


def tag_link(path: str) -> TagKey | None:
    """(registry folder, repository, tag) when `path` is a tag's `current/link`."""
    found = _TAG_LINK.fullmatch(path)
    return None if found is None else (found["registry"], found["repository"], found["tag"])


def link_digest(view: TreeView, node: FileNode) -> str:
    """The digest a link file names, or "" when it cannot be read or is not one."""
    data = view.content(node, LINK_LIMIT)
    text = data.decode("ascii", "replace").strip() if data is not None else ""
    return text if match_digest(text) else ""


def platforms(view: TreeView, registry: str, digest: str) -> tuple[str, ...]:
    """The platforms of the manifest `digest` in `registry`, as far as they can be read."""
    manifest = _blob(view, registry, digest, MANIFEST_LIMIT)
    if manifest is None:
        return ()
    try:
        parsed = parse_manifest(manifest)
    except ManifestError:
        return ()
    if parsed.kind is Kind.INDEX:
        return tuple(dict.fromkeys(c.platform for c in parsed.children if c.platform))
    config = _blob(view, registry, parsed.config.digest, CONFIG_LIMIT) if parsed.config else None
    return (_config_platform(config),) if config else ()


def _blob(view: TreeView, registry: str, digest: str, limit: int) -> bytes | None:
    if not match_digest(digest):
        return None
    node = view.node(f"{registry}/{blob_data(digest)}")
    return view.content(node, limit) if isinstance(node, FileNode) else None


def _config_platform(config: bytes) -> str:
    try:
        document = json.loads(config)
    except ValueError:
        return ""
    if not isinstance(document, dict):
        return ""
    parts = [document.get(k) for k in ("os", "architecture", "variant")]
    return "/".join(p for p in parts if isinstance(p, str) and p)


def image_changes(paths: Iterable[PathChange], new: TreeView, old: TreeView) -> list[ImageChange]:
    """The tags whose link the path changes add, change (to other bytes) or remove: found
    from the difference alone, so the cost follows the change, not the tree."""
    changes: list[ImageChange] = []
    for entry in paths:
        key = tag_link(entry.path)
        if key is None:
            continue
        registry, repository, tag = key
        now = new.node(entry.path) if entry.change is not Change.REMOVED else None
        then = old.node(entry.path) if entry.change is not Change.ADDED else None
        now = now if isinstance(now, FileNode) else None
        then = then if isinstance(then, FileNode) else None
        if now is not None and then is not None and now.recipe == then.recipe:
            continue  # its mode changed, not what it names
        digest = link_digest(new, now) if now is not None else ""
        previous = link_digest(old, then) if then is not None else ""
        shown = tuple(p for p in platforms(new, registry, digest) if p) if digest else ()
        if not valid_image(repository, tag, shown):
            shown = ()
            if not valid_image(repository, tag, shown):
                continue  # a folder no registry would serve as a tag
        change = Change.ADDED if then is None else Change.REMOVED if now is None else Change.CHANGED
        changes.append(ImageChange(change, registry, repository, tag, digest, previous, shown))
    return sorted(changes, key=lambda c: (c.registry, c.repository, c.tag))
