"""verify against the real oracle: docker-registry serving the tree, skopeo pulling it.

Generated TINY trees (months 1 and 2, direct mode) are mutated, one mutation per fresh
copy; each mutation must be detected and named (path or digest), and for registry
mutations the images verify calls broken must be exactly those skopeo fails to pull.

What "pull" means for the oracle: every tag (skopeo picks amd64 of an index), plus every
other child of an index that the pristine tree holds, by digest (skopeo would not touch
it otherwise, but an upload of the index needs it), plus every untagged revision. A
sparse index's absent platforms are never pulled: the cache allows them.

Content folders are held to the disk-to-mirror oracle (reliability/d2m.py): the
archives picked and extracted as unarchive.go does into a fresh copy of the far cache,
the images derived from the extracted working-dir and the image set config, each copied
with skopeo from docker-registry serving the result. verify's verdict must be the
oracle's, and the images it calls broken must be those the oracle fails to copy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from reliability.d2m import Verdict, run_oracle
from syncd.sample import TINY, Registry, generate_month, pull_all
from syncd.sample.regstore import V2, Storage
from syncd.sample.tarformat import END_OF_ARCHIVE, member_header, padding
from syncd.verify import VerifyOptions, VerifyReport, verify_root
from syncd.verify.report import Section

CACHE = Path(".oc-mirror/.cache")
GRAPH = "openshift/graph-image:latest"
_ARCHIVE = re.compile(r"mirror_\d{6}\.tar")

pytestmark = pytest.mark.needs_registry


# -- generated trees, shared by the module -------------------------------------------


@pytest.fixture(scope="module")
def months(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    base = tmp_path_factory.mktemp("months")
    generate_month(base / "m1", 1, TINY, via_registry=False)
    shutil.copytree(base / "m1", base / "m2", symlinks=True)
    generate_month(base / "m2", 2, TINY, via_registry=False)
    return {1: base / "m1", 2: base / "m2"}


@pytest.fixture(scope="module")
def units(months: dict[int, Path]) -> dict[int, dict[str, list[str]]]:
    return {month: pull_units(Storage.under(root / CACHE)) for month, root in months.items()}


def fresh(months: dict[int, Path], month: int, target: Path) -> Path:
    shutil.copytree(months[month], target, symlinks=True)
    return target


# -- the oracle ----------------------------------------------------------------------


def pull_units(storage: Storage) -> dict[str, list[str]]:
    """Each tag and untagged revision of a pristine tree, with the references to pull."""
    found: dict[str, list[str]] = {}
    reached: set[tuple[str, str]] = set()
    for repo in storage.repositories():
        for tag, digest in storage.tags(repo).items():
            found[f"{repo}:{tag}"] = [f"{repo}:{tag}", *_children(storage, repo, digest, reached)]
    for repo in storage.repositories():
        for digest in storage.revisions(repo):
            if (repo, digest) not in reached:
                name = f"{repo}@{digest}"
                found[name] = [name, *_children(storage, repo, digest, reached)]
    return found


def _children(storage: Storage, repo: str, digest: str, reached: set[tuple[str, str]]) -> list[str]:
    reached.add((repo, digest))
    body = json.loads(storage.read_blob(digest))
    refs = []
    for child in body.get("manifests", []):
        if child["digest"] in storage.revisions(repo):
            reached.add((repo, child["digest"]))
            if child["platform"]["architecture"] != "amd64":  # the tag pull covers amd64
                refs.append(f"{repo}@{child['digest']}")
    return refs


def oracle_broken(storage_root: Path, pulls: dict[str, list[str]]) -> set[str]:
    """The units of which skopeo fails to pull something, from docker-registry."""
    with Registry(storage_root) as registry:
        refs = sorted({ref for unit in pulls.values() for ref in unit})
        results = pull_all(registry, refs)
    return {name for name, unit in pulls.items() if not all(results[ref].ok for ref in unit)}


def extract_like_disk_to_mirror(content: Path, cache: Path) -> bool:
    """docker/registry/v2 members of every mirror_NNNNNN.tar, in name order, overwriting.

    False when an archive cannot be read to its end: disk-to-mirror stops there.
    """
    for archive in sorted(p for p in content.iterdir() if _ARCHIVE.fullmatch(p.name)):
        try:
            with tarfile.open(archive) as tar:
                for member in tar:
                    if member.name.startswith(V2.as_posix()):
                        tar.extract(member, cache, filter="data")
        except (tarfile.TarError, EOFError, OSError):
            return False
    return True


# -- verify's side -------------------------------------------------------------------


def run_verify(root: Path, *, deep: bool = False, config: Path | None = None) -> VerifyReport:
    """A tree with a content folder is judged as its upload; the cache alone, whole."""
    return verify_root(root, VerifyOptions(deep=deep, workers=2, config=config))


def run_verify_cache(root: Path, *, deep: bool = False) -> VerifyReport:
    return run_verify(root / CACHE, deep=deep)


def section(report: VerifyReport, kind: str) -> Section:
    (found,) = [s for s in report.sections if s.kind == kind]
    return found


def broken_by_chain(found: Section) -> set[str]:
    """Images broken through their own chain (not by a finding that stops the whole run)."""
    return {
        image.name
        for image in found.images
        if any(
            found.findings[n].problem.is_error and not found.findings[n].whole
            for n in image.findings
        )
    }


def messages(found: Section) -> str:
    return "\n".join(f.problem.message + " " + f.problem.path for f in found.findings)


def assert_parity(root: Path, pulls: dict[str, list[str]], *, deep: bool = False) -> set[str]:
    registry = section(run_verify_cache(root, deep=deep), "registry")
    said = broken_by_chain(registry) & pulls.keys()
    truth = oracle_broken(root / CACHE, pulls)
    assert said == truth, f"verify says {sorted(said)}, skopeo fails {sorted(truth)}"
    return said


# -- pristine trees --------------------------------------------------------------------


@pytest.mark.parametrize("month", [1, 2])
def test_unmutated_tree_passes_verify_and_the_oracle(
    months: dict[int, Path], units: dict[int, dict[str, list[str]]], month: int
) -> None:
    report = run_verify(months[month], deep=True)
    assert report.ok, "\n".join(report.lines())
    assert {s.kind for s in report.sections} == {"content"}  # the cache judged through it
    cache = run_verify_cache(months[month], deep=True)
    assert cache.ok and section(cache, "registry").images, "the tags were found"
    assert oracle_broken(months[month] / CACHE, units[month]) == set()


# -- registry mutations ------------------------------------------------------------------


@dataclass(frozen=True)
class Images:
    """Facts about a pristine tree that mutations aim at."""

    storage: Storage

    def manifest(self, image: str) -> dict[str, object]:
        repo, tag = image.rsplit(":", 1)
        body: dict[str, object] = json.loads(self.storage.read_blob(self.storage.tags(repo)[tag]))
        return body

    def top(self, image: str) -> str:
        repo, tag = image.rsplit(":", 1)
        return self.storage.tags(repo)[tag]

    def child(self, image: str, arch: str) -> str:
        children = self.manifest(image)["manifests"]
        assert isinstance(children, list)
        (found,) = [c["digest"] for c in children if c["platform"]["architecture"] == arch]
        return str(found)

    def child_manifest(self, image: str, arch: str) -> dict[str, object]:
        body: dict[str, object] = json.loads(self.storage.read_blob(self.child(image, arch)))
        return body

    def layers(self, body: dict[str, object]) -> list[str]:
        layers = body["layers"]
        assert isinstance(layers, list)
        return [str(layer["digest"]) for layer in layers]

    def config(self, body: dict[str, object]) -> str:
        config = body["config"]
        assert isinstance(config, dict)
        return str(config["digest"])


def blob_path(root: Path, digest: str) -> Path:
    return Storage.under(root / CACHE).blob_path(digest)


def repo_path(root: Path, repo: str) -> Path:
    return Storage.under(root / CACHE).repo_dir(repo)


Mutation = Callable[[Path, Images], str]  # mutates the root; returns what must be named


def delete_unique_layer(root: Path, facts: Images) -> str:
    digest = facts.layers(facts.manifest(GRAPH))[-1]  # the graph data: only this image's
    blob_path(root, digest).unlink()
    return digest


def delete_shared_base_layer(root: Path, facts: Images) -> str:
    digest = facts.layers(facts.manifest(GRAPH))[0]  # base/amd64/0: under most images
    blob_path(root, digest).unlink()
    return digest


def delete_config(root: Path, facts: Images) -> str:
    digest = facts.config(facts.manifest("openshift/release-images:4.18.1-x86_64"))
    blob_path(root, digest).unlink()
    return digest


def delete_child_manifest(root: Path, facts: Images) -> str:
    digest = facts.child("redhat/redhat-operator-index:v4.18", "arm64")
    blob_path(root, digest).unlink()
    return digest


def delete_layers_link(root: Path, facts: Images) -> str:
    image = "openshift/release:4.18.1-x86_64-cli"
    digest = facts.layers(facts.manifest(image))[-1]
    link = repo_path(root, "openshift/release") / "_layers" / "sha256" / digest[7:] / "link"
    link.unlink()
    return str(link)


def delete_revision_link(root: Path, facts: Images) -> str:
    digest = facts.top("additional/ubi9/ubi-minimal:9.5")
    revisions = repo_path(root, "additional/ubi9/ubi-minimal") / "_manifests" / "revisions"
    link = revisions / "sha256" / digest[7:] / "link"
    link.unlink()
    return str(link)


def delete_child_revision_link(root: Path, facts: Images) -> str:
    digest = facts.child("additional/ubi9/ubi:9.5", "arm64")
    revisions = repo_path(root, "additional/ubi9/ubi") / "_manifests" / "revisions"
    link = revisions / "sha256" / digest[7:] / "link"
    link.unlink()
    return str(link)


def delete_tag_link(root: Path, facts: Images) -> str:
    tags = repo_path(root, "rhbk/keycloak-operator-bundle") / "_manifests" / "tags"
    link = tags / "26.0.0" / "current" / "link"
    link.unlink()
    return str(link)


def truncate_child_layer(root: Path, facts: Images) -> str:
    digest = facts.layers(facts.child_manifest("additional/ubi9/ubi:9.5", "arm64"))[-1]
    path = blob_path(root, digest)
    os.truncate(path, path.stat().st_size // 2)
    return digest


REGISTRY_MUTATIONS: list[tuple[str, int, Mutation]] = [
    ("delete a layer blob of one image", 1, delete_unique_layer),
    ("delete a base layer blob most images share", 2, delete_shared_base_layer),
    ("delete a config blob", 1, delete_config),
    ("delete an index child's manifest blob", 1, delete_child_manifest),
    ("delete a _layers link", 1, delete_layers_link),
    ("delete a revision link", 2, delete_revision_link),
    ("delete an index child's revision link", 1, delete_child_revision_link),
    ("delete a tag's current/link", 1, delete_tag_link),
    ("truncate a layer of an arm64 child", 1, truncate_child_layer),
]


@pytest.mark.parametrize(
    ("month", "mutate"),
    [(month, mutate) for _, month, mutate in REGISTRY_MUTATIONS],
    ids=[name for name, _, _ in REGISTRY_MUTATIONS],
)
def test_registry_mutation_is_named_and_breaks_what_skopeo_cannot_pull(
    months: dict[int, Path],
    units: dict[int, dict[str, list[str]]],
    tmp_path: Path,
    month: int,
    mutate: Mutation,
) -> None:
    root = fresh(months, month, tmp_path / "root")
    named = mutate(root, Images(Storage.under(months[month] / CACHE)))
    report = run_verify_cache(root)
    assert not report.ok
    registry = section(report, "registry")
    assert named in messages(registry), messages(registry)
    broken = assert_parity(root, units[month])
    assert broken, "the mutation breaks something"
    # Every problem names the images it breaks, and each such image is reported broken.
    for finding in registry.findings:
        if finding.problem.is_error and named in finding.problem.message + finding.problem.path:
            assert set(finding.images) & broken


def test_a_flipped_byte_is_found_by_deep_only(
    months: dict[int, Path], units: dict[int, dict[str, list[str]]], tmp_path: Path
) -> None:
    root = fresh(months, 1, tmp_path / "root")
    facts = Images(Storage.under(months[1] / CACHE))
    digest = facts.layers(facts.manifest("openshift/release:4.18.1-x86_64-cli"))[-1]
    path = blob_path(root, digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    # Plain verify stats layers and does not read them: a same-size change passes it.
    # That is the documented limit of a shallow check; --deep exists for this.
    assert run_verify_cache(root).ok
    report = run_verify_cache(root, deep=True)
    assert digest in messages(section(report, "registry"))
    broken = assert_parity(root, units[1], deep=True)  # skopeo checks digests on pull
    assert "openshift/release:4.18.1-x86_64-cli" in broken


# -- content folders against the disk-to-mirror oracle --------------------------------------


def config_of(root: Path) -> Path:
    """The month's image set config, as the upload is given it (-c)."""
    text = ""
    for archive in sorted((root / "content").glob("mirror_*.tar")):
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                extracted = tar.extractfile(member) if member.name.startswith("isc_") else None
                if extracted is not None:
                    text = extracted.read().decode()
    path = root.parent / f"{root.name}-isc.yaml"
    path.write_text(text)
    return path


def agree(root: Path, config: Path, *, deep: bool = False) -> tuple[Section, Verdict]:
    """verify's content section and the oracle's verdict, which must agree."""
    content = section(run_verify(root, deep=deep, config=config), "content")
    scratch = root.parent / f"{root.name}-oracle"
    scratch.mkdir()
    verdict = run_oracle(root / "content", root, config.read_text(), scratch)
    assert content.ok is verdict.ok, (verdict.failure, "\n".join(content.lines()))
    if verdict.images:  # the copies ran: the same images fail
        failed = {name for name, why in verdict.images.items() if why}
        assert broken_by_chain(content) == failed, (failed, "\n".join(content.lines()))
    return content, verdict


@pytest.mark.parametrize(
    ("month", "cache_month", "ok"),
    [(1, None, True), (1, 1, True), (2, 1, True), (2, None, False)],
    ids=["month 1 alone", "month 1 again", "month 2 over month 1's cache", "month 2 alone"],
)
def test_a_far_side_agrees_with_disk_to_mirror(
    months: dict[int, Path], tmp_path: Path, month: int, cache_month: int | None, ok: bool
) -> None:
    root = far_side(months, month, tmp_path / "far", cache_month)
    content, verdict = agree(root, config_of(root))
    assert content.ok is ok
    if not ok:  # month 2's images need month 1's base layers, which it does not carry
        assert verdict.images and any(verdict.images.values())


def test_a_dropped_first_archive_is_a_warning_when_the_cache_has_its_blobs(
    months: dict[int, Path], tmp_path: Path
) -> None:
    root = far_side(months, 1, tmp_path / "far", 1)
    config = config_of(root)
    archives = sorted((root / "content").glob("mirror_*.tar"))
    archives[0].unlink()
    content, _ = agree(root, config)
    assert content.ok  # the cache already holds what it carried
    assert any(
        f.problem.code == "archive-set-gap" and f.problem.path == str(archives[0])
        for f in content.findings
    ), messages(content)


def test_a_missing_middle_archive_without_a_cache_fails(
    months: dict[int, Path], tmp_path: Path
) -> None:
    root = far_side(months, 1, tmp_path / "far", None)
    config = config_of(root)
    (root / "content" / "mirror_000002.tar").unlink()
    content, verdict = agree(root, config)
    assert not content.ok and not verdict.ok
    assert any(f.problem.code == "archive-set-gap" for f in content.findings)


def test_a_truncated_archive_is_named_with_the_member_it_cuts(
    months: dict[int, Path], tmp_path: Path
) -> None:
    root = far_side(months, 1, tmp_path / "far", None)
    config = config_of(root)
    archive = root / "content" / "mirror_000002.tar"
    with tarfile.open(archive) as tar:
        member = max(tar.getmembers(), key=lambda m: m.size)
    os.truncate(archive, member.offset_data + member.size // 2)
    content, verdict = agree(root, config)
    (finding,) = [f for f in content.findings if f.problem.code == "archive-corrupt"]
    assert finding.problem.path == str(archive) and member.name in finding.problem.message
    assert finding.whole and set(finding.images) == {i.name for i in content.images}
    assert "extraction" in verdict.failure


def test_removing_the_graph_image_from_cache_and_archives(
    months: dict[int, Path], tmp_path: Path
) -> None:
    root = far_side(months, 1, tmp_path / "far", 1)
    config = config_of(root)
    facts = Images(Storage.under(months[1] / CACHE))
    top = facts.top(GRAPH)
    blob_path(root, top).unlink()
    rewrite_archives(root / "content", lambda name: name.endswith(f"{top[7:]}/data"))
    content, verdict = agree(root, config)
    collection = [f for f in content.findings if f.problem.code == "collection-failed"]
    assert collection and collection[0].whole and GRAPH in collection[0].problem.message
    assert "graph" in verdict.failure


def rewrite_archives(content: Path, drop: Callable[[str], bool]) -> int:
    """Rewrite every archive without the members `drop` picks, as Go writes headers."""
    removed = 0
    for archive in sorted(content.glob("mirror_*.tar")):
        kept: list[tuple[tarfile.TarInfo, bytes]] = []
        with tarfile.open(archive) as source:
            for member in source:
                extracted = source.extractfile(member)
                if drop(member.name) or extracted is None:
                    removed += 1
                    continue
                kept.append((member, extracted.read()))
        with archive.open("wb") as out:
            for member, data in kept:
                out.write(member_header(member.name, len(data), member.mode, int(member.mtime)))
                out.write(data + padding(len(data)))
            out.write(END_OF_ARCHIVE)
    return removed


def far_side(months: dict[int, Path], month: int, target: Path, cache_month: int | None) -> Path:
    """A root holding month `month`'s content and, optionally, an earlier month's cache."""
    target.mkdir()
    shutil.copytree(months[month] / "content", target / "content", symlinks=True)
    if cache_month is not None:
        shutil.copytree(months[cache_month] / CACHE, target / CACHE, symlinks=True)
    return target


def test_a_corrupt_blob_no_derived_image_uses_does_not_fail_deep(
    months: dict[int, Path], tmp_path: Path
) -> None:
    """Found by the campaign (case 40): --deep hashed every archived blob and failed on
    one that the upload never copies."""
    root = far_side(months, 1, tmp_path / "far", 1)
    config = config_of(root)
    archive = root / "content" / "mirror_000001.tar"
    name = f"{V2.as_posix()}/blobs/sha256/ab/{'ab' * 32}/data"
    raw = archive.read_bytes()[: -len(END_OF_ARCHIVE)]
    stray = b"not what its name says"
    member = member_header(name, len(stray), 0o644, 1_700_000_000) + stray + padding(len(stray))
    archive.write_bytes(raw + member + END_OF_ARCHIVE)
    content, verdict = agree(root, config, deep=True)
    assert content.ok and verdict.ok
