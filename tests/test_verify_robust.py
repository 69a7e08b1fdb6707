"""Hostile trees: every oddity is reported, by path and digest, and never a traceback.

Trees are written by hand (a registry storage at ROOT/docker/registry/v2, where sparse
indexes are not allowed) so that each test holds exactly the damage it names; the CLI
runs in a child process, as a user runs it, and must exit 1.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path

import pytest

from syncd.sample import TINY, generate_month
from syncd.verify import VerifyOptions, verify_root
from tests.scanutil import run_cli

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def fake_digest(letter: str) -> str:
    return "sha256:" + letter * 64


class Tree:
    """Writes registry storage files one by one, as distribution lays them out."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.v2 = root / "docker" / "registry" / "v2"

    def write(self, rel: str, data: bytes) -> Path:
        path = self.v2 / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def blob(self, data: bytes, digest: str | None = None) -> str:
        digest = digest or sha(data)
        self.write(f"blobs/sha256/{digest[7:9]}/{digest[7:]}/data", data)
        return digest

    def link(self, repo: str, kind: str, digest: str, text: bytes | None = None) -> Path:
        return self.write(
            f"repositories/{repo}/{kind}/sha256/{digest[7:]}/link", text or digest.encode()
        )

    def tag(self, repo: str, tag: str, digest: str, text: bytes | None = None) -> Path:
        return self.write(
            f"repositories/{repo}/_manifests/tags/{tag}/current/link", text or digest.encode()
        )

    def manifest(self, repo: str, data: bytes, digest: str | None = None) -> str:
        digest = self.blob(data, digest)
        self.link(repo, "_manifests/revisions", digest)
        return digest

    def image(self, repo: str, tag: str) -> str:
        """A sound single-platform image; returns its manifest digest."""
        config = self.blob(b'{"architecture":"amd64","os":"linux"}')
        layer = self.blob(b"layer bytes of " + repo.encode())
        for digest in (config, layer):
            self.link(repo, "_layers", digest)
        body = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 37},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer, "size": 15 + len(repo)}],
        }
        digest = self.manifest(repo, json.dumps(body).encode())
        self.tag(repo, tag, digest)
        return digest


def index_naming(*children: str) -> bytes:
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_INDEX, "digest": c, "size": 200} for c in children],
    }
    return json.dumps(body).encode()


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    built = Tree(tmp_path / "root")
    built.image("good/app", "v1")  # a sound neighbour, which must stay ok
    return built


def verify_cli(tree: Tree, *extra: str) -> tuple[int, str, dict[str, object]]:
    """Exit code, human output and JSON output; neither run may print a traceback."""
    human = run_cli("verify", str(tree.root), *extra)
    as_json = run_cli("verify", "--json", str(tree.root), *extra)
    for done in (human, as_json):
        assert "Traceback" not in done.stderr + done.stdout, done.stderr
    assert human.returncode == as_json.returncode
    return human.returncode, human.stdout, json.loads(as_json.stdout)


def problems(report: dict[str, object]) -> list[dict[str, object]]:
    sections = report["sections"]
    assert isinstance(sections, list)
    return [p for s in sections for p in s["problems"]]


def images(report: dict[str, object]) -> dict[str, bool]:
    sections = report["sections"]
    assert isinstance(sections, list)
    return {i["image"]: i["ok"] for s in sections for i in s["images"]}


def assert_reported(tree: Tree, code: str, *named: str) -> dict[str, object]:
    status, text, report = verify_cli(tree)
    assert status == 1, text
    found = [p for p in problems(report) if p["code"] == code]
    assert found, f"no {code} problem in:\n{text}"
    for name in named:
        assert any(name in str(p["message"]) + str(p.get("path", "")) for p in found), text
        assert name in text
    assert images(report)["good/app:v1"] is True
    return report


def test_broken_json_in_a_manifest(tree: Tree) -> None:
    digest = tree.manifest("bad/json", b'{"schemaVersion": 2, "layers": [')
    tree.tag("bad/json", "v1", digest)
    report = assert_reported(tree, "manifest-invalid", digest)
    assert images(report)["bad/json:v1"] is False


def test_deeply_nested_json_is_reported_not_raised(tree: Tree) -> None:
    digest = tree.manifest("bad/nested", b"[" * 100_000 + b"]" * 100_000)
    tree.tag("bad/nested", "v1", digest)
    assert_reported(tree, "manifest-invalid", digest)


@pytest.mark.parametrize(
    "media_type",
    ["application/vnd.oci.artifact.manifest.v1+json", "text/plain", ""],
    ids=["oci-artifact", "text", "empty-means-oci"],
)
def test_unknown_media_type_is_named(tree: Tree, media_type: str) -> None:
    body = {"schemaVersion": 2, "mediaType": media_type, "blobs": []}
    digest = tree.manifest("bad/type", json.dumps(body).encode())
    tree.tag("bad/type", "v1", digest)
    if media_type:
        assert_reported(tree, "media-type-unknown", digest, media_type)
    else:  # no mediaType: an OCI manifest, as distribution reads it; it lacks config
        assert_reported(tree, "manifest-invalid", digest)


def test_schema_one_manifest_is_reported(tree: Tree) -> None:
    digest = tree.manifest("bad/schema1", b'{"schemaVersion": 1, "fsLayers": []}')
    tree.tag("bad/schema1", "v1", digest)
    assert_reported(tree, "manifest-invalid", digest)


@pytest.mark.parametrize(
    "garbage",
    [b"", b"sha256:zz", b"\xff\xfe\x00binary", b"x" * 100_000],
    ids=["empty", "short", "binary", "huge"],
)
def test_a_tag_link_with_garbage(tree: Tree, garbage: bytes) -> None:
    link = tree.tag("good/app", "broken", "", garbage)
    report = assert_reported(tree, "link-garbage", str(link))
    assert images(report)["good/app:broken"] is False


def test_a_link_with_a_trailing_newline_is_garbage_to_a_registry(tree: Tree) -> None:
    digest = tree.image("other/app", "v1")
    link = tree.tag("other/app", "v1", digest, digest.encode() + b"\n")
    assert_reported(tree, "link-garbage", str(link))


def test_garbage_revision_and_layer_links(tree: Tree) -> None:
    digest = tree.image("other/app", "v1")
    revision = tree.link("other/app", "_manifests/revisions", digest, b"garbage")
    assert_reported(tree, "link-garbage", str(revision))
    tree.link("other/app", "_manifests/revisions", digest)
    body = json.loads((tree.v2 / f"blobs/sha256/{digest[7:9]}/{digest[7:]}/data").read_bytes())
    layer = body["layers"][0]["digest"]
    layers = tree.link("other/app", "_layers", layer, b"sha256:" + b"A" * 64)
    assert_reported(tree, "link-garbage", str(layers))


def test_a_link_naming_another_digest(tree: Tree) -> None:
    digest = tree.image("other/app", "v1")
    wrong = fake_digest("c")
    link = tree.link("other/app", "_manifests/revisions", digest, wrong.encode())
    assert_reported(tree, "link-mismatch", str(link), wrong)


def test_a_directory_where_a_link_belongs(tree: Tree) -> None:
    link = tree.v2 / "repositories/good/app/_manifests/tags/dir/current/link"
    link.mkdir(parents=True)
    assert_reported(tree, "link-unreadable", str(link))


def test_a_directory_where_a_blob_belongs(tree: Tree) -> None:
    digest = tree.image("other/app", "v1")
    data = tree.v2 / f"blobs/sha256/{digest[7:9]}/{digest[7:]}/data"
    data.unlink()
    data.mkdir()
    assert_reported(tree, "blob-unreadable", digest)


def test_an_index_naming_itself(tree: Tree) -> None:
    # Content-addressed storage cannot hold a loop honestly: the blob sits under a
    # digest that is not its own, which is reported too.
    looped = fake_digest("a")
    tree.manifest("bad/loop", index_naming(looped), looped)
    tree.tag("bad/loop", "v1", looped)
    report = assert_reported(tree, "index-loop", looped)
    assert any(p["code"] == "digest-mismatch" for p in problems(report))


def test_indexes_looping_through_their_children(tree: Tree) -> None:
    first, second = fake_digest("a"), fake_digest("b")
    tree.manifest("bad/loop", index_naming(second), first)
    tree.manifest("bad/loop", index_naming(first), second)
    tree.tag("bad/loop", "v1", first)
    tree.tag("bad/loop", "v2", second)
    report = assert_reported(tree, "index-loop", first, second)
    loops = [p for p in problems(report) if p["code"] == "index-loop"]
    assert len(loops) == 1, "one loop, met from two tags, is one problem"
    assert images(report)["bad/loop:v1"] is False and images(report)["bad/loop:v2"] is False


def test_a_tag_directory_without_current_link(tree: Tree) -> None:
    digest = tree.image("other/app", "v1")
    tree.write(
        f"repositories/other/app/_manifests/tags/v2/index/sha256/{digest[7:]}/link", digest.encode()
    )
    report = assert_reported(tree, "tag-link-missing", "other/app:v2", "tags/v2/current/link")
    assert images(report) == {"good/app:v1": True, "other/app:v1": True, "other/app:v2": False}


def test_a_ten_megabyte_garbage_manifest_is_not_read(tree: Tree) -> None:
    garbage = random.Random(7).randbytes(10 << 20)
    digest = tree.manifest("bad/huge", garbage)
    tree.tag("bad/huge", "v1", digest)
    assert_reported(tree, "manifest-too-large", digest)


def test_a_garbage_archive_and_a_lone_working_dir(tmp_path: Path) -> None:
    content = tmp_path / "root" / "content"
    (content / "working-dir").mkdir(parents=True)
    (content / "mirror_000001.tar").write_bytes(random.Random(3).randbytes(5000))
    (content / "mirror_1.tar").write_bytes(b"")
    done = run_cli("verify", str(tmp_path / "root"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "mirror_000001.tar: not a tar archive" in done.stdout
    assert "mirror_1.tar does not match" in done.stdout


def test_nothing_to_verify_is_a_usage_error(tmp_path: Path) -> None:
    done = run_cli("verify", str(tmp_path))
    assert done.returncode == 2 and "nothing to verify" in done.stderr
    done = run_cli("verify", str(tmp_path / "missing"))
    assert done.returncode == 2 and "not a directory" in done.stderr
    done = run_cli("verify", "--no-such-flag", str(tmp_path))
    assert done.returncode == 2


def test_random_damage_to_a_real_tree_never_raises(tmp_path: Path) -> None:
    """Garbage, truncation, empty files and folders where files were, at random."""
    pristine = tmp_path / "pristine"
    generate_month(pristine, 1, TINY, via_registry=False)
    files = sorted(p for p in pristine.rglob("*") if p.is_file())
    rng = random.Random(11)
    for round_number in range(25):
        root = tmp_path / f"round{round_number}"
        shutil.copytree(pristine, root, symlinks=True)
        for victim in rng.sample(files, 6):
            damage(root / victim.relative_to(pristine), rng)
        report = verify_root(root, VerifyOptions(deep=round_number % 2 == 0, workers=2))
        assert report.lines() and json.dumps(report.as_json())


def damage(path: Path, rng: random.Random) -> None:
    choice = rng.randrange(4)
    if choice == 0:
        path.write_bytes(rng.randbytes(rng.randrange(1, 300)))
    elif choice == 1:
        os.truncate(path, path.stat().st_size // 3)
    elif choice == 2:
        path.write_bytes(b"")
    else:
        path.unlink()
        path.mkdir()
