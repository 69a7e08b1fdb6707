"""The apply order's promise, over random pairs of registry trees (syncd/plan/order.py).

Hypothesis draws two states of one registry storage (and a few plain files) from one
pool of images: repositories, tags naming image manifests or indexes, tag history,
untagged revisions, stray blobs. The plan that turns the first into the second is run,
one operation at a time, against an in-memory tree. After every operation, every tag
that the tree lists must resolve the way distribution serves it (tag -> current/link ->
revision link -> manifest blob -> its config and layers, each with a `_layers` link and
its data, an index's children likewise); at the end, the tree must equal the target
(with delete=False: hold all of it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import blake3
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.tree import DirNode, FileNode, LinkNode, Node, encode_tree, tree_id
from syncd.plan.order import (
    Delete,
    MakeDir,
    MakeSymlink,
    MoveAside,
    Op,
    PlaceTree,
    SetMode,
    WriteFile,
    plan_apply,
)

V2 = "cache/docker/registry/v2"
REPOSITORIES = ("app", "ns/tool", "ns/deep/lib")
TAGS = ("v1", "v2", "latest")
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"


# -- the pool of images both states draw from --------------------------------------------


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Manifest:
    body: bytes
    blobs: tuple[str, ...]  # config and layers (an image), or nothing (an index)
    children: tuple[str, ...]  # an index's manifests

    @property
    def digest(self) -> str:
        return sha(self.body)


def image(layers: list[bytes]) -> Manifest:
    config, *rest = layers
    described = [{"digest": f"sha256:{sha(b)}", "size": len(b)} for b in (config, *rest)]
    body = {"mediaType": MANIFEST, "config": described[0], "layers": described[1:]}
    return Manifest(json.dumps(body).encode(), tuple(sha(b) for b in layers), ())


def index(children: list[Manifest]) -> Manifest:
    listed = [{"digest": f"sha256:{c.digest}", "mediaType": MANIFEST} for c in children]
    body = json.dumps({"mediaType": INDEX, "manifests": listed}).encode()
    return Manifest(body, (), tuple(c.digest for c in children))


@st.composite
def pools(draw: st.DrawFn) -> tuple[dict[str, bytes], list[Manifest]]:
    """Blob contents by sha256, and manifests (images, then indexes over them)."""
    contents = [f"blob {i}".encode() for i in range(8)]
    images = [
        image(draw(st.lists(st.sampled_from(contents), min_size=2, max_size=4, unique=True)))
        for _ in range(draw(st.integers(2, 5)))
    ]
    images = list({m.digest: m for m in images}.values())
    indexes = [
        index(draw(st.lists(st.sampled_from(images), min_size=1, max_size=2, unique=True)))
        for _ in range(draw(st.integers(0, 2)))
    ]
    manifests = images + indexes
    blobs = {sha(c): c for c in contents} | {m.digest: m.body for m in manifests}
    return blobs, manifests


# -- one state of the registry, as files --------------------------------------------------


def link(hex_digest: str) -> bytes:
    return f"sha256:{hex_digest}".encode()


def blob_path(hex_digest: str) -> str:
    return f"{V2}/blobs/sha256/{hex_digest[:2]}/{hex_digest}/data"


@st.composite
def states(
    draw: st.DrawFn, blobs: dict[str, bytes], manifests: list[Manifest]
) -> dict[str, bytes | None]:
    """{path: file content, or None for an empty directory} of one consistent state."""
    by_digest = {m.digest: m for m in manifests}
    files: dict[str, bytes | None] = {}
    needed: set[str] = set()
    for repo in draw(st.lists(st.sampled_from(REPOSITORIES), max_size=3, unique=True)):
        base = f"{V2}/repositories/{repo}"
        revisions = set(draw(st.lists(st.sampled_from(manifests), max_size=2)))  # untagged
        for tag in draw(st.lists(st.sampled_from(TAGS), min_size=1, max_size=3, unique=True)):
            current = draw(st.sampled_from(manifests))
            history = {current, *draw(st.lists(st.sampled_from(manifests), max_size=2))}
            files[f"{base}/_manifests/tags/{tag}/current/link"] = link(current.digest)
            for old in history:
                files[f"{base}/_manifests/tags/{tag}/index/sha256/{old.digest}/link"] = link(
                    old.digest
                )
            revisions.add(current)
        for manifest in list(revisions):  # an index brings its children
            revisions.update(by_digest[child] for child in manifest.children)
        for manifest in revisions:
            files[f"{base}/_manifests/revisions/sha256/{manifest.digest}/link"] = link(
                manifest.digest
            )
            needed.add(manifest.digest)
            for blob in manifest.blobs:
                files[f"{base}/_layers/sha256/{blob}/link"] = link(blob)
                needed.add(blob)
    needed |= set(draw(st.lists(st.sampled_from(sorted(blobs)), max_size=2)))  # strays
    for digest in needed:
        files[blob_path(digest)] = blobs[digest]
    for name in draw(st.lists(st.sampled_from(("a", "b", "a/x", "b/y", "c")), max_size=3)):
        files[f"misc/{name}"] = f"plain {name}".encode()  # a/x with a: a kind change
    return _consistent(files)


def _consistent(files: dict[str, bytes | None]) -> dict[str, bytes | None]:
    """Drop a plain file where another path needs a directory of that name."""
    parents = {path.rsplit("/", i)[0] for path in files for i in range(1, path.count("/") + 1)}
    return {path: data for path, data in files.items() if path not in parents}


# -- tree records, and an in-memory tree to run a plan against --------------------------


@dataclass
class Records:
    trees: dict[bytes, list[Node]] = field(default_factory=dict)
    pieces: dict[bytes, bytes] = field(default_factory=dict)

    def build(self, files: dict[str, bytes | None], prefix: str = "") -> bytes:
        start = f"{prefix}/" if prefix else ""
        names = {path[len(start) :].split("/")[0] for path in files if path.startswith(start)}
        children: list[Node] = []
        for name in sorted(names, key=str.encode):
            path = start + name
            if path in files and files[path] is not None:
                children.append(self._file(name, files[path] or b""))
            else:
                children.append(DirNode(name, 0o755, self.build(files, path)))
        key = tree_id(encode_tree(children))
        self.trees[key] = children
        return key

    def _file(self, name: str, data: bytes) -> FileNode:
        piece = blake3.blake3(data).digest()
        self.pieces[piece] = data
        return FileNode(name, 0o644, len(data), 7, ((piece, len(data)),) if data else ())

    def lookup(self, key: bytes) -> list[Node]:
        return self.trees[key]


Entry = tuple[str, int, bytes]  # kind ("dir", "file", "link"), mode, content or target


class Tree:
    """A file system as a dict of paths, changed only through a plan's operations."""

    def __init__(self, records: Records, root: bytes) -> None:
        self.records = records
        self.entries: dict[str, Entry] = {}
        self.place("", root)

    def place(self, prefix: str, key: bytes) -> None:
        for node in self.records.lookup(key):
            path = f"{prefix}/{node.name}" if prefix else node.name
            self.entries[path] = self.entry(node)
            if isinstance(node, DirNode):
                self.place(path, node.tree)

    def entry(self, node: Node) -> Entry:
        if isinstance(node, DirNode):
            return ("dir", node.mode, b"")
        if isinstance(node, LinkNode):
            return ("link", 0, node.target.encode())
        data = b"".join(self.records.pieces[digest] for digest, _ in node.recipe)
        return ("file", node.mode, data + b"@%d" % node.mtime_ns)

    def run(self, op: Op) -> None:
        parent = op.path.rpartition("/")[0]
        assert not parent or self.entries.get(parent, ("",))[0] == "dir", f"{op}: no parent"
        if isinstance(op, MoveAside | Delete):
            assert op.path in self.entries, f"{op}: nothing there"
            self.remove(op.path)
        elif isinstance(op, MakeDir | PlaceTree):
            assert op.path not in self.entries, f"{op}: something there"
            if isinstance(op, MakeDir):
                self.entries[op.path] = ("dir", 0o700, b"")  # private until MODES
            else:
                self.entries[op.path] = ("dir", op.mode, b"")
                self.place(op.path, op.tree)
        elif isinstance(op, WriteFile | MakeSymlink):
            assert self.entries.get(op.path, ("",))[0] != "dir", f"{op}: over a directory"
            node = op.node if isinstance(op, WriteFile) else LinkNode("", op.target)
            self.entries[op.path] = self.entry(node)
        else:
            assert isinstance(op, SetMode), op
            assert self.entries.get(op.path, ("",))[0] == "dir", f"{op}: not a directory"
            self.entries[op.path] = ("dir", op.mode, b"")

    def remove(self, path: str) -> None:
        for name in [p for p in self.entries if p == path or p.startswith(f"{path}/")]:
            del self.entries[name]

    def read(self, path: str) -> bytes | None:
        kind, _, data = self.entries.get(path, ("", 0, b""))
        return data.rpartition(b"@")[0] if kind == "file" else None


# -- distribution's view of the tree ------------------------------------------------------


def unresolved_tags(tree: Tree) -> list[str]:
    problems = []
    for path, (kind, _, _) in sorted(tree.entries.items()):
        repo, sep, tag = path.partition("/_manifests/tags/")
        if sep and kind == "dir" and "/" not in tag and repo.startswith(f"{V2}/repositories/"):
            problem = resolve_tag(tree, repo, f"{path}/current/link")
            if problem:
                problems.append(f"{path}: {problem}")
    return problems


def resolve_tag(tree: Tree, repo: str, current: str) -> str | None:
    target = tree.read(current)
    if target is None:
        return "listed without current/link"
    return resolve_manifest(tree, repo, target.decode().removeprefix("sha256:"))


def resolve_manifest(tree: Tree, repo: str, digest: str) -> str | None:
    if tree.read(f"{repo}/_manifests/revisions/sha256/{digest}/link") != link(digest):
        return f"no revision link for {digest[:12]}"
    body = tree.read(blob_path(digest))
    if body is None:
        return f"manifest {digest[:12]} has no data"
    manifest = json.loads(body)
    for child in manifest.get("manifests", []):
        problem = resolve_manifest(tree, repo, child["digest"].removeprefix("sha256:"))
        if problem:
            return f"index child: {problem}"
    for blob in [manifest["config"], *manifest["layers"]] if "config" in manifest else []:
        hex_digest = blob["digest"].removeprefix("sha256:")
        if tree.read(f"{repo}/_layers/sha256/{hex_digest}/link") != link(hex_digest):
            return f"no _layers link for {hex_digest[:12]}"
        if tree.read(blob_path(hex_digest)) is None:
            return f"blob {hex_digest[:12]} has no data"
    return None


# -- the property ------------------------------------------------------------------------


@st.composite
def snapshot_pairs(draw: st.DrawFn) -> tuple[dict[str, bytes | None], dict[str, bytes | None]]:
    blobs, manifests = draw(pools())
    return draw(states(blobs, manifests)), draw(states(blobs, manifests))


@settings(max_examples=150, deadline=None)
@given(pair=snapshot_pairs(), delete=st.booleans())
def test_every_listed_tag_resolves_after_every_step(
    pair: tuple[dict[str, bytes | None], dict[str, bytes | None]], delete: bool
) -> None:
    before, after = pair
    records = Records()
    current_root, target_root = records.build(before), records.build(after)
    tree = Tree(records, current_root)
    assert unresolved_tags(tree) == []  # the drawn states are sound to begin with
    ops = plan_apply(records.lookup, target_root, records.lookup, current_root, delete=delete)
    for step, op in enumerate(ops, 1):
        tree.run(op)
        assert unresolved_tags(tree) == [], f"after step {step} ({op})"
    wanted = Tree(records, target_root).entries
    if delete:
        assert tree.entries == wanted
    else:
        assert {path: tree.entries.get(path) for path in wanted} == wanted
