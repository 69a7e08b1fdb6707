"""CI's slice of the corruption campaign (reliability/corruption.py): one mutation of each
kind of volume damage, imported into a far root; detected or harmless, never applied."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from protocol.media import decode_index
from reliability import corruption
from reliability.campaign import Context
from reliability.media_damage import KINDS, reencode
from tests.mediautil import copy_tree, export, import_, volumes_of


def test_quick_slice(tmp_path: Path) -> None:
    outcome = corruption.run(Context(20261125, tmp_path, quick=True))
    assert outcome.ok, outcome.failures
    tried = {f.name: f.value for f in outcome.figures}
    assert tried["mutations tried"] == str(len(KINDS))
    assert tried["bad bytes applied"] == "0"


def test_an_index_naming_a_blob_its_pack_does_not_hold_is_refused_by_name(
    tiny_months: dict[int, Path], tmp_path: Path
) -> None:
    """Found by the campaign: an index whose entry names another digest than the bytes at
    its offset (the pack still matching its checksum) was not refused when that digest was
    not wanted; the import then blamed the far tree for the blob that never arrived."""
    src = copy_tree(tiny_months[1], tmp_path / "src")
    volumes = volumes_of(export(src, tmp_path / "out", "--full", "--volume-size", "200k"))
    bad = volumes[1]
    index = decode_index((bad / "index").read_bytes())
    lie = replace(index.blobs[0], digest=bytes(32))
    (bad / "index").write_bytes(reencode(replace(index, blobs=(lie, *index.blobs[1:])), None))
    ran = import_(tmp_path / "far", *volumes, expect=2).json
    refused = [v for v in ran["volumes"] if v["status"] == "refused"]
    assert [Path(v["path"]).name for v in refused] == [bad.name]
    assert bad.name in refused[0]["problem"]
    assert "does not match its digest" in refused[0]["problem"]
    assert not (tmp_path / "far" / "content").exists()
