"""The root a client names in HELLO (issue 13, item 9): compared as text with the served
root, never looked up; every other root answers ERROR BAD_PATH with the same sentence,
whether or not a user of that name exists, with no traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import blake3
import pytest

from protocol.errors import ErrorCode
from protocol.messages import Result
from protocol.tree import FileNode, encode_tree, tree_id
from reliability.serve_driver import Script, converse
from tests.pushutil import snapshot_id

DATA = b"hello, far side"


def offer() -> Script:
    piece = blake3.blake3(DATA).digest()
    record = encode_tree([FileNode("f", 0o644, len(DATA), 0, ((piece, len(DATA)),))])
    key = tree_id(record)
    return Script(key, {key: record}, {piece: DATA})


ODD = ["~nosuchuser123", "~root", "~", "a\x00b", "loop", "loop/x", "../far", "/", ""]


@pytest.mark.parametrize("asked", ODD[:-1])
def test_odd_roots_answer_bad_path_alike(far: Path, tmp_path: Path, asked: str) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")  # a symlink loop
    if asked.startswith("loop"):
        asked = str(tmp_path / asked)
    before = snapshot_id(far)
    script = offer()
    script.params = {"root": asked}
    reply = converse(far, script)
    assert "Traceback" not in reply.stderr, reply.stderr
    assert reply.error is not None, reply.events
    assert reply.error.code == ErrorCode.BAD_PATH
    assert reply.error.message == f"this far side serves {far}, not {asked!r}; nothing was changed"
    assert reply.exit_code == 2
    assert snapshot_id(far) == before


@pytest.mark.parametrize("asked", ["written", "trailing slash", "real path", "~/", "relative"])
def test_the_served_root_is_accepted_as_written_or_as_its_real_path(
    tmp_path: Path, asked: str
) -> None:
    """Serve runs in `tmp_path` (OpenSSH starts it in the login directory) with the root
    given as `srv-mirror`, a symlink to `data/mirror`."""
    real = tmp_path / "data" / "mirror"
    real.mkdir(parents=True)
    link = tmp_path / "srv-mirror"
    link.symlink_to(real)
    named = {
        "written": str(link),
        "trailing slash": f"{link}/",
        "real path": str(real),
        "~/": "~/srv-mirror",
        "relative": "./srv-mirror",
    }[asked]
    serve = [sys.executable, "-m", "syncd", "serve", "--stdio", "--root", "srv-mirror"]
    # Offer what the far side holds: the comparison of roots is what is tested here.
    script = Script(bytes.fromhex(snapshot_id(real)), params={"root": named})
    reply = converse(link, script, command=["env", "-C", str(tmp_path), *serve])
    assert reply.error is None, reply.error
    results = [e for e in reply.events if isinstance(e, Result)]
    assert results and results[0].status == "up-to-date", reply.events
