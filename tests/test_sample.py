"""The sample-tree generator: determinism, registry layout, archives, and the skopeo oracle.

Everything runs the real thing: generated trees are served by Debian's docker-registry
and pulled with skopeo.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from syncd.errors import UsageError
from syncd.sample import (
    MonthReport,
    SampleSpec,
    generate_month,
    list_images,
    month_time,
    pull_all,
)
from syncd.sample import command as sample_command
from syncd.sample.ocmirror import CACHE, CONTENT, history_files, read_history
from syncd.sample.regstore import V2, Storage
from syncd.sample.tarformat import member_header
from tests.conftest import RegistryFactory

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = {OCI_INDEX, DOCKER_LIST}


def make(root: Path, spec: SampleSpec, months: int, *, via_registry: bool = False) -> MonthReport:
    report = None
    for month in range(1, months + 1):
        report = generate_month(root, month, spec, via_registry=via_registry)
    assert report is not None
    return report


def listing(root: Path, *, mtimes: bool = True) -> dict[str, tuple[object, ...]]:
    """Every path under root: content hash (or "dir") and mode; mtimes when asked."""
    found: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        body: object = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        kept = (body, info.st_mode, info.st_mtime_ns) if mtimes else (body, info.st_mode)
        found[path.relative_to(root).as_posix()] = kept
    return found


def storage(root: Path) -> Storage:
    return Storage.under(root / CACHE)


def manifest(store: Storage, digest: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(store.read_blob(digest))
    return body


def members(archive: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(archive) as tar:
        return tar.getmembers()


def archived(report: MonthReport) -> list[str]:
    return [m.name for archive in report.archives for m in members(archive)]


# --- determinism -------------------------------------------------------------------


def test_same_spec_and_seed_give_identical_bytes_and_mtimes(
    tmp_path: Path, tiny_spec: SampleSpec
) -> None:
    make(tmp_path / "a", tiny_spec, 2)
    umask = os.umask(0o002)  # modes are fixed whatever the umask: archive headers hold them
    try:
        make(tmp_path / "b", tiny_spec, 2)
    finally:
        os.umask(umask)
    first = listing(tmp_path / "a")
    assert first == listing(tmp_path / "b")
    month1, month2 = (int(month_time(m).timestamp()) * 10**9 for m in (1, 2))
    assert {entry[2] for entry in first.values()} == {month1, month2}


def test_different_seed_gives_different_content(tmp_path: Path, tiny_spec: SampleSpec) -> None:
    a = make(tmp_path / "a", tiny_spec, 1)
    b = make(tmp_path / "b", tiny_spec.with_seed(2), 1)
    assert a.images == b.images
    assert not set(a.new_blobs) & set(b.new_blobs)


def test_tiny_month_one_is_small(tmp_path: Path, tiny_spec: SampleSpec) -> None:
    report = make(tmp_path / "t", tiny_spec, 1)
    total = sum(p.stat().st_size for p in (tmp_path / "t").rglob("*") if p.is_file())
    assert total <= 3 * 2**20
    assert len(report.images) == tiny_spec.images + 1  # and the rebuilt catalog's tag
    assert len(report.archives) >= 2


# --- registry layout (docs/FACTS.md, registry storage) ---------------------------------


def test_link_files_hold_a_digest_without_newline(tmp_path: Path, tiny_spec: SampleSpec) -> None:
    make(tmp_path, tiny_spec, 2)
    links = list((tmp_path / CACHE / V2 / "repositories").rglob("link"))
    assert len(links) > 50
    for link in links:
        text = link.read_text()
        assert DIGEST.fullmatch(text), link
        if link.parent.name != "current":
            assert link.parent.name == text.removeprefix("sha256:")
            assert link.parent.parent.name == "sha256"


def test_blob_paths_match_their_digests(tmp_path: Path, tiny_spec: SampleSpec) -> None:
    make(tmp_path, tiny_spec, 1)
    blobs = list((tmp_path / CACHE / V2 / "blobs" / "sha256").glob("*/*/data"))
    assert blobs
    for data in blobs:
        hexpart = data.parent.name
        assert data.parent.parent.name == hexpart[:2]
        assert hashlib.sha256(data.read_bytes()).hexdigest() == hexpart


def test_every_tag_resolves_through_its_chain(tmp_path: Path, tiny_spec: SampleSpec) -> None:
    report = make(tmp_path, tiny_spec, 2)
    store = storage(tmp_path)
    media_types: Counter[str] = Counter()
    sparse = []
    for image in report.images:
        repo, tag = image.rsplit(":", 1)
        top = store.tags(repo)[tag]
        tag_dir = store.repo_dir(repo) / "_manifests" / "tags" / tag
        assert (tag_dir / "index" / "sha256" / top.removeprefix("sha256:") / "link").is_file()
        body = manifest(store, top)
        media_types[body["mediaType"]] += 1
        assert top in store.revisions(repo)
        if body["mediaType"] in INDEX_TYPES:
            absent = _check_index(store, repo, body)
            if absent:
                sparse.append((image, absent))
        else:
            _check_manifest(store, repo, top)
    assert set(media_types) == {OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST}
    assert sparse, "no sparse index"
    assert all(absent == ["arm64", "ppc64le"] for _image, absent in sparse)


def _check_index(store: Storage, repo: str, body: dict[str, Any]) -> list[str]:
    """Check present children fully; return the architectures of absent ones."""
    absent = []
    for child in body["manifests"]:
        arch = child["platform"]["architecture"]
        if store.has_blob(child["digest"]):
            assert child["digest"] in store.revisions(repo)
            assert store.blob_path(child["digest"]).stat().st_size == child["size"]
            _check_manifest(store, repo, child["digest"])
        else:
            assert child["digest"] not in store.revisions(repo)
            absent.append(arch)
    assert "amd64" not in absent
    return sorted(absent)


def _check_manifest(store: Storage, repo: str, digest: str) -> None:
    body = manifest(store, digest)
    layers_dir = store.repo_dir(repo) / "_layers" / "sha256"
    for blob in [body["config"], *body["layers"]]:
        assert (layers_dir / blob["digest"].removeprefix("sha256:") / "link").is_file()
        assert store.blob_path(blob["digest"]).stat().st_size == blob["size"]


def test_layers_are_real_gzip_tars_matching_the_config(
    tmp_path: Path, tiny_spec: SampleSpec
) -> None:
    make(tmp_path, tiny_spec, 1)
    store = storage(tmp_path)
    top = store.tags("openshift/release-images")["4.18.1-x86_64"]
    body = manifest(store, top)
    config = json.loads(store.read_blob(body["config"]["digest"]))
    assert config["architecture"] == "amd64"
    for layer, diff_id in zip(body["layers"], config["rootfs"]["diff_ids"], strict=True):
        raw = gzip.decompress(store.read_blob(layer["digest"]))
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == diff_id
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            files = tar.getmembers()
        assert files
        assert all(m.isfile() and m.size > 0 for m in files)


def test_next_month_moves_graph_and_catalog_tags_and_shares_layers(
    tmp_path: Path, tiny_spec: SampleSpec
) -> None:
    first = make(tmp_path, tiny_spec, 1)
    store = storage(tmp_path)
    graph_1 = store.tags("openshift/graph-image")["latest"]
    catalog_1 = store.tags("redhat/redhat-operator-index")["v4.18"]
    second = generate_month(tmp_path, 2, tiny_spec, via_registry=False)
    graph_2 = store.tags("openshift/graph-image")["latest"]
    assert graph_2 != graph_1
    assert store.tags("redhat/redhat-operator-index")["v4.18"] != catalog_1
    assert set(store.revisions("openshift/graph-image")) == {graph_1, graph_2}
    index_dir = store.repo_dir("openshift/graph-image") / "_manifests/tags/latest/index/sha256"
    assert len(list(index_dir.iterdir())) == 2
    assert set(first.images) < set(second.images)
    assert "openshift/release-images:4.18.2-x86_64" in second.images
    assert any(i.startswith("additional/") and i not in first.images for i in second.images)
    old_layers = _layer_digests(store, "openshift/release:4.18.1-x86_64-cli")
    new_layers = _layer_digests(store, "openshift/release:4.18.2-x86_64-cli")
    assert old_layers[:2] == new_layers[:2]  # the base layers are shared
    assert second.new_cache_bytes < first.new_cache_bytes


def _layer_digests(store: Storage, image: str) -> list[str]:
    repo, tag = image.rsplit(":", 1)
    return [layer["digest"] for layer in manifest(store, store.tags(repo)[tag])["layers"]]


def test_month_prerequisites_are_checked(tmp_path: Path, tiny_spec: SampleSpec) -> None:
    with pytest.raises(UsageError, match="month 2 needs month 1"):
        generate_month(tmp_path / "empty", 2, tiny_spec, via_registry=False)
    make(tmp_path / "r", tiny_spec, 1)
    with pytest.raises(UsageError, match="not empty"):
        generate_month(tmp_path / "r", 1, tiny_spec, via_registry=False)
    with pytest.raises(UsageError, match="month 3 needs month 2"):
        generate_month(tmp_path / "r", 3, tiny_spec, via_registry=False)
    with pytest.raises(UsageError, match="month must be"):
        generate_month(tmp_path / "r", 0, tiny_spec, via_registry=False)


# --- content/: archives and history ---------------------------------------------------


def test_month_one_archives_hold_the_whole_cache_in_order(
    tmp_path: Path, tiny_spec: SampleSpec
) -> None:
    report = make(tmp_path, tiny_spec, 1)
    names = [p.name for p in report.archives]
    assert names == [f"mirror_{n:06d}.tar" for n in range(1, len(names) + 1)]
    entries = [(a, m) for a in report.archives for m in members(a)]
    assert all(m.isreg() for _a, m in entries)
    order = [_section(m.name) for _a, m in entries]
    # BuildArchive's order: repositories/, the blobs, working-dir/, the config last.
    assert order == sorted(order, key=["repositories", "blobs", "working-dir", "isc"].index)
    cache = tmp_path / CACHE
    repo_files = _files_under(cache, V2 / "repositories")
    blob_files = _files_under(cache, V2 / "blobs")
    got = [m.name for _a, m in entries]
    # filepath.Walk order: names sorted within each directory, depth first.
    assert [n for n in got if _section(n) == "repositories"] == sorted(repo_files, key=_walk_key)
    assert sorted(n for n in got if _section(n) == "blobs") == sorted(blob_files)
    assert [n for n in got if _section(n) == "isc"] == ["isc_2026-01-01T00:00:00Z"]
    wd_files = _files_under(tmp_path / CONTENT, Path("working-dir"))
    assert {n for n in got if _section(n) == "working-dir"} == set(wd_files) - {
        f"working-dir/.history/{report.history_file.name}"
    }
    for archive, member in entries[:: max(1, len(entries) // 25)]:
        _assert_member_matches_file(archive, member, tmp_path)


def _walk_key(name: str) -> list[str]:
    return name.split("/")


def _section(name: str) -> str:
    for prefix, section in (
        ("docker/registry/v2/repositories/", "repositories"),
        ("docker/registry/v2/blobs/sha256/", "blobs"),
        ("working-dir/", "working-dir"),
        ("isc_", "isc"),
    ):
        if name.startswith(prefix):
            return section
    raise AssertionError(f"unexpected archive member {name}")


def _files_under(base: Path, sub: Path) -> list[str]:
    return [p.relative_to(base).as_posix() for p in (base / sub).rglob("*") if p.is_file()]


def _assert_member_matches_file(archive: Path, member: tarfile.TarInfo, root: Path) -> None:
    if member.name.startswith("isc_"):
        return
    base = root / CONTENT if member.name.startswith("working-dir/") else root / CACHE
    source = base / member.name
    with tarfile.open(archive) as tar:
        extracted = tar.extractfile(member)
        assert extracted is not None
        assert extracted.read() == source.read_bytes()
    info = source.stat()
    assert member.mtime == int(info.st_mtime)
    assert member.mode == info.st_mode & 0o7777
    assert (member.uid, member.gid, member.uname) == (0, 0, "root")


def test_month_two_archives_hold_only_blobs_not_in_history(
    tmp_path: Path, tiny_spec: SampleSpec
) -> None:
    first = make(tmp_path, tiny_spec, 1)
    history_1 = read_history(first.history_file)
    second = generate_month(tmp_path, 2, tiny_spec, via_registry=False)
    assert not any(p.exists() for p in set(first.archives) - set(second.archives))
    names = archived(second)
    blobs = {"sha256:" + n.split("/")[-2] for n in names if _section(n) == "blobs"}
    cache_blobs = storage(tmp_path).blob_digests()
    assert blobs == cache_blobs - history_1
    assert blobs == set(second.new_blobs)
    repo_files = _files_under(tmp_path / CACHE, V2 / "repositories")
    assert sorted(n for n in names if _section(n) == "repositories") == sorted(repo_files)
    assert f"working-dir/.history/{first.history_file.name}" in names
    assert second.archive_bytes < first.archive_bytes


def test_history_is_cumulative(tmp_path: Path, tiny_spec: SampleSpec) -> None:
    first = make(tmp_path, tiny_spec, 1)
    second = generate_month(tmp_path, 2, tiny_spec, via_registry=False)
    assert history_files(tmp_path / CONTENT) == [first.history_file, second.history_file]
    assert second.history_file.name == ".history-2026-01-31T00:00:00Z"
    history_1, history_2 = read_history(first.history_file), read_history(second.history_file)
    assert history_1 < history_2
    assert history_2 == storage(tmp_path).blob_digests()
    text = second.history_file.read_text()
    assert text.endswith("\n")
    assert all(DIGEST.fullmatch(line) for line in text.splitlines())


def test_a_file_over_archive_size_goes_alone_into_its_own_archive(tmp_path: Path) -> None:
    spec = SampleSpec(archive_size=40 * 1024)  # tiny's base layers are bigger than this
    report = make(tmp_path, spec, 1)
    oversized = 0
    for archive in report.archives:
        inside = members(archive)
        if any(m.size > spec.archive_size for m in inside):
            oversized += 1
            assert len(inside) == 1
        else:
            assert sum(m.size for m in inside) <= spec.archive_size
    assert oversized >= 2
    names = sorted(p.name for p in report.archives)
    assert names == [f"mirror_{n:06d}.tar" for n in range(1, len(names) + 1)]


def test_tar_headers_follow_go_archive_tar() -> None:
    blob = "docker/registry/v2/blobs/sha256/ab/" + "ab" * 32 + "/data"
    header = member_header(blob, 10, 0o644, 1_767_225_600)
    assert len(header) == 512
    assert header[257:265] == b"ustar\x0000"
    assert header[345:].rstrip(b"\0") == blob.rsplit("/", 1)[0].encode()  # longest prefix
    assert header[:100].rstrip(b"\0") == b"data"
    long_name = "x" * 160 + "/" + "y" * 20
    pax = member_header(long_name, 3, 0o600, 0)
    assert pax[156:157] == b"x"
    pax_name = ("x" * 160 + "/PaxHeaders.0/" + "y" * 20)[:100]  # Go truncates it to fit
    assert pax[:100].rstrip(b"\0") == pax_name.encode()
    with tarfile.open(fileobj=io.BytesIO(pax + b"abc" + bytes(509) + bytes(1024))) as tar:
        (only,) = tar.getmembers()
    assert only.name == long_name


# --- direct and via-registry produce the same tree --------------------------------------


@pytest.mark.needs_registry
def test_direct_and_registry_modes_write_the_same_tree(
    tmp_path: Path, tiny_spec: SampleSpec
) -> None:
    make(tmp_path / "direct", tiny_spec, 2)
    make(tmp_path / "pushed", tiny_spec, 2, via_registry=True)
    assert not list((tmp_path / "pushed").rglob("_uploads"))
    direct = listing(tmp_path / "direct", mtimes=False)
    assert direct == listing(tmp_path / "pushed", mtimes=False)


# --- the parity oracle: real skopeo against real docker-registry ---------------------------


@pytest.mark.needs_registry
def test_skopeo_pulls_every_tag_of_months_one_and_two(
    tmp_path: Path, tiny_spec: SampleSpec, registry_factory: RegistryFactory
) -> None:
    for month in (1, 2):
        report = generate_month(tmp_path, month, tiny_spec, via_registry=False)
        registry = registry_factory(tmp_path / CACHE, read_only=True)
        listed = [name for name in list_images(registry) if not name.endswith(".sig")]
        assert listed == list(report.images)
        results = pull_all(registry)
        failed = {name: r.error for name, r in results.items() if not r.ok}
        assert not failed
        assert sorted(name for name in results if not name.endswith(".sig")) == list(report.images)
        registry.stop()


@pytest.mark.needs_registry
def test_sparse_index_fails_an_all_platform_pull_only(
    tmp_path: Path, tiny_spec: SampleSpec, registry_factory: RegistryFactory
) -> None:
    make(tmp_path, tiny_spec, 1)
    registry = registry_factory(tmp_path / CACHE, read_only=True)
    sparse, full = "rhbk/keycloak-rhel9:26.0.0", "redhat/redhat-operator-index:v4.18"
    results = pull_all(registry, [sparse, full], all_arch=True)
    assert results[full].ok, results[full].error
    assert not results[sparse].ok
    assert pull_all(registry, [sparse])[sparse].ok


@pytest.mark.needs_registry
def test_missing_layer_blob_fails_that_image_only(
    tmp_path: Path, tiny_spec: SampleSpec, registry_factory: RegistryFactory
) -> None:
    make(tmp_path, tiny_spec, 1)
    store = storage(tmp_path)
    victim = "openshift/release:4.18.1-x86_64-cli"
    layer = _layer_digests(store, victim)[-1]  # its own app layer, used by no other image
    store.blob_path(layer).unlink()
    registry = registry_factory(tmp_path / CACHE, read_only=True)
    results = pull_all(registry)
    failed = sorted(name for name, r in results.items() if not r.ok)
    assert failed == [victim]
    assert f"reading blob {layer}" in results[victim].error


# --- the CLI subcommand ---------------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sample_command.register(parser.add_subparsers())
    return parser.parse_args(argv)


def test_cli_prints_the_month_report_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parse(["sample", str(tmp_path / "r"), "--month", "1", "--direct", "--json"])
    assert args.run(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["month"] == 1
    assert len(report["images"]) == SampleSpec().images + 1  # and the rebuilt catalog
    assert all(DIGEST.fullmatch(d) for d in report["new_blobs"])
    assert Path(report["history_file"]).is_file()


def test_cli_rejects_bad_input_with_a_usage_error(tmp_path: Path) -> None:
    args = _parse(["sample", str(tmp_path), "--preset", "small", "--size", "5000000"])
    with pytest.raises(UsageError, match="exclude"):
        args.run(args)
    args = _parse(["sample", str(tmp_path), "--size", "10"])
    with pytest.raises(UsageError, match="minimum"):
        args.run(args)


def test_scaled_specs_grow_with_the_requested_size(tmp_path: Path) -> None:
    small, larger = SampleSpec.scaled(4 * 2**20), SampleSpec.scaled(16 * 2**20)
    a = make(tmp_path / "a", small, 1)
    b = make(tmp_path / "b", larger, 1)
    assert 2 * 2**20 < a.new_cache_bytes < 8 * 2**20
    assert 8 * 2**20 < b.new_cache_bytes < 32 * 2**20
    shutil.rmtree(tmp_path / "a")


# -- archives as Go's archive/tar writes them ---------------------------------------------


def test_long_repository_signature_tags_and_a_large_owner_need_pax(
    tmp_path: Path, tiny_spec: SampleSpec
) -> None:
    report = make(tmp_path / "root", tiny_spec, 1)
    entries = [m for a in report.archives for m in members(a)]
    pax = [m for m in entries if m.pax_headers]
    assert pax and all(".sig/" in m.name for m in pax)  # cosign tags under a long repository
    assert all(len(m.name.split("/_manifests/")[0]) >= 32 + 32 for m in pax)
    owner = replace(tiny_spec, owner_uid=1_234_567_890, owner_name="jane.doe@corp.example.com.x")
    other = make(tmp_path / "owner", owner, 1)
    for member in (m for a in other.archives for m in members(a)):
        assert member.pax_headers["uid"] == "1234567890"  # every member: uid over 2,097,151
        assert member.uid == 1_234_567_890 and member.uname == "jane.doe@corp.example.com.x"


def test_blob_order_follows_the_seed_and_history_lines_are_unordered(
    tmp_path: Path, tiny_spec: SampleSpec
) -> None:
    report = make(tmp_path / "a", tiny_spec, 1)
    blobs = [n for n in archived(report) if _section(n) == "blobs"]
    assert blobs != sorted(blobs)  # Go's map iteration: no set order
    again = make(tmp_path / "b", tiny_spec, 1)
    assert [n for n in archived(again) if _section(n) == "blobs"] == blobs  # but seeded
    lines = report.history_file.read_text().splitlines()
    assert lines != sorted(lines) and set(lines) == read_history(report.history_file)


def test_cli_owner_option(tmp_path: Path) -> None:
    args = _parse(["sample", str(tmp_path / "r"), "--direct", "--owner", "4000000000:svc"])
    assert args.run(args) == 0
    with pytest.raises(UsageError, match="UID:NAME"):
        bad = _parse(["sample", str(tmp_path / "s"), "--direct", "--owner", "svc"])
        bad.run(bad)
