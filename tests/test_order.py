"""Apply ordering (syncd/plan/order.py): tables of trees in, ordered operations out."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest

from protocol.tree import DirNode, FileNode, LinkNode, Node, encode_tree, tree_id
from syncd.plan.order import (
    Delete,
    MakeDir,
    MakeSymlink,
    MoveAside,
    Op,
    Phase,
    PlaceTree,
    Role,
    SetMode,
    WriteFile,
    classify,
    plan_apply,
    touched,
)
from tests.targetutil import D, L

V2 = ".oc-mirror/.cache/docker/registry/v2"
REPO = f"{V2}/repositories/ns/app"
HEX_A, HEX_B, HEX_C = "a" * 64, "b" * 64, "c" * 64


@dataclass(frozen=True)
class F:
    content: str = "x"
    mode: int = 0o644
    mtime: int = 7


Spec = dict[str, F | D | L]


class Trees:
    """Tree records built from {path: F | D | L}; parents are made as D() when unnamed."""

    def __init__(self) -> None:
        self.records: dict[bytes, list[Node]] = {}
        self.lookups: Counter[bytes] = Counter()

    def lookup(self, key: bytes) -> list[Node]:
        self.lookups[key] += 1
        return self.records[key]

    def build(self, spec: Spec) -> bytes:
        entries: dict[str, F | D | L] = {}
        for path, node in spec.items():
            parts = path.split("/")
            for i in range(1, len(parts)):
                entries.setdefault("/".join(parts[:i]), D())
            entries[path] = node
        return self._dir("", entries)

    def _dir(self, prefix: str, entries: dict[str, F | D | L]) -> bytes:
        children: list[Node] = []
        start = f"{prefix}/" if prefix else ""
        for path, spec in entries.items():
            if not path.startswith(start) or "/" in path[len(start) :] or path == prefix:
                continue
            name = path[len(start) :]
            if isinstance(spec, D):
                children.append(DirNode(name, spec.mode, self._dir(path, entries)))
            elif isinstance(spec, L):
                children.append(LinkNode(name, spec.target))
            else:
                piece = ((spec.content.encode().ljust(32, b"."), len(spec.content)),)
                children.append(FileNode(name, spec.mode, len(spec.content), spec.mtime, piece))
        record = encode_tree(sorted(children, key=lambda n: n.name.encode()))
        key = tree_id(record)
        self.records[key] = sorted(children, key=lambda n: n.name.encode())
        return key


def plan(target: Spec, current: Spec, *, delete: bool = True) -> list[Op]:
    trees = Trees()
    new, old = trees.build(target), trees.build(current)
    return plan_apply(trees.lookup, new, trees.lookup, old, delete=delete)


def brief(ops: list[Op]) -> list[tuple[str, str, str]]:
    return [(op.phase.name, type(op).__name__, op.path) for op in ops]


def position(ops: list[Op], kind: type, path: str) -> int:
    return next(i for i, op in enumerate(ops) if isinstance(op, kind) and op.path == path)


def link(digest_hex: str) -> F:
    return F(f"sha256:{digest_hex}")


def tag(name: str, digest_hex: str) -> Spec:
    base = f"{REPO}/_manifests/tags/{name}"
    return {
        f"{base}/current/link": link(digest_hex),
        f"{base}/index/sha256/{digest_hex}/link": link(digest_hex),
    }


def image(digest_hex: str) -> Spec:
    """A manifest's blob data and its revision and _layers links."""
    return {
        f"{V2}/blobs/sha256/{digest_hex[:2]}/{digest_hex}/data": F("manifest " + digest_hex),
        f"{REPO}/_manifests/revisions/sha256/{digest_hex}/link": link(digest_hex),
        f"{REPO}/_layers/sha256/{digest_hex}/link": link(digest_hex),
    }


# -- classification ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "role"),
    [
        ("content/mirror_000001.tar", Role.OTHER),
        ("docker/registry", Role.OTHER),
        ("docker/registry/v2", Role.STORAGE),
        (f"{V2}", Role.STORAGE),
        (f"{V2}/blobs", Role.DATA),
        (f"{V2}/blobs/sha256/aa", Role.DATA),
        (f"{V2}/blobs/sha256/aa/{HEX_A}", Role.BLOB_DIR),
        (f"{V2}/blobs/sha256/aa/{HEX_A}/data", Role.DATA),
        (f"{V2}/repositories", Role.REPOSITORY),
        (f"{V2}/repositories/ns", Role.REPOSITORY),
        (REPO, Role.REPOSITORY),
        (f"{REPO}/_manifests", Role.REPOSITORY),
        (f"{REPO}/_manifests/tags", Role.REPOSITORY),
        (f"{REPO}/_manifests/tags/v1", Role.TAG_DIR),
        (f"{REPO}/_manifests/tags/v1/current", Role.TAG_CURRENT),
        (f"{REPO}/_manifests/tags/v1/current/link", Role.TAG_CURRENT),
        (f"{REPO}/_manifests/tags/v1/index/sha256/{HEX_A}/link", Role.TAG_INDEX),
        (f"{REPO}/_manifests/revisions/sha256/{HEX_A}/link", Role.REVISION_LINK),
        (f"{REPO}/_layers/sha256/{HEX_A}/link", Role.LAYER_LINK),
        (f"{REPO}/_uploads/u1/data", Role.UPLOAD),
        (f"{REPO}/_other/x", Role.OTHER),
        (f"{V2}/other", Role.OTHER),
        # A repository may be named like a registry word; only '_' parts end the name.
        (f"{V2}/repositories/tags/current/_manifests/tags/t", Role.TAG_DIR),
        ("content/working-dir/docker/registry/v2/blobs/x", Role.DATA),
    ],
)
def test_classify(path: str, role: Role) -> None:
    assert classify(path) is role


# -- additions -------------------------------------------------------------------------


def test_equal_trees_need_nothing() -> None:
    spec: Spec = {"a/b": F(), **image(HEX_A), **tag("v1", HEX_A)}
    assert plan(spec, dict(spec)) == []


def test_a_new_tag_appears_in_one_rename_after_what_it_names() -> None:
    current: Spec = {**image(HEX_A), **tag("v1", HEX_A)}
    target: Spec = {**current, **image(HEX_B), **tag("v2", HEX_B)}
    ops = plan(target, current)
    assert brief(ops) == [
        ("DIRS", "MakeDir", f"{V2}/blobs/sha256/bb"),
        ("DATA", "PlaceTree", f"{V2}/blobs/sha256/bb/{HEX_B}"),
        ("LINKS", "PlaceTree", f"{REPO}/_layers/sha256/{HEX_B}"),
        ("LINKS", "PlaceTree", f"{REPO}/_manifests/revisions/sha256/{HEX_B}"),
        ("NEW_TAGS", "PlaceTree", f"{REPO}/_manifests/tags/v2"),
        ("MODES", "SetMode", f"{V2}/blobs/sha256/bb"),
    ]


def test_an_existing_tag_moves_index_first_then_current() -> None:
    current: Spec = {**image(HEX_A), **tag("v1", HEX_A)}
    target: Spec = {**current, **image(HEX_B)}
    target.update(tag("v1", HEX_B))  # v1 now names B; A stays in its history
    target[f"{REPO}/_manifests/tags/v1/index/sha256/{HEX_A}/link"] = link(HEX_A)
    ops = plan(target, current)
    data = position(ops, PlaceTree, f"{V2}/blobs/sha256/bb/{HEX_B}")
    revision = position(ops, PlaceTree, f"{REPO}/_manifests/revisions/sha256/{HEX_B}")
    index = position(ops, PlaceTree, f"{REPO}/_manifests/tags/v1/index/sha256/{HEX_B}")
    current_link = position(ops, WriteFile, f"{REPO}/_manifests/tags/v1/current/link")
    assert data < revision < index < current_link
    assert ops[current_link].phase is Phase.TAG_CURRENT


def test_a_new_repository_appears_whole() -> None:
    current: Spec = {f"{V2}/repositories/other/_manifests/tags/t/current/link": link(HEX_C)}
    target: Spec = {**current, **image(HEX_A), **tag("v1", HEX_A)}
    ops = plan(target, current)
    placed = [(op.phase, op.path) for op in ops if isinstance(op, PlaceTree)]
    assert placed == [
        (Phase.DATA, f"{V2}/blobs/sha256/aa/{HEX_A}"),
        (Phase.NEW_TAGS, f"{V2}/repositories/ns"),
    ]
    assert not any(op.path.startswith(f"{V2}/repositories/ns/") for op in ops)


def test_a_first_sync_places_all_repositories_after_all_data() -> None:
    target: Spec = {**image(HEX_A), **image(HEX_B), **tag("v1", HEX_A), "content/a.tar": F()}
    ops = plan(target, {})
    repositories = position(ops, PlaceTree, f"{V2}/repositories")
    assert all(i < repositories for i, op in enumerate(ops) if op.phase <= Phase.FILES)
    placed = [op.path for op in ops if isinstance(op, PlaceTree)]
    assert placed == [
        f"{V2}/blobs/sha256/aa/{HEX_A}",
        f"{V2}/blobs/sha256/bb/{HEX_B}",
        f"{V2}/repositories",
    ]


def test_phases_never_go_back() -> None:
    current: Spec = {**image(HEX_A), **tag("v1", HEX_A), "content/old.tar": F(), "w/x": F()}
    target: Spec = {**image(HEX_B), **tag("v2", HEX_B), "content/new.tar": F(), "w/x": F("y")}
    ops = plan(target, current)
    assert [op.phase for op in ops] == sorted(op.phase for op in ops)


# -- deletions ---------------------------------------------------------------------------


def test_deletions_come_last_and_tags_first() -> None:
    current: Spec = {
        **image(HEX_A),
        **tag("v1", HEX_A),
        **image(HEX_B),
        **tag("v2", HEX_B),
        f"{REPO}/_manifests/tags/v1/index/sha256/{HEX_B}/link": link(HEX_B),
        "content/old.tar": F(),
        "content/olddir/x": F(),
    }
    target: Spec = {**image(HEX_A), **tag("v1", HEX_A), "content/new.tar": F()}
    ops = plan(target, current)
    assert brief(ops) == [
        ("FILES", "WriteFile", "content/new.tar"),
        ("DELETE_TAGS", "Delete", f"{REPO}/_manifests/tags/v2"),
        ("DELETE_TAG_INDEX", "Delete", f"{REPO}/_manifests/tags/v1/index/sha256/{HEX_B}"),
        ("DELETE_LINKS", "Delete", f"{REPO}/_layers/sha256/{HEX_B}"),
        ("DELETE_LINKS", "Delete", f"{REPO}/_manifests/revisions/sha256/{HEX_B}"),
        ("DELETE_DATA", "Delete", f"{V2}/blobs/sha256/bb"),
        ("DELETE_FILES", "Delete", "content/old.tar"),
        ("DELETE_DIRS", "Delete", "content/olddir"),
    ]


def test_a_deleted_repository_goes_with_the_tags() -> None:
    current: Spec = {**image(HEX_A), **tag("v1", HEX_A), "keep": F()}
    ops = plan({"keep": F(), f"{V2}/blobs/x": F()}, current)
    assert brief(ops) == [
        ("DATA", "WriteFile", f"{V2}/blobs/x"),
        ("DELETE_TAGS", "Delete", f"{V2}/repositories"),
        ("DELETE_DATA", "Delete", f"{V2}/blobs/sha256"),
    ]


def test_delete_false_keeps_extras() -> None:
    current: Spec = {**image(HEX_A), **tag("v1", HEX_A), "old.tar": F(), "d/x": F()}
    target: Spec = {**image(HEX_A), **tag("v1", HEX_A), "new.tar": F()}
    ops = plan(target, current, delete=False)
    assert brief(ops) == [("FILES", "WriteFile", "new.tar")]


# -- kinds, modes and plain trees ------------------------------------------------------


def test_kind_changes_move_the_old_entry_aside_right_before_the_new_one() -> None:
    current: Spec = {"f2d": F(), "d2f/x": F(), "f2l": F(), "l2f": L("t"), "l2l": L("old")}
    target: Spec = {"f2d/x": F(), "d2f": F(), "f2l": L("t"), "l2f": F(), "l2l": L("new")}
    for delete in (True, False):
        ops = plan(target, current, delete=delete)
        assert brief(ops) == [
            ("DIRS", "MoveAside", "f2d"),
            ("DIRS", "MakeDir", "f2d"),
            ("FILES", "MoveAside", "d2f"),
            ("FILES", "WriteFile", "d2f"),
            ("FILES", "WriteFile", "f2d/x"),
            ("FILES", "MakeSymlink", "f2l"),  # renamed over: no gap
            ("FILES", "WriteFile", "l2f"),
            ("FILES", "MakeSymlink", "l2l"),
            ("MODES", "SetMode", "f2d"),
        ]
        aside = ops[2]
        assert isinstance(aside, MoveAside) and isinstance(aside.node, DirNode)


def test_a_kind_change_into_a_tag_directory_places_it_after_moving_aside() -> None:
    current: Spec = {f"{REPO}/_manifests/tags/v1": F("junk"), **image(HEX_A)}
    target: Spec = {**image(HEX_A), **tag("v1", HEX_A)}
    ops = plan(target, current)
    assert brief(ops) == [
        ("NEW_TAGS", "MoveAside", f"{REPO}/_manifests/tags/v1"),
        ("NEW_TAGS", "PlaceTree", f"{REPO}/_manifests/tags/v1"),
    ]


def test_modes_and_mtimes() -> None:
    current: Spec = {"a": D(0o755), "a/b": D(0o755), "a/b/f": F("same", 0o644, 1), "g": F("x")}
    target: Spec = {"a": D(0o700), "a/b": D(0o555), "a/b/f": F("same", 0o600, 2), "g": F("y")}
    ops = plan(target, current)
    assert brief(ops) == [
        ("FILES", "WriteFile", "a/b/f"),  # a new file, never chmod on a shared inode
        ("FILES", "WriteFile", "g"),
        ("MODES", "SetMode", "a/b"),  # deepest first
        ("MODES", "SetMode", "a"),
    ]
    file_mode = ops[0]
    assert isinstance(file_mode, WriteFile) and file_mode.same_content
    assert (file_mode.node.mode, file_mode.node.mtime_ns) == (0o600, 2)
    # Its pieces stay readable from the live file: it is not among what the plan touches.
    assert not touched(ops)("a/b/f") and touched(ops)("g")


def test_new_plain_directories_are_made_then_filled_then_moded() -> None:
    ops = plan({"n": D(0o500), "n/m/f": F(), "n/s": L("f")}, {})
    assert brief(ops) == [
        ("DIRS", "MakeDir", "n"),
        ("DIRS", "MakeDir", "n/m"),
        ("FILES", "WriteFile", "n/m/f"),
        ("FILES", "MakeSymlink", "n/s"),
        ("MODES", "SetMode", "n/m"),
        ("MODES", "SetMode", "n"),
    ]
    made = ops[0]
    assert isinstance(made, MakeDir) and made.mode == 0o500


def test_descends_only_where_trees_differ() -> None:
    trees = Trees()
    same = {f"wide/{i:03d}/f": F(str(i)) for i in range(50)}
    old = trees.build({**same, "deep/a/b/c": F("1")})
    new = trees.build({**same, "deep/a/b/c": F("2")})
    trees.lookups.clear()
    ops = plan_apply(trees.lookup, new, trees.lookup, old, delete=True)
    assert brief(ops) == [("FILES", "WriteFile", "deep/a/b/c")]
    assert sum(trees.lookups.values()) == 2 * 4  # root, deep, a, b on each side


def test_touched_names_what_the_plan_replaces_or_removes() -> None:
    current: Spec = {"keep/f": F(), "rewrite": F("1"), "gone/deep/f": F(), "kind": F()}
    target: Spec = {"keep/f": F(), "rewrite": F("2"), "kind/x": F(), "new": F()}
    changes = touched(plan(target, current))
    assert changes("rewrite") and changes("kind") and changes("gone/deep/f")
    assert not changes("keep/f") and not changes("keep") and not changes("gon")
    assert changes.paths == frozenset({"rewrite", "kind/x", "new"})
    assert changes.subtrees == frozenset({"gone", "kind"})


def test_every_operation_kind_is_covered() -> None:
    current: Spec = {"f2d": F(), "gone": F(), "m": D(0o700)}
    target: Spec = {"f2d/x": F(), "l": L("t"), "m": D(0o755), **image(HEX_A)}
    kinds = {type(op) for op in plan(target, current)}
    assert kinds == {MakeDir, WriteFile, MakeSymlink, PlaceTree, SetMode, MoveAside, Delete}


def test_a_tree_deeper_than_the_recursion_limit_is_planned() -> None:
    records: dict[bytes, list[Node]] = {}

    def add(children: list[Node]) -> bytes:
        key = tree_id(encode_tree(children))
        records[key] = children
        return key

    old = add([])
    key = add([FileNode("f", 0o644, 1, 7, ((b"x".ljust(32, b"."), 1),))])
    depth = 2000  # deeper than the recursion limit, within PATH_MAX ("d/" * 2000 + "f")
    for _ in range(depth):
        key = add([DirNode("d", 0o755, key)])
    ops = plan_apply(records.__getitem__, key, records.__getitem__, old, delete=True)
    assert len(ops) == depth + 1 + depth  # mkdir each level, the file, each level's mode
    assert ops[depth].path == "/".join(["d"] * depth + ["f"])
