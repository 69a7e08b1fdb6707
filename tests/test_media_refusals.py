"""Damaged, foreign, unsigned and hostile volumes: each is refused with a message naming
the volume and the problem, nothing is applied, and the other volumes stay usable."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from syncd.media.signing import load_signer
from syncd.media.volume import open_volume, read_blobs
from tests.mediautil import (
    become,
    copy_tree,
    export,
    files_in,
    import_,
    keypair,
    receipt,
    rewrite_index,
    status,
    syncd,
    volumes_of,
)
from tests.pushutil import snapshot_id

SMALL_VOLUMES = ("--volume-size", "400k", "--max-file-size", "200k")


@pytest.fixture(scope="module")
def months(tiny_months: dict[int, Path]) -> dict[int, Path]:
    """The session's TINY months (conftest.py); copied before any change."""
    return tiny_months


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("keys")
    return {name: keypair(folder, name) for name in ("ours", "theirs")}


@pytest.fixture(scope="module")
def signed(
    months: dict[int, Path],
    keys: dict[str, tuple[Path, Path]],
    tmp_path_factory: pytest.TempPathFactory,
) -> list[Path]:
    """Month 1 on small volumes, each index signed with our key; copied before damage."""
    base = tmp_path_factory.mktemp("signed")
    src = copy_tree(months[1], base / "src")
    summary = export(src, base / "out", "--full", "--sign-key", keys["ours"][0], *SMALL_VOLUMES)
    return volumes_of(summary)


@pytest.fixture
def volumes(signed: list[Path], tmp_path: Path) -> list[Path]:
    copies = tmp_path / "media" / signed[0].parent.name
    shutil.copytree(signed[0].parent, copies)
    return [copies / v.name for v in signed]


def flip_byte(volume: Path, key: Path) -> None:
    pack = volume / "pack-0001"
    data = bytearray(pack.read_bytes())
    data[len(data) // 2] ^= 0x01
    pack.write_bytes(bytes(data))


def truncate(volume: Path, key: Path) -> None:
    pack = volume / "pack-0001"
    pack.write_bytes(pack.read_bytes()[:-1000])


def tamper_index(volume: Path, key: Path) -> None:
    """A well-formed index that no longer matches its signature (checksum recomputed)."""
    rewrite_index(volume, keep_signature=True, pack_0001="pack-0009")
    (volume / "pack-0001").rename(volume / "pack-0009")


def unsign(volume: Path, key: Path) -> None:
    rewrite_index(volume)


def escape_up(volume: Path, key: Path) -> None:
    # Signed by the required key: even its holder's index is decoded strictly.
    rewrite_index(volume, signer=load_signer(key), pack_0001="../../escape")


def escape_absolute(volume: Path, key: Path) -> None:
    rewrite_index(volume, signer=load_signer(key), pack_0001="/etc/passwd")


DAMAGE: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "flipped byte": (flip_byte, "does not match its digest"),
    "truncated pack": (truncate, "pack-0001 is"),
    "tampered index": (tamper_index, "signature does not match its contents"),
    "unsigned index": (unsign, "unsigned, but a signature is required"),
    "index naming ../": (escape_up, "bad_path"),
    "index naming /etc/passwd": (escape_absolute, "bad_path"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_volume_is_refused_and_a_sound_copy_completes(
    damage: str,
    volumes: list[Path],
    signed: list[Path],
    keys: dict[str, tuple[Path, Path]],
    months: dict[int, Path],
    tmp_path: Path,
) -> None:
    harm, problem = DAMAGE[damage]
    bad = volumes[1]
    harm(bad, keys["ours"][0])
    far = tmp_path / "far"
    require = ("--require-signed-by", str(keys["ours"][1]))
    ran = import_(far, *volumes, expect=2, args=require)
    refusals = [v for v in ran.json["volumes"] if v["status"] == "refused"]
    assert [Path(v["path"]).name for v in refusals] == [bad.name]
    message = refusals[0]["problem"]
    assert bad.name in message and problem in message, message
    assert f"refused {message}" in ran.err
    assert ran.json["status"] == "refused"
    assert not (far / "content").exists() and not (far / ".oc-mirror").exists()
    assert files_in(tmp_path / "media") >= {str(p.relative_to(tmp_path / "media")) for p in volumes}
    assert not (tmp_path / "escape").exists()
    # A sound copy of the bad volume completes the import; the others were kept.
    sound = tmp_path / "sound" / bad.name
    shutil.copytree(signed[1], sound)
    done = import_(far, sound, args=require).json
    assert done["status"] == "applied"
    assert snapshot_id(far) == snapshot_id(months[1])


def test_unsigned_or_foreign_signed_volumes_are_refused_when_a_key_is_required(
    months: dict[int, Path], keys: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    src = copy_tree(months[1], tmp_path / "src")
    unsigned = export(src, tmp_path / "a")
    theirs = export(src, tmp_path / "b", "--sign-key", keys["theirs"][0])
    far = tmp_path / "far"
    require = ("--require-signed-by", str(keys["ours"][1]))
    for summary, problem in ((unsigned, "unsigned"), (theirs, "signed by another key")):
        ran = import_(far, *volumes_of(summary), expect=2, args=require)
        assert problem in ran.json["volumes"][0]["problem"]
        assert "vol-0001" in ran.json["volumes"][0]["problem"]
    assert not (far / "content").exists()
    # Without the requirement, a sound signature is simply checked and accepted.
    assert import_(far, *volumes_of(theirs)).json["status"] == "applied"


def test_a_missing_volume_is_named_and_nothing_is_applied(
    volumes: list[Path], months: dict[int, Path], tmp_path: Path
) -> None:
    far = tmp_path / "far"
    rest = [v for i, v in enumerate(volumes) if i != 1]
    ran = import_(far, *rest, expect=1).json
    assert ran["status"] == "staged"
    assert ran["missing"]["missing_volumes"] == [2]
    assert status(far)["missing"]["missing_volumes"] == [2]
    text = syncd("import", "--status", "--root", far).out
    assert "still missing volume(s) 2 of" in text
    assert not (far / "content").exists()
    assert import_(far, volumes[1]).json["status"] == "applied"
    assert snapshot_id(far) == snapshot_id(months[1])


def test_a_volume_of_another_export_is_refused_by_name(
    months: dict[int, Path], tmp_path: Path
) -> None:
    """Month 2's export is in progress on the far side; a volume of an older export (of
    month 1) is refused, naming both exports; month 2's other volumes still complete it."""
    src, far = copy_tree(months[1], tmp_path / "src"), tmp_path / "far"
    old = export(src, tmp_path / "old", *SMALL_VOLUMES)
    become(src, months[2])
    new = export(src, tmp_path / "new", "--full", *SMALL_VOLUMES)
    new_volumes = volumes_of(new)
    import_(far, new_volumes[0], expect=1)
    ran = import_(far, volumes_of(old)[0], expect=2).json
    problem = ran["volumes"][0]["problem"]
    assert old["export"] in problem and new["export"] in problem and "older" in problem
    assert not (far / "content").exists()
    assert import_(far, *new_volumes[1:]).json["status"] == "applied"
    assert snapshot_id(far) == snapshot_id(months[2])


def test_a_newer_export_supersedes_an_unfinished_one(
    months: dict[int, Path], tmp_path: Path
) -> None:
    src, far = copy_tree(months[1], tmp_path / "src"), tmp_path / "far"
    old = export(src, tmp_path / "old", *SMALL_VOLUMES)
    import_(far, volumes_of(old)[0], expect=1)
    become(src, months[2])
    new = export(src, tmp_path / "new", "--full", *SMALL_VOLUMES)
    done = import_(far, *volumes_of(new)).json
    assert done["status"] == "applied"
    assert any("supersedes" in note and old["export"] in note for note in done["notes"])
    assert snapshot_id(far) == snapshot_id(months[2])


def test_a_volume_made_for_another_site_is_refused(months: dict[int, Path], tmp_path: Path) -> None:
    src = copy_tree(months[1], tmp_path / "src")
    here, there = tmp_path / "here", tmp_path / "there"
    for far in (here, there):
        far.mkdir()
        receipt(far, tmp_path / f"{far.name}.receipt")
    summary = export(src, tmp_path / "out", "--receipt", tmp_path / "here.receipt")
    ran = import_(there, *volumes_of(summary), expect=2).json
    assert "exported for far site" in ran["volumes"][0]["problem"]
    assert import_(here, *volumes_of(summary)).json["status"] == "applied"


def test_nothing_but_volumes_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    ran = syncd("import", tmp_path / "empty", "--root", tmp_path / "far")
    assert ran.code == 2 and "no syncd volume here" in ran.err
    ran = syncd("import", "--root", tmp_path / "far")
    assert ran.code == 2 and "at least one DIR" in ran.err


def test_media_inside_the_tree_are_refused(months: dict[int, Path], tmp_path: Path) -> None:
    """A scan would take them for part of the tree, an apply would delete them."""
    src = copy_tree(months[1], tmp_path / "src")
    ran = syncd("export", src, "--to", src / "usb")
    assert ran.code == 2 and "inside" in ran.err and not (src / "usb").exists()
    summary = export(src, tmp_path / "usb")
    far = copy_tree(months[1], tmp_path / "far")
    inside = far / "usb"
    shutil.copytree(tmp_path / "usb", inside)
    ran = syncd("import", inside / summary["export"], "--root", far)
    assert ran.code == 2 and "inside" in ran.err
    ran = syncd("receipt", "--root", far, "--to", far / "receipt")
    assert ran.code == 2 and "inside" in ran.err and not (far / "receipt").exists()
    # A typo is an error, not "no import in progress" (issue 14, item 11).
    typo = syncd("import", "--status", "--root", tmp_path / "nowhere")
    assert typo.code == 2 and "no such folder" in typo.err and typo.out == ""
    assert not (tmp_path / "nowhere").exists()
    assert syncd("import", "--status", "--root", src).out == "no import in progress\n"


def test_damage_in_a_blob_no_one_wants_still_refuses_the_volume(volumes: list[Path]) -> None:
    """Every entry is checked against its digest, wanted or not: a byte flipped in a blob
    the far side does not need is found, with the blob's offset named (the pack's
    checksum fails too, and is not reported twice). The blobs handed over are read-only
    views of the read buffer that hold exactly their bytes."""
    volume = open_volume(volumes[0], None)
    entries = volume.index.blobs
    packs = [(volumes[0] / file.name).read_bytes() for file in volume.index.files]
    for entry, (digest, data) in zip(entries, read_blobs(volume, lambda _: True), strict=True):
        assert digest == entry.digest and data.readonly
        assert bytes(data) == packs[entry.file][entry.offset : entry.offset + entry.length]
    assert volume.problems == []
    last = entries[-1]
    pack = volumes[0] / volume.index.files[last.file].name
    damaged = bytearray(packs[last.file])
    damaged[last.offset + last.length - 1] ^= 0x01
    pack.write_bytes(bytes(damaged))
    volume = open_volume(volumes[0], None)
    assert list(read_blobs(volume, lambda _: False)) == []
    assert volume.problems == [
        f"{pack.name}: the blob at offset {last.offset} does not match its digest "
        f"{last.digest.hex()[:16]} (damaged copy?)"
    ]


def test_an_index_whose_pack_checksum_disagrees_is_refused_though_every_blob_matches(
    volumes: list[Path], keys: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    """Re-signed by the key holder, every blob intact: the index is still not what its
    exporter wrote, and the import says so instead of trusting the digests alone."""
    bad = volumes[0]
    rewrite_index(bad, signer=load_signer(keys["ours"][0]), checksums={"pack-0001": bytes(32)})
    ran = import_(tmp_path / "far", bad, expect=2)
    refusals = [v for v in ran.json["volumes"] if v["status"] == "refused"]
    assert len(refusals) == 1
    assert "pack-0001 does not match its checksum" in refusals[0]["problem"]


def test_a_pack_swapped_for_a_fifo_after_the_check_is_refused_without_blocking(
    volumes: list[Path],
) -> None:
    volume = open_volume(volumes[0], None)
    pack = volumes[0] / volume.index.files[0].name
    pack.unlink()
    os.mkfifo(pack)  # no writer: a blocking open would wait forever
    signal.signal(signal.SIGALRM, signal.default_int_handler)
    signal.alarm(20)
    try:
        handed = {digest for digest, _ in read_blobs(volume, lambda _: True)}
    finally:
        signal.alarm(0)
    assert not handed & {entry.digest for entry in volume.index.blobs if entry.file == 0}
    assert f"{pack.name} was replaced since it was checked" in volume.problems
