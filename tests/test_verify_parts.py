"""verify's smaller parts: the tar index, archive sets, the image set config scanner,
discovery of trees, the working-dir view, and parallel hashing."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from syncd.sample.tarformat import END_OF_ARCHIVE, member_header, padding
from syncd.verify.archives import ArchiveSet, find_archives, missing_numbers, safe_member_name
from syncd.verify.discover import cache_for, discover, is_oc_mirror_cache
from syncd.verify.hashing import Hasher, hash_range
from syncd.verify.isc import catalog_name, catalog_repository, parse_image_set_config
from syncd.verify.store import BlobLocation
from syncd.verify.tarindex import TarIndex, read_index
from syncd.verify.workdir import WorkingDirView, needs

# -- the tar index -----------------------------------------------------------------------


def go_tar(members: list[tuple[str, bytes]]) -> bytes:
    """An archive as Go's archive/tar (and so oc-mirror) writes it."""
    out = b""
    for name, data in members:
        out += member_header(name, len(data), 0o644, 1_700_000_000) + data + padding(len(data))
    return out + END_OF_ARCHIVE


def index_of(tmp_path: Path, data: bytes) -> TarIndex:
    path = tmp_path / "a.tar"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_index(fd)
    finally:
        os.close(fd)


LONG = "docker/registry/v2/repositories/" + "deep/" * 40 + "_layers/sha256/" + "a" * 64 + "/link"
MEMBERS = [
    ("docker/registry/v2/repositories/a/_manifests/tags/v1/current/link", b"sha256:" + b"a" * 64),
    (LONG, b"x"),  # over 256 bytes: a PAX path record
    ("docker/registry/v2/blobs/sha256/aa/" + "a" * 64 + "/data", bytes(1500)),
    ("isc_2026-01-01T00:00:00Z", b"kind: ImageSetConfiguration\n"),
]


def test_a_sound_go_archive_is_indexed_with_names_offsets_and_sizes(tmp_path: Path) -> None:
    data = go_tar(MEMBERS)
    index = index_of(tmp_path, data)
    assert index.issue is None
    assert [(m.name, m.size) for m in index.members] == [(n, len(d)) for n, d in MEMBERS]
    for member, (_, content) in zip(index.members, MEMBERS, strict=True):
        assert data[member.offset : member.offset + member.size] == content


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_python_written_archives_of_every_format(tmp_path: Path, fmt: int) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        for name, content in MEMBERS:
            if fmt == tarfile.USTAR_FORMAT and len(name) > 255:
                continue
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        folder = tarfile.TarInfo("docker/registry/v2/blobs")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
    index = index_of(tmp_path, buffer.getvalue())
    assert index.issue is None
    regular = [m.name for m in index.members if m.regular]
    assert regular == [n for n, _ in MEMBERS if fmt != tarfile.USTAR_FORMAT or len(n) <= 255]


def test_a_member_cut_short_is_fatal_and_named(tmp_path: Path) -> None:
    data = go_tar(MEMBERS)
    (blob,) = [m for m in index_of(tmp_path, data).members if m.size == 1500]
    index = index_of(tmp_path, data[: blob.offset + 700])
    assert index.issue is not None and index.issue.fatal
    assert (
        "blobs/sha256/aa/" in index.issue.message
        and "only 700 of its 1500 bytes" in index.issue.message
    )


def test_an_archive_cut_at_a_member_boundary_has_no_end_marker(tmp_path: Path) -> None:
    data = go_tar(MEMBERS[:1])[: -len(END_OF_ARCHIVE)]
    index = index_of(tmp_path, data)
    assert index.issue is not None and not index.issue.fatal
    assert "without the end-of-archive marker" in index.issue.message
    assert MEMBERS[0][0] in index.issue.message
    one_block = index_of(tmp_path, data + bytes(512))
    assert one_block.issue is not None and "one of the two zero blocks" in one_block.issue.message


@pytest.mark.parametrize(
    ("mangle", "words"),
    [
        (lambda d: d[:100] + b"\xff" + d[101:], "bad header checksum at offset 0"),
        (lambda d: d[:-1024] + bytes(512) + b"x" * 512, "a zero block followed by data"),
        (lambda d: d[:300], "a header cut short at offset 0"),
        (lambda d: b"not a tar file at all, not at all" * 20, "not a tar archive"),
    ],
    ids=["checksum", "zero-then-data", "short-header", "garbage"],
)
def test_what_stops_go_is_fatal(tmp_path: Path, mangle: object, words: str) -> None:
    data = mangle(go_tar(MEMBERS[:1]))  # type: ignore[operator]
    index = index_of(tmp_path, data)
    assert index.issue is not None and index.issue.fatal and words in index.issue.message


def test_an_empty_file_is_a_cut_archive(tmp_path: Path) -> None:
    index = index_of(tmp_path, b"")
    assert index.issue is not None and not index.issue.fatal and not index.members


# -- archive sets ------------------------------------------------------------------------


def test_archive_numbering(tmp_path: Path) -> None:
    for name in ("mirror_000001.tar", "mirror_000003.tar", "mirror_7.tar", "other.tar"):
        (tmp_path / name).write_bytes(go_tar([]))
    numbered, ignored = find_archives(tmp_path)
    assert [a.number for a in numbered] == [1, 3]
    assert ignored == ["mirror_7.tar"]
    assert missing_numbers([1, 3]) == [2]
    assert missing_numbers([2, 3]) == [1]
    assert missing_numbers([]) == []


@pytest.mark.parametrize(
    ("name", "clean"),
    [
        ("a/b", "a/b"),
        ("./a/b", "a/b"),
        ("a/b/", "a/b"),
        ("/etc/passwd", None),
        ("a/../../b", None),
        ("a//b", None),
        ("", None),
    ],
)
def test_member_names_that_would_escape(name: str, clean: str | None) -> None:
    assert safe_member_name(name) == clean


def test_later_archives_win_and_members_read_by_offset(tmp_path: Path) -> None:
    (tmp_path / "mirror_000001.tar").write_bytes(go_tar([("x", b"old"), ("../evil", b"!")]))
    (tmp_path / "mirror_000002.tar").write_bytes(go_tar([("x", b"new!")]))
    numbered, _ = find_archives(tmp_path)
    with ArchiveSet(numbered) as archive_set:
        ref = archive_set.members["x"]
        assert ref.archive.name == "mirror_000002.tar"
        assert archive_set.read(ref, 100) == b"new!"
        assert archive_set.unsafe == [(tmp_path / "mirror_000001.tar", "../evil")]


# -- image set config ------------------------------------------------------------------

ISC = """\
kind: ImageSetConfiguration
apiVersion: mirror.openshift.io/v2alpha1
mirror:
  platform:
    graph: true   # build the graph image
    channels:
    - name: stable-4.18
      minVersion: 4.18.1
  operators:
  - catalog: registry.redhat.io/redhat/redhat-operator-index:v4.18
    packages:
    - name: rhbk-operator
  - catalog: "oci:///catalogs/my-index"
  additionalImages:
  - name: registry.redhat.io/ubi9/ubi:latest
  helm:
    repositories:
    - name: podinfo
# platform:
#   graph: false
"""


def test_image_set_config_kinds() -> None:
    kinds = parse_image_set_config(ISC)
    assert kinds.release and kinds.graph and kinds.helm and kinds.additional
    assert kinds.catalogs == (
        "registry.redhat.io/redhat/redhat-operator-index:v4.18",
        "oci:///catalogs/my-index",
    )


def test_image_set_config_without_release_or_graph() -> None:
    text = "mirror:\n  platform:\n    channels:\n    - name: a\n  additionalImages:\n  - name: x\n"
    kinds = parse_image_set_config(text)
    assert kinds.release and not kinds.graph and not kinds.catalogs and not kinds.helm
    assert parse_image_set_config("garbage: [\n\x00").release is False


def test_catalog_names() -> None:
    ref = "registry.redhat.io/redhat/redhat-operator-index:v4.18"
    assert catalog_name(ref) == "redhat-operator-index"
    assert catalog_repository(ref) == "redhat/redhat-operator-index"
    assert catalog_repository("quay.io:443/a/b@sha256:" + "1" * 64) == "a/b"


# -- discovery -----------------------------------------------------------------------------


def test_discover_finds_trees_and_content_folders(tmp_path: Path) -> None:
    cache = tmp_path / ".oc-mirror/.cache/docker/registry/v2"
    (cache / "repositories").mkdir(parents=True)
    (tmp_path / "plain/docker/registry/v2").mkdir(parents=True)
    (tmp_path / "content/working-dir/docker/registry/v2").mkdir(parents=True)  # not entered
    (tmp_path / "other").mkdir()
    (tmp_path / "other/mirror_000001.tar").write_bytes(b"")
    (tmp_path / ".syncd/docker/registry/v2").mkdir(parents=True)  # our state: skipped
    found = discover(tmp_path)
    assert found.registries == sorted([cache, tmp_path / "plain/docker/registry/v2"])
    assert found.contents == [tmp_path / "content", tmp_path / "other"]
    assert is_oc_mirror_cache(cache) and not is_oc_mirror_cache(found.registries[1])
    assert discover(cache).registries == [cache]


def test_the_cache_beside_a_content_folder(tmp_path: Path) -> None:
    v2 = tmp_path / ".oc-mirror/.cache/docker/registry/v2"
    v2.mkdir(parents=True)
    content = tmp_path / "content"
    content.mkdir()
    assert cache_for(content, tmp_path, None) == v2
    assert cache_for(content, content, None) == v2  # the root is the content folder
    assert cache_for(content, tmp_path, tmp_path / "elsewhere") is None
    assert cache_for(tmp_path / "a" / "b", tmp_path / "a", None) is None  # not above the root


# -- the working-dir view ----------------------------------------------------------------


def test_working_dir_parts_from_archives_or_disk(tmp_path: Path) -> None:
    kinds = parse_image_set_config(ISC)
    parts = {need.part: need for need in needs(kinds)}
    assert set(parts) == {
        "working-dir/hold-release/",
        "working-dir/signatures/",
        "working-dir/operator-catalogs/redhat-operator-index/.../filtered-catalogs/",
        "working-dir/operator-catalogs/my-index/.../filtered-catalogs/",
        "working-dir/helm/",
    }
    disk = tmp_path / "working-dir"
    (disk / "signatures").mkdir(parents=True)
    (disk / "signatures/4.18.1").write_bytes(b"sig")
    (disk / "operator-catalogs/my-index/abc/filtered-catalogs/pkg").mkdir(parents=True)
    (disk / "operator-catalogs/my-index/abc/filtered-catalogs/pkg/catalog.json").write_text("{}")
    (disk / "helm").mkdir()  # empty: not enough
    members = [
        "working-dir/hold-release/ocp-release/4.18.1/release-manifests/image-references",
        "working-dir/operator-catalogs/redhat-operator-index/abc/catalog.json",  # unfiltered
    ]
    view = WorkingDirView(disk, members)
    have = {part for part, need in parts.items() if view.has(need)}
    assert have == {
        "working-dir/hold-release/",
        "working-dir/signatures/",
        "working-dir/operator-catalogs/my-index/.../filtered-catalogs/",
    }


# -- hashing -----------------------------------------------------------------------------


def test_hashing_ranges_in_parallel_and_only_once(tmp_path: Path) -> None:
    blobs = {n: os.urandom(n * 300_001 % 3_000_000 + 1) for n in range(1, 9)}
    archive = tmp_path / "all"
    archive.write_bytes(b"".join(blobs.values()))
    locations, offset = {}, 0
    for data in blobs.values():
        locations["sha256:" + hashlib.sha256(data).hexdigest()] = BlobLocation(
            str(archive), offset, len(data)
        )
        offset += len(data)
    hasher = Hasher(workers=3)
    results = hasher.hash_all(locations)
    assert all(outcome.hexdigest == digest[7:] for digest, outcome in results.items())
    assert hasher.bytes_hashed == offset
    hasher.hash_all(locations)
    assert hasher.bytes_hashed == offset, "hashed once"


def test_hashing_reports_what_it_cannot_read(tmp_path: Path) -> None:
    missing = hash_range(BlobLocation(str(tmp_path / "nope"), 0, 10))
    assert missing.hexdigest is None and missing.error
    short = tmp_path / "short"
    short.write_bytes(b"abc")
    outcome = hash_range(BlobLocation(str(short), 0, 10))
    assert outcome.size == 3 and outcome.hexdigest == hashlib.sha256(b"abc").hexdigest()
    whole = hash_range(BlobLocation(str(short), 1, -1))
    assert whole.hexdigest == hashlib.sha256(b"bc").hexdigest()
