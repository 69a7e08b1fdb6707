"""The far side's description of a change is written as it is read, not built whole
(issue 17: a cold push of a million files held it as dicts and text beside the apply,
1.76 GB at the scale campaign's size); what is written is the same JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.manifest import Change, ImageChange, PathChange, TransferManifest
from syncd.apply.durable import write_chunks_atomically
from syncd.gate import audit
from syncd.gate.origin import Origin
from syncd.media.manifest import change_json, change_json_chunks

PATHS = st.builds(
    PathChange,
    st.sampled_from(Change),
    st.text(min_size=1, max_size=30),
    st.integers(min_value=0, max_value=1 << 40),
    st.none() | st.binary(min_size=32, max_size=32),
)
IMAGE = ImageChange(Change.ADDED, "r/docker/registry/v2", "ns/app", "v1", "sha256:ab", "", ())


def manifest(paths: list[PathChange]) -> TransferManifest:
    return TransferManifest("far snapshot 0123", b"\x01" * 32, (IMAGE,), tuple(paths))


@given(st.lists(PATHS, max_size=9000))
def test_the_chunks_are_the_json_of_the_change(paths: list[PathChange]) -> None:
    head: dict[str, object] = {"format": 1, "target": "ab"}
    text = b"".join(change_json_chunks(head, manifest(paths)))
    assert json.loads(text) == {**head, **change_json(manifest(paths))}


def test_written_atomically_in_chunks(tmp_path: Path) -> None:
    target = tmp_path / "pending.json"
    paths = [PathChange(Change.ADDED, f"d/{n}", n, None) for n in range(10_000)]
    write_chunks_atomically(target, change_json_chunks({"format": 1}, manifest(paths)))
    assert len(json.loads(target.read_text())["paths"]) == 10_000
    assert not (tmp_path / "pending.json.tmp").exists()


def test_the_audit_entry_keeps_counts_and_images_not_paths() -> None:
    paths = [PathChange(Change.REMOVED, "a", 0, None), PathChange(Change.ADDED, "b", 1, None)]
    origin = Origin("push")
    entry = audit.Entry.of(origin, b"\x02" * 32, b"\x03" * 32, manifest(paths))
    assert entry.files == {"added": 1, "changed": 0, "removed": 1}
    assert entry.as_json()["images"] == [
        {
            "change": "added",
            "registry": IMAGE.registry,
            "image": "ns/app:v1",
            "digest": "sha256:ab",
            "previous": None,
            "platforms": [],
        }
    ]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "pending.json"
    target.write_text("old")

    def chunks() -> Iterator[bytes]:
        yield b"new"
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_chunks_atomically(target, chunks())
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]
