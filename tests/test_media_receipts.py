"""Receipts: what the exporter takes the far side to have, and which receipts it refuses
(another site's, an older one, an unsigned one when a key is required)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.mediautil import (
    copy_tree,
    export,
    import_,
    keypair,
    receipt,
    syncd,
    volumes_of,
)
from tests.pushutil import snapshot_id

SMALL_VOLUMES = ("--volume-size", "300k", "--max-file-size", "150k")


@pytest.fixture(scope="module")
def months(tiny_months: dict[int, Path]) -> dict[int, Path]:
    """The session's TINY months (conftest.py); copied before any change."""
    return tiny_months


@pytest.fixture
def synced(months: dict[int, Path], tmp_path: Path) -> tuple[Path, Path]:
    """(source holding month 2, far side holding month 1 after a full export + import)."""
    src, far = copy_tree(months[1], tmp_path / "src"), tmp_path / "far"
    import_(far, *volumes_of(export(src, tmp_path / "m1")))
    shutil.rmtree(src)
    copy_tree(months[2], src)
    return src, far


def test_a_receipt_from_another_site_is_refused_by_name(
    synced: tuple[Path, Path], months: dict[int, Path], tmp_path: Path
) -> None:
    src, far = synced
    other = copy_tree(months[1], tmp_path / "other-far")
    receipt(far, tmp_path / "ours")
    receipt(other, tmp_path / "theirs")
    export(src, tmp_path / "out", "--receipt", tmp_path / "ours")
    ran = syncd("export", src, "--to", tmp_path / "out", "--receipt", tmp_path / "theirs")
    assert ran.code == 2
    assert "theirs is from far site" in ran.err and "--site" in ran.err
    assert export(src, tmp_path / "out", "--receipt", tmp_path / "theirs", "--site", "b")


def test_an_older_receipt_is_refused(synced: tuple[Path, Path], tmp_path: Path) -> None:
    src, far = synced
    receipt(far, tmp_path / "r1")
    receipt(far, tmp_path / "r2")
    export(src, tmp_path / "out", "--receipt", tmp_path / "r2")
    ran = syncd("export", src, "--to", tmp_path / "out", "--receipt", tmp_path / "r1")
    assert ran.code == 2 and "older than receipt #2" in ran.err
    assert len(list((tmp_path / "out").iterdir())) == 1  # nothing written for the refusal


def test_signed_receipts_when_required(synced: tuple[Path, Path], tmp_path: Path) -> None:
    src, far = synced
    (key, pub), (other, _) = keypair(tmp_path, "far-key"), keypair(tmp_path, "intruder")
    receipt(far, tmp_path / "unsigned")
    receipt(far, tmp_path / "forged", "--sign-key", other)
    receipt(far, tmp_path / "signed", "--sign-key", key)
    for name, problem in (("unsigned", "unsigned"), ("forged", "another key")):
        ran = syncd(
            "export", src, "--to", tmp_path / "out", "--receipt", tmp_path / name,
            "--require-signed-by", pub,
        )  # fmt: skip
        assert ran.code == 2 and f"receipt {tmp_path / name}: " in ran.err and problem in ran.err
    summary = export(
        src, tmp_path / "out", "--receipt", tmp_path / "signed", "--require-signed-by", pub
    )
    assert summary["basis"] == "receipt"


def test_without_a_new_receipt_unconfirmed_exports_are_carried_again(
    synced: tuple[Path, Path], tmp_path: Path
) -> None:
    """Two exports from one receipt hold the same blobs: the first is not confirmed
    until a receipt says so, and the far side may never have seen it."""
    src, far = synced
    receipt(far, tmp_path / "r")
    first = export(src, tmp_path / "out", "--receipt", tmp_path / "r")
    second = export(src, tmp_path / "out")
    assert second["basis"] == "receipt" and "kept from an earlier export" in second["basis_text"]
    assert "1 export(s) since are not confirmed" in second["basis_text"]
    assert (second["blobs"], second["blob_bytes"]) == (first["blobs"], first["blob_bytes"])
    # The second export supersedes the first on the far side, and completes alone.
    assert import_(far, *volumes_of(second)).json["status"] == "applied"
    assert snapshot_id(far) == snapshot_id(src)
    # Once a receipt confirms it, the next export is empty.
    receipt(far, tmp_path / "r2")
    assert export(src, tmp_path / "out", "--receipt", tmp_path / "r2")["blobs"] == 0


def test_staged_blobs_in_a_receipt_are_not_exported_again(
    synced: tuple[Path, Path], tmp_path: Path
) -> None:
    """Part of an export was imported; the receipt lists what was staged, and the next
    export (which supersedes the unfinished one) leaves exactly that out."""
    src, far = synced
    receipt(far, tmp_path / "r1")
    partial = export(src, tmp_path / "a", "--receipt", tmp_path / "r1", *SMALL_VOLUMES)
    assert len(partial["volumes"]) >= 2
    staged = import_(far, volumes_of(partial)[0], expect=1).json["volumes"][0]["blobs_staged"]
    back = receipt(far, tmp_path / "r2")
    assert back["staged_blobs"] >= staged > 0
    rest = export(src, tmp_path / "b", "--receipt", tmp_path / "r2")
    assert rest["blobs"] == partial["blobs"] - staged
    assert import_(far, *volumes_of(rest)).json["status"] == "applied"
    assert snapshot_id(far) == snapshot_id(src)


def test_full_ignores_receipts_and_the_text_output_names_the_basis(
    synced: tuple[Path, Path], tmp_path: Path
) -> None:
    src, far = synced
    receipt(far, tmp_path / "r")
    export(src, tmp_path / "out", "--receipt", tmp_path / "r")
    ran = syncd("export", src, "--to", tmp_path / "out", "--full")
    assert ran.code == 0 and "basis: --full" in ran.out and "vol-0001" in ran.out
    both = syncd("export", src, "--to", tmp_path / "out", "--full", "--receipt", tmp_path / "r")
    assert both.code == 2  # argparse: not allowed together
    shown = syncd("receipt", "--root", far, "--to", tmp_path / "r3")
    assert shown.code == 0 and "receipt #2 of site" in shown.out


def test_corrupt_bookkeeping_is_named_not_trusted(
    synced: tuple[Path, Path], tmp_path: Path
) -> None:
    src, far = synced
    receipt(far, tmp_path / "r")
    export(src, tmp_path / "out", "--receipt", tmp_path / "r")
    book = src / ".syncd" / "media" / "site-default"
    book.write_bytes(b"\x93garbage")
    ran = syncd("export", src, "--to", tmp_path / "out")
    assert ran.code == 2 and f"{book}: corrupt site record" in ran.err
    site = far / ".syncd" / "media" / "site"
    site.write_bytes(b"\x81\xa6format\x02")
    ran = syncd("receipt", "--root", far, "--to", tmp_path / "r2")
    assert ran.code == 2 and f"{site}: corrupt site id file" in ran.err
    assert not (tmp_path / "r2").exists()
