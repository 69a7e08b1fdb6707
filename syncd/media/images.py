"""The images a tree's registry storage serves, and how two trees differ in them.

Read from tree records and pieces only, so the same code answers on the exporting side
(the source snapshot against a receipt's trees; pieces from the source's files) and on
the far side (its live snapshot against a staged target; pieces from staging or live
files). A registry storage tree is any `docker/registry/v2` folder; a tag is
`repositories/<repo>/_manifests/tags/<tag>/current/link` (distribution's
registry/storage/paths.go, commit of the snapshot in /work/.mirror), whose bytes name
the manifest digest. Platforms come from the manifest: an index's children, or an image
manifest's config (`os`, `architecture`, `variant`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from protocol.manifest import Change, ImageChange, valid_image
from protocol.paths import join
from protocol.tree import DirNode, FileNode, Node
from syncd.state import STATE_NAME
from syncd.verify.digests import match_digest
from syncd.verify.layout import blob_data
from syncd.verify.manifest import Kind, ManifestError, parse_manifest
from syncd.verify.store import LINK_LIMIT, MANIFEST_LIMIT

TreeLookup = Callable[[bytes], list[Node] | None]
ReadPiece = Callable[[bytes, int], bytes | None]
TagKey = tuple[str, str, str]  # registry folder, repository, tag

_V2 = ("docker", "registry", "v2")
CONFIG_LIMIT = 1 << 20


@dataclass(frozen=True, slots=True)
class TreeView:
    """A tree to read images from: its records, its root and its pieces."""

    lookup: TreeLookup
    root: bytes
    read: ReadPiece

    def children(self, tree: bytes) -> list[Node]:
        return self.lookup(tree) or []

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


def tag_links(view: TreeView) -> dict[TagKey, FileNode]:
    """Every tag's `current/link` file, by (registry folder, repository, tag)."""
    found: dict[TagKey, FileNode] = {}
    for registry, tree in _registries(view):
        for repository, manifests in _repositories(view, tree):
            for tag in _dirs(view, _subtree(view, manifests, "tags")):
                current = _subtree(view, tag.tree, "current")
                link = next((n for n in view.children(current) if n.name == "link"), None)
                if current and isinstance(link, FileNode):
                    found[(registry, repository, tag.name)] = link
    return found


def _registries(view: TreeView) -> Iterator[tuple[str, bytes]]:
    stack = [("", view.root)]
    while stack:
        path, tree = stack.pop()
        for node in _dirs(view, tree):
            child = join(path, node.name) if path else node.name
            if tuple(child.split("/")[-3:]) == _V2:
                yield child, node.tree
            elif node.name != STATE_NAME:
                stack.append((child, node.tree))


def _repositories(view: TreeView, v2: bytes) -> Iterator[tuple[str, bytes]]:
    """(repository name, its `_manifests` tree); names are paths, as in the catalog."""
    stack = [("", _subtree(view, v2, "repositories"))]
    while stack:
        name, tree = stack.pop()
        for node in _dirs(view, tree):
            if node.name == "_manifests" and name:
                yield name, node.tree
            elif not node.name.startswith("_"):
                stack.append((f"{name}/{node.name}" if name else node.name, node.tree))


def _dirs(view: TreeView, tree: bytes) -> list[DirNode]:
    return [n for n in view.children(tree) if isinstance(n, DirNode)] if tree else []


def _subtree(view: TreeView, tree: bytes, name: str) -> bytes:
    node = next((n for n in _dirs(view, tree) if n.name == name), None)
    return node.tree if node is not None else b""


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


def image_changes(new: TreeView, old: TreeView | None) -> list[ImageChange]:
    """Tags added, changed (their link differs) and removed from `old` to `new`."""
    after = tag_links(new)
    before = tag_links(old) if old is not None else {}
    changes: list[ImageChange] = []
    for key in sorted(after.keys() | before.keys()):
        registry, repository, tag = key
        now, then = after.get(key), before.get(key)
        if now is not None and then is not None and now.recipe == then.recipe:
            continue
        digest = link_digest(new, now) if now is not None else ""
        previous = link_digest(old, then) if old is not None and then is not None else ""
        change = Change.ADDED if then is None else Change.REMOVED if now is None else Change.CHANGED
        shown = tuple(p for p in platforms(new, registry, digest) if p) if digest else ()
        if not valid_image(repository, tag, shown):
            shown = ()
            if not valid_image(repository, tag, shown):
                continue  # a folder no registry would serve as a tag
        changes.append(ImageChange(change, registry, repository, tag, digest, previous, shown))
    return changes
