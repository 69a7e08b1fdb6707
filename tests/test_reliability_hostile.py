"""CI's slice of the hostile campaign (reliability/hostile.py), and the regression tests
for what the campaign found."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.errors import ErrorCode, ProtocolError
from protocol.tree import DirNode, FileNode, Node, encode_tree, tree_id
from reliability import hostile, hostile_cases
from reliability.campaign import Context
from reliability.serve_driver import Script, converse
from syncd.apply.target import write_target
from syncd.scan.api import scan_root
from syncd.state import StateDir
from tests.pushutil import snapshot_id


def test_quick_slice(tmp_path: Path) -> None:
    outcome = hostile.run(Context(20261125, tmp_path, quick=True))
    assert outcome.ok, outcome.failures
    figures = {f.name: f.value for f in outcome.figures}
    assert figures["bytes written outside the root"] == "0"


def chain(levels: int, bottom: list[Node]) -> tuple[bytes, dict[bytes, bytes]]:
    """Directories nested `levels` deep, each named by 255 bytes, holding `bottom`."""
    record = encode_tree(bottom)
    key = tree_id(record)
    records = {key: record}
    for level in range(levels):
        record = encode_tree([DirNode(f"{level:03d}" + "d" * 252, 0o755, key)])
        key = tree_id(record)
        records[key] = record
    return key, records


def test_a_target_with_a_path_longer_than_path_max_is_refused(tmp_path: Path) -> None:
    # 16 names of 255 bytes and their slashes make 4095 bytes: the directory fits, the file
    # below it ("/f") does not. Every name alone is valid.
    root, records = chain(16, [FileNode("f", 0o644, 0, 0, ())])
    with pytest.raises(ProtocolError) as info:
        write_target(tmp_path / "target", root, records.get)
    assert info.value.code is ErrorCode.LIMIT
    assert "4097 bytes" in info.value.message and "4096" in info.value.message
    assert not (tmp_path / "target").exists()


def test_a_target_with_a_path_of_exactly_path_max_is_accepted(tmp_path: Path) -> None:
    root, records = chain(16, [])  # the deepest directory holds nothing: its path is 4095 bytes
    assert write_target(tmp_path / "target", root, records.get).summary.root == root


def test_a_path_longer_than_path_max_over_the_wire_changes_nothing(tmp_path: Path) -> None:
    """Found by the campaign: such a tree was applied (its directories created one at a
    time), then failed its final check and left a journal that could never finish."""
    far = tmp_path / "far"
    (far / "keep").mkdir(parents=True)
    (far / "keep" / "file").write_bytes(b"existing")
    scan_root(far, StateDir(far))  # a far root syncd knows (serve refuses strangers')
    before = snapshot_id(far)
    records = hostile_cases.deep_chain(17)
    script = Script(next(iter(records)), records, {hostile_cases.PIECE: hostile_cases.DATA})
    reply = converse(far, script)
    assert reply.error is not None and reply.error.code == ErrorCode.LIMIT
    assert "longer than the limit of 4096 bytes" in reply.error.message
    assert reply.exit_code != 0 and "Traceback" not in reply.stderr
    assert snapshot_id(far) == before
    assert not (far / ".syncd" / "journal").exists()
