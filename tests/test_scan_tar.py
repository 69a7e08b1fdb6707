"""Archives are cut at member boundaries, so their layers are the cache's blobs."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import blake3
import pytest

from protocol.limits import CHUNK_SIZE
from protocol.tree import Recipe
from syncd.sample import TINY, generate_month
from syncd.scan.cutting import archive_cuts, fixed_cuts
from syncd.scan.tarlayout import read_layout
from tests.scanutil import files, scan

CACHE = ".oc-mirror/.cache"


def contains(whole: Recipe, part: Recipe) -> bool:
    """`part` appears as a consecutive run of pieces inside `whole`."""
    n = len(part)
    return any(whole[i : i + n] == part for i in range(len(whole) - n + 1))


def test_archive_layers_have_the_cache_recipes(tmp_path: Path) -> None:
    generate_month(tmp_path, 1, TINY, via_registry=False)
    scan(tmp_path)
    snapshot = files(tmp_path)
    archives = sorted(p for p in snapshot if p.startswith("content/mirror_"))
    assert archives
    blobs_in_archives = 0
    for archive in archives:
        with tarfile.open(tmp_path / archive) as tar:
            names = [m.name for m in tar if m.name.startswith("docker/registry/v2/blobs/")]
        for name in names:
            cache_recipe = snapshot[f"{CACHE}/{name}"].recipe
            assert contains(snapshot[archive].recipe, cache_recipe), name
            blobs_in_archives += 1
    assert blobs_in_archives > 5


def test_multi_piece_member_and_its_file_share_every_piece(tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 12_345)
    (tmp_path / "blob").mkdir()
    (tmp_path / "blob" / "data").write_bytes(data)
    with tarfile.open(tmp_path / "mirror_000001.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(tarfile.TarInfo("small"), io.BytesIO(b""))
        info = tarfile.TarInfo("docker/registry/v2/blobs/sha256/ab/" + "c" * 64 + "/data")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    scan(tmp_path)
    snapshot = files(tmp_path)
    piece_recipe = snapshot["blob/data"].recipe
    assert [length for _, length in piece_recipe] == [CHUNK_SIZE, CHUNK_SIZE, 12_345]
    assert contains(snapshot["mirror_000001.tar"].recipe, piece_recipe)


def archive_members(root: Path) -> dict[tuple[str, int, int], tuple[int, bytes]]:
    """(name, size, mtime) -> (header bytes, content digest) over a content folder."""
    found: dict[tuple[str, int, int], tuple[int, bytes]] = {}
    for path in sorted((root / "content").glob("mirror_*.tar")):
        with tarfile.open(path) as tar:
            for member in tar:
                reader = tar.extractfile(member)
                data = reader.read() if reader else b""
                header = member.offset_data - member.offset
                key = (member.name, member.size, int(member.mtime))
                found[key] = (header, blake3.blake3(data).digest())
    return found


def test_next_months_archive_costs_only_its_new_members(tmp_path: Path) -> None:
    """oc-mirror rewrites the whole repositories tree and working-dir into every archive;
    what is new in month 2's archive must be only the members that are new or changed
    (their headers and data), not their unchanged neighbours."""
    root = tmp_path / "site"
    generate_month(root, 1, TINY, via_registry=False)
    scan(root)
    known = {d for node in files(root).values() for d, _ in node.recipe}
    before = archive_members(root)
    generate_month(root, 2, TINY, via_registry=False)
    scan(root)
    after = archive_members(root)
    ideal = sum(
        header + key[1]
        for key, (header, digest) in after.items()
        if before.get(key, (0, b""))[1] != digest
    )
    archives = [n for p, n in files(root).items() if p.startswith("content/mirror_")]
    unshared = sum(length for node in archives for d, length in node.recipe if d not in known)
    assert 0 < unshared <= ideal + 2 * 512  # at most an end-of-archive marker more


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_layout_matches_pythons_tarfile(tmp_path: Path, fmt: int) -> None:
    path = tmp_path / "t.tar"
    long_name = "docker/registry/v2/repositories/" + "x" * 150 + "/link"
    with tarfile.open(path, "w", format=fmt) as tar:
        for i, size in enumerate([0, 71, 5000, 1 << 20]):
            name = long_name + str(i) if fmt != tarfile.USTAR_FORMAT else f"d/f{i}"
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, io.BytesIO(os.urandom(size)))
        tar.addfile(tarfile.TarInfo("dir/"))
    with tarfile.open(path) as tar:
        expected = [(m.offset_data, m.size) for m in tar if m.isreg() and m.size]
    fd = os.open(path, os.O_RDONLY)
    try:
        layout = read_layout(fd, path.stat().st_size)
    finally:
        os.close(fd)
    assert layout.problem is None
    assert layout.members == expected


def test_base256_size_and_pax_size_override(tmp_path: Path) -> None:
    path = tmp_path / "t.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("a")
        info.size = 3000
        tar.addfile(info, io.BytesIO(b"a" * 3000))
    raw = bytearray(path.read_bytes())
    # Rewrite the size field as GNU base-256 and fix the checksum: same archive.
    raw[124:136] = b"\x80" + (3000).to_bytes(11, "big")
    raw[148:156] = b" " * 8
    raw[148:156] = f"{sum(raw[:512]):06o}\x00 ".encode()
    path.write_bytes(raw)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert read_layout(fd, len(raw)).members == [(512, 3000)]
    finally:
        os.close(fd)


def test_cuts_cover_the_file_exactly() -> None:
    size = 10 * CHUNK_SIZE
    members = [(512, 71), (2048, CHUNK_SIZE + 1), (CHUNK_SIZE + 4096, 3 * CHUNK_SIZE)]
    lengths = archive_cuts(members, size)
    assert sum(lengths) == size
    assert all(0 < n <= CHUNK_SIZE for n in lengths)
    assert fixed_cuts(0) == []
    assert fixed_cuts(CHUNK_SIZE) == [CHUNK_SIZE]
    with pytest.raises(ValueError, match="out of order"):
        archive_cuts([(100, 10), (50, 10)], 1000)


def test_pieces_hash_to_their_bytes(tmp_path: Path) -> None:
    data = os.urandom(CHUNK_SIZE + 100)
    (tmp_path / "f").write_bytes(data)
    scan(tmp_path)
    recipe = files(tmp_path)["f"].recipe
    assert recipe == (
        (blake3.blake3(data[:CHUNK_SIZE]).digest(), CHUNK_SIZE),
        (blake3.blake3(data[CHUNK_SIZE:]).digest(), 100),
    )
