"""Export, import, receipt, export against the receipt, import: the far tree equals the
source, and docker-registry + skopeo serve every tag from it. Volumes in any order, one
per run, or twice, give the same result."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from tests.mediautil import (
    copy_tree,
    export,
    import_,
    receipt,
    status,
    volumes_of,
)
from tests.pushutil import pull_every_tag, push, snapshot_id

SMALL_VOLUMES = ("--volume-size", "200k", "--max-file-size", "100k")


@pytest.fixture(scope="module")
def months(tiny_months: dict[int, Path]) -> dict[int, Path]:
    """The session's TINY months (conftest.py); copied before any change."""
    return tiny_months


@pytest.fixture(scope="module")
def split_export(months: dict[int, Path], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Month 1, exported in full onto small volumes, once for the module."""
    base = tmp_path_factory.mktemp("split")
    summary = export(copy_tree(months[1], base / "src"), base / "out", "--full", *SMALL_VOLUMES)
    return volumes_of(summary)


@pytest.mark.needs_registry
def test_month_one_then_month_two_against_the_receipt(
    months: dict[int, Path], tmp_path: Path
) -> None:
    src, far, media = copy_tree(months[1], tmp_path / "src"), tmp_path / "far", tmp_path / "usb"
    first = export(src, media)
    assert first["basis"] == "none"  # no receipt seen yet: everything
    applied = import_(far, media / first["export"]).json
    assert applied["status"] == "applied"
    assert snapshot_id(far) == first["snapshot"] == applied["far_after"]
    assert pull_every_tag(far) == {}

    back = receipt(far, tmp_path / "receipt-1")
    assert back["snapshot"] == first["snapshot"] and back["last_export_applied"]
    shutil.rmtree(src)
    copy_tree(months[2], src)
    second = export(src, media, "--receipt", tmp_path / "receipt-1")
    assert second["basis"] == "receipt" and second["receipt"] == 1
    assert 0 < second["blob_bytes"] < first["blob_bytes"] / 2
    done = import_(far, media / second["export"]).json
    assert done["status"] == "applied" and done["files_deleted"] > 0
    assert snapshot_id(far) == second["snapshot"]
    assert pull_every_tag(far) == {}
    # Every volume was needed: a third export against a fresh receipt holds nothing.
    receipt(far, tmp_path / "receipt-2")
    third = export(src, media, "--receipt", tmp_path / "receipt-2")
    assert third["blobs"] == 0 and len(third["volumes"]) == 1
    assert import_(far, media / third["export"]).json["status"] == "applied"


def test_month_two_exported_against_the_receipt_holds_exactly_what_is_lacking(
    months: dict[int, Path], tmp_path: Path
) -> None:
    """The export's blobs are the push's: a push of month 2 to a copy of the far side
    (which asks for exactly what it lacks) sends the same number of bytes."""
    src, far, media = copy_tree(months[1], tmp_path / "src"), tmp_path / "far", tmp_path / "usb"
    import_(far, media / export(src, media)["export"])
    receipt(far, tmp_path / "r")
    shutil.rmtree(src)
    copy_tree(months[2], src)
    second = export(src, media, "--receipt", tmp_path / "r")
    pushed = push(src, str(copy_tree(far, tmp_path / "far-copy")))
    assert pushed["payload_bytes"] == second["blob_bytes"]
    assert pushed["blobs_sent"] == second["blobs"]


@pytest.mark.parametrize("order", ["reverse, one per run", "shuffled, together", "one twice"])
def test_volumes_in_any_order_give_the_same_tree(
    order: str, split_export: list[Path], months: dict[int, Path], tmp_path: Path
) -> None:
    volumes = list(split_export)
    assert len(volumes) >= 3
    far = tmp_path / "far"
    if order == "reverse, one per run":
        for done, volume in enumerate(reversed(volumes), 1):
            expect = 0 if done == len(volumes) else 1  # 1: staged, volumes still missing
            result = import_(far, volume, expect=expect).json
            if expect:
                left = status(far)["missing"]["missing_volumes"]
                assert left == list(range(1, len(volumes) - done + 1))
                assert result["missing"]["missing_volumes"] == left
                assert not (far / "content").exists()  # nothing applied yet
    elif order == "shuffled, together":
        random.Random(7).shuffle(volumes)
        assert import_(far, *volumes).json["status"] == "applied"
    else:
        import_(far, volumes[1], expect=1)
        again = import_(far, volumes[1], expect=1).json
        assert again["volumes"][0]["blobs_staged"] == 0  # nothing new the second time
        assert import_(far, *volumes).json["status"] == "applied"
        assert import_(far, volumes[0]).json["status"] == "up-to-date"
    assert snapshot_id(far) == snapshot_id(months[1])
    assert status(far)["applied"] is True


def test_an_interrupted_import_keeps_what_it_staged(
    split_export: list[Path], months: dict[int, Path], tmp_path: Path
) -> None:
    """Blobs staged by earlier runs survive and count: the receipt lists them."""
    far = tmp_path / "far"
    far.mkdir()
    first = import_(far, split_export[0], expect=1).json
    staged = first["volumes"][0]["blobs_staged"]
    assert staged > 0
    back = receipt(far, tmp_path / "r")
    assert back["staged_blobs"] >= staged and back["last_export_applied"] is False
    import_(far, *split_export[1:])
    assert snapshot_id(far) == snapshot_id(months[1])
