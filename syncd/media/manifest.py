"""Build a transfer manifest: what a change from one tree to another brings.

The same description serves the exporter (the source snapshot against the export's
basis: what the export carries) and the far side (its live tree against a staged
target: what an apply is about to change, for the inspection gate and the audit log).
Paths: every file and symlink added, changed (content, kind, mode or target) or
removed; a folder added or removed is listed by what it holds. Images: images.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from protocol.manifest import MAX_BASIS_TEXT, Change, PathChange, TransferManifest
from protocol.tree import DirNode, FileNode, Node, encode_tree, tree_id
from syncd.apply.incoming import content_key
from syncd.media.images import TreeView, image_changes
from syncd.plan.diff import Side, diff_trees

_PATHS_PER_CHUNK = 4096
EMPTY_RECORD = encode_tree([])
EMPTY_TREE = tree_id(EMPTY_RECORD)


def empty_view() -> TreeView:
    """A tree with nothing in it: the basis of an export made without one."""
    return TreeView(lambda tree: [] if tree == EMPTY_TREE else None, EMPTY_TREE, lambda d, n: None)


def describe_change(
    new: TreeView,
    old: TreeView | None,
    basis: str,
    basis_root: bytes | None,
    paths: tuple[PathChange, ...] | None = None,
) -> TransferManifest:
    """The manifest of going from `old` (None: nothing) to `new`; `paths`: their
    path_changes as sort_paths orders them, when already known."""
    before = old or empty_view()
    text = "".join(c if c.isprintable() else "?" for c in basis)[:MAX_BASIS_TEXT]
    if paths is None:
        paths = sort_paths(path_changes(new, before))
    return TransferManifest(text, basis_root, tuple(image_changes(paths, new, before)), paths)


def sort_paths(changes: Iterable[PathChange]) -> tuple[PathChange, ...]:
    """A manifest's paths, in its order."""
    return tuple(sorted(changes, key=lambda p: (p.path, p.change)))


def path_changes(new: TreeView, old: TreeView) -> Iterator[PathChange]:
    for change in diff_trees(new.children, new.root, old.children, old.root):
        if change.side is Side.ONLY_A:
            yield from _every(new, change.path, Change.ADDED)
        elif change.side is Side.ONLY_B:
            yield from _every(old, change.path, Change.REMOVED)
        elif change.kind != "dir" and change.what != ("mtime",):
            if "kind" in change.what:
                yield from _every(old, change.path, Change.REMOVED)
                yield from _every(new, change.path, Change.ADDED)
            else:
                node = new.node(change.path)
                if node is not None:
                    yield _entry(change.path, node, Change.CHANGED)


def _every(view: TreeView, path: str, change: Change) -> Iterator[PathChange]:
    """The entry at `path` and, for a folder, every file and symlink below it."""
    node = view.node(path)
    if node is None:
        return
    if not isinstance(node, DirNode):
        yield _entry(path, node, change)
        return
    stack = [(path, node.tree)]
    while stack:
        prefix, tree = stack.pop()
        for child in view.children(tree):
            at = f"{prefix}/{child.name}"
            if isinstance(child, DirNode):
                stack.append((at, child.tree))
            else:
                yield _entry(at, child, change)


def _entry(path: str, node: Node, change: Change) -> PathChange:
    """A file added or changed with its size and content id; anything else bare."""
    if isinstance(node, FileNode) and change is not Change.REMOVED:
        return PathChange(change, path, node.size, content_key(node.recipe))
    return PathChange(change, path, 0, None)


def change_json(change: TransferManifest) -> dict[str, object]:
    """A manifest as JSON (`syncd show --json`)."""
    return {**_summary_json(change), "paths": [_path_json(p) for p in change.paths]}


def change_json_chunks(head: dict[str, object], change: TransferManifest) -> Iterator[bytes]:
    """The JSON text of {**head, **change_json(change)}, one path per line, in pieces:
    a change of a million paths is written without its JSON ever held whole (as dicts
    and text it would take some 600 bytes a path)."""
    opening = json.dumps({**head, **_summary_json(change)})
    yield f'{opening[:-1]}, "paths": [\n'.encode()
    lines: list[str] = []
    for index, path in enumerate(change.paths):
        lines.append(("," if index else "") + json.dumps(_path_json(path)) + "\n")
        if len(lines) >= _PATHS_PER_CHUNK:
            yield "".join(lines).encode()
            lines = []
    yield ("".join(lines) + "]}\n").encode()


def _summary_json(change: TransferManifest) -> dict[str, object]:
    return {
        "basis": change.basis,
        "basis_snapshot": change.basis_root.hex() if change.basis_root else None,
        "counts": change.counts(),
        "images": [
            {
                "change": i.change.word,
                "registry": i.registry,
                "repository": i.repository,
                "tag": i.tag,
                "digest": i.digest or None,
                "previous": i.previous or None,
                "platforms": list(i.platforms),
            }
            for i in change.images
        ],
    }


def _path_json(p: PathChange) -> dict[str, object]:
    return {
        "change": p.change.word,
        "path": p.path,
        "size": p.size,
        "content": p.content.hex() if p.content is not None else None,
    }
