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
from syncd.verify.archives import ArchiveSet, destination, pick
from syncd.verify.discover import cache_for, discover, is_oc_mirror_cache
from syncd.verify.hashing import Hasher, hash_range
from syncd.verify.imageref import RefError, parse_ref
from syncd.verify.imageset import ConfigError, parse_config
from syncd.verify.store import BlobLocation
from syncd.verify.tarindex import TarIndex, read_index

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


def test_archives_are_picked_as_unarchive_go_picks_them() -> None:
    names = [
        "mirror_000002.tar",
        "mirror_000001.tar.sha256",  # the unanchored pattern picks sidecars and temporaries
        ".mirror_000003.tar.Ab12Cd",
        "mirror_000001.tar",
        "mirror_1.tar",  # near misses: ignored, named in a warning
        "mirror_000001.TAR",
        "other.tar",
    ]
    picked, near = pick([(name, False) for name in names])
    assert [p.name for p in picked] == [
        ".mirror_000003.tar.Ab12Cd",
        "mirror_000001.tar",
        "mirror_000001.tar.sha256",
        "mirror_000002.tar",
    ]
    assert near == ["mirror_000001.TAR", "mirror_1.tar"]


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("docker/registry/v2/blobs/x", ("registry", "blobs/x")),
        ("./docker/registry/v2/blobs/x", ("registry", "blobs/x")),
        ("/docker/registry/v2/blobs/x", ("registry", "blobs/x")),  # Join drops the root
        ("working-dir/a//b", ("working-dir", "a/b")),
        ("x/working-dir/a", ("elsewhere", "x/working-dir/a")),  # lands, but not in working-dir
        ("isc_2026-01-01T00:00:00Z", None),
        ("working-dir/../../etc/passwd", "tainted"),
        ("docker/registry/v2/../../..", "tainted"),
    ],
)
def test_where_a_member_lands(name: str, where: object) -> None:
    if where == "tainted":
        with pytest.raises(ValueError, match=r"etc|v2"):
            destination(name)
    else:
        assert destination(name) == where


def test_later_archives_win_and_a_tainted_member_stops_the_run(tmp_path: Path) -> None:
    link = "docker/registry/v2/repositories/a/_manifests/tags/t/current/link"
    (tmp_path / "mirror_000001.tar").write_bytes(go_tar([(link, b"sha256:" + b"1" * 64)]))
    (tmp_path / "mirror_000002.tar").write_bytes(
        go_tar(
            [(link, b"sha256:" + b"2" * 64), ("working-dir/../../x", b"!"), ("working-dir/y", b"y")]
        )
    )
    (tmp_path / "mirror_000003.tar").write_bytes(b"")  # never reached
    with ArchiveSet(tmp_path) as archives:
        ref = archives.extraction.registry["repositories/a/_manifests/tags/t/current/link"]
        assert ref.archive == "mirror_000002.tar"
        assert archives.read(ref, 100) == b"sha256:" + b"2" * 64
        assert [over.rel for over in archives.extraction.overwrites] == [ref.name[19:]]
        assert [t.name for t in archives.extraction.tainted] == ["working-dir/../../x"]
        assert "y" not in archives.extraction.working_dir  # extraction stopped before it
        assert archives.stopped is archives.reads[-1] and len(archives.reads) == 2
    (tmp_path / "mirror_000002.tar").write_bytes(go_tar([(link, b"sha256:" + b"2" * 64)]))
    with ArchiveSet(tmp_path) as archives:
        assert archives.stopped is archives.reads[2] and "empty" in archives.reads[2].error


def test_an_archive_cut_right_after_a_member_s_data_ends_cleanly(tmp_path: Path) -> None:
    data = go_tar(MEMBERS[:1])
    cut = index_of(tmp_path, data[: 512 + 71])  # no padding at all: Go reads io.EOF
    assert cut.issue is not None and not cut.issue.fatal and len(cut.members) == 1
    partial = index_of(tmp_path, data[: 512 + 71 + 10])  # part of the padding
    assert partial.issue is not None and partial.issue.fatal


# -- image set config ------------------------------------------------------------------

ISC = """\
kind: ImageSetConfiguration
apiVersion: mirror.openshift.io/v2alpha1
mirror:
  platform:
    graph: true   # build the graph image
    platforms:
    - {os: linux, architecture: arm64}
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
      url: https://example.com/charts
      charts:
      - {name: podinfo, version: v6.7.1}
  blockedImages:
  - name: ubi9/.*-debug
"""


def test_image_set_config_fields() -> None:
    config = parse_config(ISC, "isc.yaml")
    assert config.platform.graph and config.platform.platforms == ("linux/arm64",)
    assert config.platform.channels[0].name == "stable-4.18"
    assert config.platform.channels[0].min_version == "4.18.1"
    assert [o.catalog for o in config.operators][1] == "oci:///catalogs/my-index"
    assert config.operators[0].packages == ("rhbk-operator",)
    assert config.additional[0].name == "registry.redhat.io/ubi9/ubi:latest"
    assert config.charts[0].version == "v6.7.1" and config.blocked == ("ubi9/.*-debug",)


@pytest.mark.parametrize(
    ("text", "words"),
    [("garbage: [\n\x00", "not valid YAML"), ("- a\n", "not a YAML mapping"), ("kind: X\n", "'X'")],
)
def test_a_bad_config_is_named(text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_config(text, "isc.yaml")


def test_references_split_as_oc_mirror_splits_them() -> None:
    ref = parse_ref("registry.redhat.io/redhat/redhat-operator-index:v4.18")
    assert (ref.domain, ref.path, ref.tag, ref.component) == (
        "registry.redhat.io",
        "redhat/redhat-operator-index",
        "v4.18",
        "redhat-operator-index",
    )
    by_digest = parse_ref("quay.io:443/a/b@sha256:" + "1" * 64)
    assert by_digest.by_digest_only and by_digest.path == "a/b" and by_digest.digest == "1" * 64
    with pytest.raises(RefError):
        parse_ref("quay.io/a/b")  # neither tag nor digest


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
