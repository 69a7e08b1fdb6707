"""Mixed-up media never roll a site back (issue 14, item 7; issue 13, item 10).

- mid-import, an export of another source (another lineage) is refused, and the genuine
  volumes then complete the import;
- after the far side's state folder is reset, an older export is still refused as a
  rollback (the root keeps a note of what it applied), unless --allow-rollback;
- an export or a receipt dated more than a day ahead of this host's clock is refused,
  naming both times.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

from protocol.media import decode_index, decode_receipt, encode_index, encode_receipt, encode_trees
from tests.mediautil import become, copy_tree, export, import_, receipt, syncd, volumes_of
from tests.pushutil import snapshot_id

SMALL = ("--volume-size", "260k", "--max-file-size", "200k")
TWO_DAYS_NS = 2 * 86_400 * 10**9


def far_at_month_one(months: dict[int, Path], tmp_path: Path) -> tuple[Path, Path, Path]:
    """A source at month 2 (with its own state), and a far root at month 1 by import."""
    src = copy_tree(months[1], tmp_path / "src")
    far = tmp_path / "far"
    first = export(src, tmp_path / "m1", "--full")
    import_(far, *volumes_of(first))
    become(src, months[2])
    return src, far, tmp_path / "m1"


def test_another_sources_export_does_not_supersede_an_import(
    tiny_months: dict[int, Path], tmp_path: Path
) -> None:
    src, far, _ = far_at_month_one(tiny_months, tmp_path)
    receipt(far, tmp_path / "receipt")
    genuine = volumes_of(export(src, tmp_path / "m2", "--receipt", tmp_path / "receipt", *SMALL))
    assert len(genuine) >= 2
    import_(far, genuine[0], expect=1)  # staged, the rest missing
    other = copy_tree(tiny_months[1], tmp_path / "other")
    (other / "content" / "notes.txt").write_text("another tree\n")
    foreign = export(other, tmp_path / "mx", "--full")  # newer, but another lineage
    ran = import_(far, *volumes_of(foreign), expect=2)
    assert "comes from another source" in ran.err and "--supersede" in ran.err
    done = import_(far, *genuine[1:]).json
    assert done["status"] == "applied"
    assert snapshot_id(far) == snapshot_id(src)
    # The operator may say so: --supersede drops the import in progress for it.
    for n in range(10):  # more than any one volume holds: the import stays in progress
        (src / "content" / f"new-{n}.bin").write_bytes(os.urandom(60_000))
    src_again = export(src, tmp_path / "m3", "--full", *SMALL)
    import_(far, volumes_of(src_again)[0], expect=1)
    forced = import_(far, *volumes_of(foreign), args=("--supersede",)).json
    assert forced["status"] == "applied"


def test_a_reset_state_folder_does_not_allow_a_rollback(
    tiny_months: dict[int, Path], tmp_path: Path
) -> None:
    src, far, month_one = far_at_month_one(tiny_months, tmp_path)
    import_(far, *volumes_of(export(src, tmp_path / "m2", "--full")))
    assert snapshot_id(far) == snapshot_id(src)
    shutil.rmtree(far / ".syncd")  # the far side's state is lost
    ran = import_(far, month_one, expect=2)
    assert "it would roll this root back" in ran.err and "--allow-rollback" in ran.err
    assert snapshot_id(far) == snapshot_id(src)  # nothing was changed
    allowed = import_(far, month_one, args=("--allow-rollback",)).json
    assert allowed["status"] == "applied"
    assert snapshot_id(far) == snapshot_id(tiny_months[1])


def test_an_export_dated_ahead_of_this_clock_is_refused(
    tiny_months: dict[int, Path], tmp_path: Path
) -> None:
    src = copy_tree(tiny_months[1], tmp_path / "src")
    volume = volumes_of(export(src, tmp_path / "media", "--full"))[0]
    index = decode_index((volume / "index").read_bytes())
    ahead = time.time_ns() + TWO_DAYS_NS
    header = replace(index.header, created_ns=ahead)
    records = sorted(index.trees.items(), key=lambda item: item[0] != header.target)
    data = encode_index(header, index.files, encode_trees(records), index.blobs)
    (volume / "index").write_bytes(data)
    ran = import_(tmp_path / "far", volume, expect=2)
    assert "more than a day after this host's clock" in ran.err
    assert time.strftime("%Y-%m-%d", time.gmtime(ahead // 10**9)) in ran.err
    assert not (tmp_path / "far" / "content").exists()


def test_a_receipt_dated_ahead_of_this_clock_is_refused(
    tiny_months: dict[int, Path], tmp_path: Path
) -> None:
    far = copy_tree(tiny_months[1], tmp_path / "far")
    path = tmp_path / "receipt"
    receipt(far, path)
    parsed = decode_receipt(path.read_bytes())
    header = replace(parsed.header, created_ns=time.time_ns() + TWO_DAYS_NS)
    records = sorted(parsed.trees.items(), key=lambda item: item[0] != header.root)
    path.write_bytes(encode_receipt(header, encode_trees(records), parsed.staged))
    src = copy_tree(tiny_months[2], tmp_path / "src")
    ran = syncd("export", src, "--to", tmp_path / "media", "--receipt", path)
    assert ran.code == 2 and "more than a day after this host's clock" in ran.err
