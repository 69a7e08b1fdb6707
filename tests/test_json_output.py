"""Every `--json` object has "format": 1 and its command, failures print one too, and
docs/JSON.md documents every field each command prints (issue 14, item 11)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.mediautil import Ran, copy_tree, syncd
from tests.pushutil import PROJECT

DOC = (PROJECT / "docs" / "JSON.md").read_text()
DOCUMENTED = set(re.findall(r"`([a-z_]+)`", DOC))


def fields(value: Any) -> set[str]:
    """Every key of every object in `value`, at any depth (keyed maps excluded)."""
    if isinstance(value, list):
        return set().union(*(fields(item) for item in value)) if value else set()
    if not isinstance(value, dict):
        return set()
    keys = {key for key in value if not key.startswith(("sparse", "graph"))}
    return keys | set().union(*(fields(v) for k, v in value.items() if k != "facts"))


def checked(ran: Ran, command: str, code: int = 0) -> dict[str, Any]:
    assert ran.code == code, ran.err
    value = ran.json
    assert value["format"] == 1 and value["command"] == command
    undocumented = fields(value) - DOCUMENTED
    assert not undocumented, f"{command}: fields not in docs/JSON.md: {sorted(undocumented)}"
    return value


def test_every_command_prints_documented_json(tiny_months: dict[int, Path], tmp_path: Path) -> None:
    src = copy_tree(tiny_months[1], tmp_path / "src")
    far, media = tmp_path / "far", tmp_path / "media"
    checked(syncd("scan", src, "--json"), "scan")
    checked(syncd("verify", src, "--json"), "verify")
    pushed = checked(syncd("push", src, far, "--json"), "push")
    assert pushed["target"] == str(far) and pushed["far_side"] == str(far)
    checked(syncd("diff", src, far, "--json"), "diff")
    checked(syncd("receipt", "--root", far, "--to", tmp_path / "receipt", "--json"), "receipt")
    copy_tree(tiny_months[2], tmp_path / "two")
    exported = checked(
        syncd("export", tmp_path / "two", "--to", media, "--full", "--json"), "export"
    )
    imported = checked(syncd("import", media, "--root", tmp_path / "far2", "--json"), "import")
    status = checked(syncd("import", "--status", "--root", tmp_path / "far2", "--json"), "import")
    shared = ("export", "target", "volume_count", "seen", "applied")
    assert {key: imported[key] for key in shared} == {key: status[key] for key in shared}
    assert "missing" in imported and "missing" in status  # the same shape, nested in both
    assert imported["export"] == exported["export"]
    checked(syncd("show", media, "--json"), "show")
    checked(syncd("audit", "--root", tmp_path / "far2", "--json"), "audit")
    parity = tmp_path / "parity"
    checked(
        syncd("export", tmp_path / "two", "--to", parity, "--full", "--parity", "1", "--json"),
        "export",
    )
    checked(syncd("import", parity, "--root", tmp_path / "far3", "--json"), "import")


def test_failures_print_a_json_object_too(tmp_path: Path) -> None:
    for args, command in (
        (("scan", tmp_path / "nowhere"), "scan"),
        (("push", tmp_path / "nowhere", tmp_path / "far"), "push"),
        (("import", "--status", "--root", tmp_path / "typo"), "import"),
        (("export", tmp_path / "nowhere", "--to", tmp_path / "media"), "export"),
    ):
        value = checked(syncd(*args, "--json"), command, code=2)
        assert value["exit_code"] == 2 and value["error"]
