"""The pure registry checker, table-driven over an in-memory store.

Each case builds a small registry (sound images plus one kind of damage), states which
images must be broken and which problem codes must appear, and under which policy
(sparse indexes allowed or not).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from syncd.verify import layout
from syncd.verify.deep import apply_hashes
from syncd.verify.hashing import HashOutcome
from syncd.verify.manifest import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Kind,
    ManifestError,
    parse_manifest,
)
from syncd.verify.memstore import MemStore, sha256_digest
from syncd.verify.registry import Policy, RegistryResult, check_images, check_registry
from syncd.verify.sections import build_section


@dataclass
class Built:
    """Digests of what a builder wrote, for cases to damage."""

    manifest: str
    config: str
    layers: list[str]


def image(
    store: MemStore,
    repo: str,
    tag: str | None,
    layers: list[bytes],
    *,
    media_type: str = OCI_MANIFEST,
    platform: str = "amd64",
) -> Built:
    config = store.put_blob(json.dumps({"architecture": platform, "image": [repo, tag]}).encode())
    digests = [store.put_blob(data) for data in layers]
    for digest in (config, *digests):
        store.link_layer(repo, digest)
    body = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"digest": config, "size": len(store.blob_bytes[config])},
        "layers": [{"digest": d, "size": len(store.blob_bytes[d])} for d in digests],
    }
    manifest = store.put_blob(json.dumps(body).encode())
    store.link_revision(repo, manifest)
    if tag is not None:
        store.link_tag(repo, tag, manifest)
    return Built(manifest, config, digests)


def index(
    store: MemStore,
    repo: str,
    tag: str,
    children: list[str],
    *,
    media_type: str = OCI_INDEX,
    arches: tuple[str, ...] = ("amd64", "arm64", "ppc64le"),
) -> str:
    entries = [
        {
            "digest": child,
            "size": len(store.blob_bytes.get(child, b"x" * 100)),
            "platform": {"os": "linux", "architecture": arch},
        }
        for child, arch in zip(children, arches, strict=False)
    ]
    body = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": entries})
    digest = store.put_blob(body.encode())
    store.link_revision(repo, digest)
    store.link_tag(repo, tag, digest)
    return digest


def base(store: MemStore) -> dict[str, Built]:
    """Three sound images sharing a base layer, in two repositories."""
    shared = b"base layer"
    return {
        "a": image(store, "org/a", "v1", [shared, b"a only"]),
        "b": image(store, "org/b", "v1", [shared, b"b only"], media_type=DOCKER_MANIFEST),
        "b2": image(store, "org/b", "v2", [shared, b"b2 only"]),
    }


def remove(store: MemStore, rel: str) -> None:
    del store.files[rel]


Build = Callable[[MemStore], object]


@dataclass(frozen=True)
class Case:
    name: str
    build: Build
    broken: set[str]
    codes: set[str]
    sparse: bool = False


def _shared_layer_missing(s: MemStore) -> None:
    built = base(s)
    del s.blob_bytes[built["a"].layers[0]]


def _config_missing(s: MemStore) -> None:
    del s.blob_bytes[base(s)["b"].config]


def _layer_link_missing(s: MemStore) -> None:
    built = base(s)
    remove(s, layout.layer_link("org/b", built["b2"].layers[1]))


def _shared_layer_link_missing(s: MemStore) -> None:
    built = base(s)
    remove(s, layout.layer_link("org/b", built["b"].layers[0]))  # both tags of org/b


def _revision_missing(s: MemStore) -> None:
    remove(s, layout.revision_link("org/a", base(s)["a"].manifest))


def _legacy_layers_link_for_manifest(s: MemStore) -> None:
    built = base(s)
    remove(s, layout.revision_link("org/a", built["a"].manifest))
    s.link_layer("org/a", built["a"].manifest)  # where distribution 2.1.0 put it


def _manifest_missing(s: MemStore) -> None:
    del s.blob_bytes[base(s)["b2"].manifest]


def _manifest_corrupt(s: MemStore) -> None:
    built = base(s)
    s.blob_bytes[built["a"].manifest] += b" "  # parses, but no longer hashes to its name


def _layer_truncated(s: MemStore) -> None:
    built = base(s)
    s.blob_bytes[built["a"].layers[1]] = b"a on"


def _tag_link_missing(s: MemStore) -> None:
    base(s)
    remove(s, layout.tag_link("org/b", "v2"))


def _tag_link_garbage(s: MemStore) -> None:
    base(s)
    s.files[layout.tag_link("org/a", "v1")] = b"sha256:not-hex"


def _tag_link_wrong_digest_ok(s: MemStore) -> None:
    # The tag's current link may name any manifest the repository holds.
    built = base(s)
    s.link_tag("org/b", "v1", built["b2"].manifest)


def _revision_link_names_other(s: MemStore) -> None:
    built = base(s)
    s.files[layout.revision_link("org/a", built["a"].manifest)] = built["b"].manifest.encode()


def _unreadable_link(s: MemStore) -> None:
    base(s)
    s.unreadable.add(layout.tag_link("org/a", "v1"))


def _unreadable_blob(s: MemStore) -> None:
    s.unreadable.add(base(s)["a"].layers[1])


def _index_complete(s: MemStore) -> None:
    base(s)
    kids = [image(s, "org/multi", None, [f"{a}".encode()], platform=a).manifest for a in "xyz"]
    index(s, "org/multi", "v1", kids, media_type=DOCKER_LIST)


def _index_child_absent(s: MemStore) -> None:
    base(s)
    kids = [image(s, "org/multi", None, [f"{a}".encode()], platform=a).manifest for a in "xy"]
    index(s, "org/multi", "v1", [*kids, sha256_digest(b"never mirrored")])


def _index_child_blob_without_link(s: MemStore) -> None:
    base(s)
    kids = [image(s, "org/multi", None, [f"{a}".encode()], platform=a).manifest for a in "xy"]
    remove(s, layout.revision_link("org/multi", kids[1]))
    index(s, "org/multi", "v1", kids)


def _index_child_broken(s: MemStore) -> None:
    base(s)
    kids = [image(s, "org/multi", None, [f"{a}".encode()], platform=a) for a in "xy"]
    del s.blob_bytes[kids[1].layers[0]]
    index(s, "org/multi", "v1", [k.manifest for k in kids])


def _index_nothing_present(s: MemStore) -> None:
    base(s)
    index(s, "org/multi", "v1", [sha256_digest(b"one"), sha256_digest(b"two")])


def _index_child_size_wrong(s: MemStore) -> None:
    base(s)
    kid = image(s, "org/multi", None, [b"x"]).manifest
    body = {"schemaVersion": 2, "manifests": [{"digest": kid, "size": 1}]}  # no mediaType
    digest = s.put_blob(json.dumps(body).encode())
    s.link_revision("org/multi", digest)
    s.link_tag("org/multi", "v1", digest)


def _orphan_broken(s: MemStore) -> None:
    base(s)
    old = image(s, "org/a", None, [b"old layer"])  # an earlier manifest, tag moved on
    del s.blob_bytes[old.layers[0]]


def _orphan_index_children_not_listed(s: MemStore) -> None:
    base(s)
    kids = [image(s, "org/multi", None, [f"{a}".encode()], platform=a).manifest for a in "xy"]
    index(s, "org/multi", "old", kids)
    for rel in [r for r in s.files if "/tags/old/" in r]:  # the tag is gone, not broken
        remove(s, rel)
    del s.blob_bytes[kids[0]]


def _foreign_layer(s: MemStore) -> None:
    base(s)
    body = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"digest": s.put_blob(b"{}"), "size": 2},
        "layers": [{"digest": sha256_digest(b"win"), "size": 3, "urls": ["https://example.com/l"]}],
    }
    s.link_layer("org/win", sha256_digest(b"{}"))
    digest = s.put_blob(json.dumps(body).encode())
    s.link_revision("org/win", digest)
    s.link_tag("org/win", "v1", digest)


def _bad_revision_name(s: MemStore) -> None:
    base(s)
    s.files["repositories/org/a/_manifests/revisions/sha256/NOT-HEX/link"] = b"x"


def _repository_nested_in_repository(s: MemStore) -> None:
    base(s)
    image(s, "org/a/nested", "v1", [b"nested"])


def _nested_index_too_deep(s: MemStore) -> None:
    base(s)
    child = image(s, "org/deep", None, [b"leaf"]).manifest
    for level in range(10):
        body = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"digest": child, "size": len(s.blob_bytes[child])}],
        }
        child = s.put_blob(json.dumps(body).encode() + b" " * level)
        s.link_revision("org/deep", child)
    s.link_tag("org/deep", "v1", child)


def _descriptor_bad_shapes(s: MemStore) -> None:
    base(s)
    for tag, layer in [
        ("negative", {"digest": sha256_digest(b"x"), "size": -1}),
        ("md5", {"digest": "md5:abc", "size": 1}),
        ("bool", {"digest": sha256_digest(b"x"), "size": True}),
        ("string", "sha256:abc"),
    ]:
        body = {
            "schemaVersion": 2,
            "config": {"digest": sha256_digest(b"c"), "size": 1},
            "layers": [layer],
        }
        digest = s.put_blob(json.dumps(body).encode())
        s.link_revision("org/shape", digest)
        s.link_tag("org/shape", tag, digest)


ALL = {"org/a:v1", "org/b:v1", "org/b:v2"}
CASES = [
    Case("sound", base, set(), set()),
    Case("shared layer missing", _shared_layer_missing, ALL, {"blob-missing"}),
    Case("config missing", _config_missing, {"org/b:v1"}, {"blob-missing"}),
    Case("_layers link missing", _layer_link_missing, {"org/b:v2"}, {"blob-not-linked"}),
    Case(
        "shared _layers link missing",
        _shared_layer_link_missing,
        {"org/b:v1", "org/b:v2"},
        {"blob-not-linked"},
    ),
    Case("revision link missing", _revision_missing, {"org/a:v1"}, {"manifest-not-linked"}),
    Case("legacy manifest link in _layers", _legacy_layers_link_for_manifest, set(), set()),
    Case("manifest blob missing", _manifest_missing, {"org/b:v2"}, {"blob-missing"}),
    Case("manifest corrupt", _manifest_corrupt, {"org/a:v1"}, {"digest-mismatch"}),
    Case("layer truncated", _layer_truncated, {"org/a:v1"}, {"size-mismatch"}),
    Case("tag link missing", _tag_link_missing, {"org/b:v2"}, {"tag-link-missing"}),
    Case("tag link garbage", _tag_link_garbage, {"org/a:v1"}, {"link-garbage"}),
    Case("tag names another revision", _tag_link_wrong_digest_ok, set(), set()),
    Case(
        "revision link names another digest",
        _revision_link_names_other,
        {"org/a:v1"},
        {"link-mismatch"},
    ),
    Case("unreadable link", _unreadable_link, {"org/a:v1"}, {"link-unreadable"}),
    Case("unreadable blob", _unreadable_blob, {"org/a:v1"}, {"blob-unreadable"}),
    Case("complete Docker list", _index_complete, set(), set()),
    Case("absent child, strict", _index_child_absent, {"org/multi:v1"}, {"child-missing"}),
    Case("absent child, sparse", _index_child_absent, set(), {"child-absent-sparse"}, True),
    Case(
        "child blob without link, sparse",
        _index_child_blob_without_link,
        {"org/multi:v1"},
        {"child-unlinked"},
        True,
    ),
    Case("child broken, sparse", _index_child_broken, {"org/multi:v1"}, {"blob-missing"}, True),
    Case(
        "no child present, sparse",
        _index_nothing_present,
        {"org/multi:v1"},
        {"index-nothing-present"},
        True,
    ),
    Case("child size wrong", _index_child_size_wrong, {"org/multi:v1"}, {"size-mismatch"}),
    Case("broken untagged revision", _orphan_broken, {"org/a@*"}, {"blob-missing"}),
    Case(
        "untagged index's children",
        _orphan_index_children_not_listed,
        {"org/multi@*"},
        {"blob-missing"},
    ),
    Case("foreign layer", _foreign_layer, set(), {"foreign-layer"}),
    Case("revision folder not a digest", _bad_revision_name, set(), {"revision-name"}),
    Case("repository inside a repository", _repository_nested_in_repository, set(), set()),
    Case("indexes nested too deep", _nested_index_too_deep, {"org/deep:v1"}, {"index-too-deep"}),
    Case(
        "descriptors of bad shape",
        _descriptor_bad_shapes,
        {"org/shape:negative", "org/shape:md5", "org/shape:bool", "org/shape:string"},
        {"manifest-invalid"},
    ),
]


def run(case: Case) -> tuple[MemStore, RegistryResult]:
    store = MemStore()
    case.build(store)
    return store, check_registry(store, Policy(sparse_index=case.sparse))


def broken_names(result: RegistryResult) -> set[str]:
    """Broken images, with untagged ones as `repo@*` (their digests vary by case)."""
    return {name.split("@")[0] + "@*" if "@" in name else name for name in result.broken()}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_registry_checker(case: Case) -> None:
    store, result = run(case)
    assert broken_names(result) == case.broken
    assert {p.code.value for p in result.problems.values()} == case.codes
    for problem in result.problems.values():
        assert problem.message and problem.path, problem
    listed = {f"{repo}:{tag}" for repo in store.repositories() for tag in store.tags(repo)}
    assert listed <= result.images.keys()


def test_a_missing_blob_is_one_problem_naming_every_image() -> None:
    _, result = run(CASES[1])
    (problem,) = result.problems.values()
    shared = base(MemStore())["a"].layers[0]
    assert problem.digest == shared and problem.path == layout.blob_data(shared)
    section = build_section("registry", "mem", (), result)
    (finding,) = section.findings
    assert set(finding.images) == ALL
    assert all(not image.ok and image.findings == (0,) for image in section.images)


def test_check_images_checks_only_those_named() -> None:
    store = MemStore()
    built = base(store)
    del store.blob_bytes[built["b"].config]
    result = check_images(store, Policy(sparse_index=False), [("org/a", "v1"), ("org/x", "v9")])
    assert set(result.images) == {"org/a:v1", "org/x:v9"}
    assert result.broken() == {"org/x:v9"}  # the absent tag; org/b is not looked at


def test_memoization_stats_a_shared_blob_once() -> None:
    store = MemStore()
    base(store)
    calls: list[str] = []
    original = store.blob_size

    def counting(digest: str) -> int | None:
        calls.append(digest)
        return original(digest)

    store.blob_size = counting  # type: ignore[method-assign]
    result = check_registry(store, Policy(sparse_index=False))
    assert len(calls) == len(set(calls)) == result.blobs_checked


def test_deep_hashes_mark_the_images_using_a_corrupt_blob() -> None:
    store = MemStore()
    built = base(store)
    result = check_registry(store, Policy(sparse_index=False, track_blobs=True))
    shared, unused = built["a"].layers[0], sha256_digest(b"nobody uses this")
    hashes = {
        shared: HashOutcome("0" * 64, 10),
        built["a"].layers[1]: HashOutcome(built["a"].layers[1][7:], 6),
        unused: HashOutcome("1" * 64, 3),
        built["b"].config: HashOutcome(None, 0, "Input/output error"),
    }
    apply_hashes(result, hashes, layout.blob_data)
    assert result.broken() == ALL
    codes = sorted(p.code.value for p in result.problems.values())
    assert codes == ["blob-unreadable", "digest-mismatch", "digest-mismatch"]
    section = build_section("registry", "mem", (), result)
    unused_finding = [f for f in section.findings if f.problem.digest == unused]
    assert unused_finding and unused_finding[0].images == () and not section.ok


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b'{"schemaVersion":2,"mediaType":"%s","manifests":[]}' % DOCKER_LIST.encode(), Kind.INDEX),
        (b'{"schemaVersion":2,"manifests":[]}', Kind.INDEX),
        (
            b'{"schemaVersion":2,"config":{"digest":"sha256:%s","size":1},"layers":[]}' % b"a" * 1,
            Kind.MANIFEST,
        ),
    ],
)
def test_parse_manifest_kinds(data: bytes, kind: Kind) -> None:
    if b"sha256:a" in data:
        data = data.replace(b"sha256:a", b"sha256:" + b"a" * 64)
    assert parse_manifest(data).kind is kind


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"null",
        b"[]",
        b'"x"',
        b'{"schemaVersion":"2"}',
        b'{"schemaVersion":2,"mediaType":7}',
        b"\xff",
    ],
)
def test_parse_manifest_refuses_what_is_not_a_manifest(data: bytes) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(data)
