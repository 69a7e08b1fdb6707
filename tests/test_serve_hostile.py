"""A hostile or broken client against a real `syncd serve`: a clear error, the session
ends, and the live tree is exactly as it was."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest

from protocol.codec import pack
from protocol.connection import MIN_PEER_FRAME, NEED_DATA, Closed, Connection, Role
from protocol.errors import ErrorCode
from protocol.framing import HEADER
from protocol.messages import Blobs, Error, Hello, Offer, Trees
from protocol.tree import FileNode, encode_tree, tree_id
from syncd.transport.local import open_local
from tests.pushutil import run_push, snapshot_id, syncd_env

PARAMS: dict[str, str | int | bool] = {"max_frame": MIN_PEER_FRAME + 65536}
DATA = b"hello, far side"
PIECE = blake3.blake3(DATA).digest()


def good_root() -> tuple[bytes, bytes]:
    record = encode_tree([FileNode("f", 0o644, len(DATA), 0, ((PIECE, len(DATA)),))])
    return tree_id(record), record


def evil_record() -> tuple[bytes, bytes]:
    """A record naming '..': canonical msgpack, correct id, invalid path."""
    record = pack([["..", 0, 0o644, len(DATA), 0, [[PIECE, len(DATA)]]]])
    return tree_id(record), record


def serve_command(far: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "syncd", "serve", "--stdio", "--root", str(far), *flags]


async def converse(
    far: Path, script: Callable[[Connection], list[bytes]], offer_root: bytes
) -> tuple[list[object], str]:
    """Send HELLO+OFFER, answer the far side with `script`, return its events and stderr."""
    channel = await open_local(far)
    conn = Connection(Role.CLIENT)
    events: list[object] = []
    try:
        await channel.write(conn.send(Hello((1, 1), "hostile", (), PARAMS)))
        await channel.write(conn.send(Offer(offer_root, 1, len(DATA), True, True)))
        while True:
            data = await channel.read()
            conn.receive_data(data)
            try:
                while (event := conn.next_event()) is not NEED_DATA:
                    if isinstance(event, Closed):
                        return events, channel.diagnostics()
                    events.append(event)
                    if isinstance(event, Error):
                        return events, channel.diagnostics()
                    for frame in script(conn):
                        await channel.write(frame)
            except Exception as exc:  # the test inspects what happened, not our client
                events.append(exc)
                return events, channel.diagnostics()
            if not data:
                return events, channel.diagnostics()
    finally:
        await channel.close()


def run(
    far: Path, script: Callable[[Connection], list[bytes]], offer_root: bytes
) -> tuple[Error, str]:
    before = snapshot_id(far)
    events, stderr = asyncio.run(converse(far, script, offer_root))
    errors = [e for e in events if isinstance(e, Error)]
    assert errors, f"no ERROR from the far side; events: {events}"
    assert snapshot_id(far) == before, "the live tree changed"
    assert "Traceback" not in stderr
    return errors[0], stderr


def answer_trees(record: tuple[bytes, bytes]) -> Callable[[Connection], list[bytes]]:
    def script(conn: Connection) -> list[bytes]:
        if conn.trees_due:
            return [conn.send(Trees((record,)))]
        return []

    return script


def test_path_outside_the_root_is_refused(far: Path) -> None:
    key, record = evil_record()
    error, _ = run(far, answer_trees((key, record)), key)
    assert error.code == ErrorCode.BAD_PATH
    assert ".." in error.message


def test_frame_over_the_limit_is_refused(far: Path) -> None:
    def script(conn: Connection) -> list[bytes]:
        return [HEADER.pack(MIN_PEER_FRAME + 10 * 65536)] if conn.trees_due else []

    error, _ = run(far, script, good_root()[0])
    assert error.code == ErrorCode.LIMIT


def test_blob_with_a_wrong_hash_is_refused(far: Path) -> None:
    key, record = good_root()
    sent = {"trees": False}

    def script(conn: Connection) -> list[bytes]:
        if conn.trees_due and not sent["trees"]:
            sent["trees"] = True
            return [conn.send(Trees(((key, record),)))]
        if conn.blobs_due:
            # The right digest and length, other bytes.
            return [conn.send(Blobs(((PIECE, b"x" * len(DATA)),)))]
        return []

    error, _ = run(far, script, key)
    assert error.code == ErrorCode.HASH_MISMATCH
    assert not (far / "f").exists()


def test_unexpected_message_is_refused(far: Path) -> None:
    def script(conn: Connection) -> list[bytes]:
        # BYE in the middle of the descent: not allowed (the client's own state machine
        # would refuse to send it, so the frame is built by hand).
        return [HEADER.pack(2) + b"\x91\x0b"] if conn.trees_due else []

    error, _ = run(far, script, good_root()[0])
    assert error.code == ErrorCode.UNEXPECTED


def test_another_root_is_refused(far: Path, tmp_path: Path) -> None:
    async def ask_for_other_root() -> list[object]:
        channel = await open_local(far)
        conn = Connection(Role.CLIENT)
        try:
            params = {**PARAMS, "root": str(tmp_path / "elsewhere")}
            await channel.write(conn.send(Hello((1, 1), "hostile", (), params)))
            await channel.write(conn.send(Offer(good_root()[0], 1, 1, True, True)))
            events: list[object] = []
            while data := await channel.read():
                conn.receive_data(data)
                try:
                    while (event := conn.next_event()) is not NEED_DATA:
                        if isinstance(event, Closed):
                            return events
                        events.append(event)
                except Exception as exc:
                    events.append(exc)
            return events
        finally:
            await channel.close()

    before = snapshot_id(far)
    events = asyncio.run(ask_for_other_root())
    errors = [e for e in events if isinstance(e, Error)]
    assert errors and errors[0].code == ErrorCode.BAD_PATH
    assert "serves" in errors[0].message
    assert snapshot_id(far) == before
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("opening", ["nothing", "half a HELLO"])
def test_a_client_that_never_says_hello_is_dropped(far: Path, opening: str) -> None:
    """A stalled client (its stdin stays open) would otherwise hold the root's lock."""
    before = snapshot_id(far)
    hello = Connection(Role.CLIENT).send(Hello((1, 1), "stalled", (), PARAMS))
    sent = hello[: len(hello) // 2] if opening == "half a HELLO" else b""
    with subprocess.Popen(
        serve_command(far, "--handshake-timeout", "500ms"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=syncd_env(),
    ) as serve:
        assert serve.stdin and serve.stdout and serve.stderr
        serve.stdin.write(sent)
        serve.stdin.flush()
        code = serve.wait(timeout=120)
        replies, stderr = serve.stdout.read(), serve.stderr.read().decode()
    assert code == 2, stderr
    assert "no HELLO within 0.5 s" in stderr and "Traceback" not in stderr
    assert snapshot_id(far) == before
    reader = Connection(Role.CLIENT)  # ERROR is allowed in every phase
    reader.receive_data(replies)
    error = reader.next_event()
    assert isinstance(error, Error) and error.code == ErrorCode.REMOTE, error


def test_a_silent_client_does_not_keep_an_honest_push_out(far: Path, tmp_path: Path) -> None:
    """The root's lock is taken after HELLO: a client that connects and says nothing
    (a stray `ssh` on the forced command) leaves the root free for an honest push."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("honest\n")
    with subprocess.Popen(
        serve_command(far, "--handshake-timeout", "60s"),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=syncd_env(),
    ) as silent:
        time.sleep(2)  # let it start and wait for HELLO (before the fix: holding the lock)
        try:
            done = run_push(src, str(far), "--force")
        finally:
            silent.kill()
    assert done.returncode == 0, done.stderr
    assert snapshot_id(far) == snapshot_id(src)


def test_handshake_timeout_must_be_a_duration(far: Path) -> None:
    result = subprocess.run(
        serve_command(far, "--handshake-timeout", "0"),
        capture_output=True,
        text=True,
        env=syncd_env(),
        timeout=120,
        check=False,
    )
    assert result.returncode == 2 and "above zero" in result.stderr


def test_serve_reading_dev_null_ends_instead_of_hanging(far: Path) -> None:
    """/dev/null is a character device that epoll refuses: it must be read another way."""
    before = snapshot_id(far)
    result = subprocess.run(
        serve_command(far),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=syncd_env(),
        timeout=120,
        check=False,
    )
    stderr = result.stderr.decode()
    assert result.returncode == 2 and "truncated" in stderr, stderr
    assert snapshot_id(far) == before
