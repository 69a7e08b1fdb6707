"""A scripted client against a real `syncd serve --stdio` process, for hostile input.

The client side runs its own Connection (so the server's frames are checked as usual) and
answers GET_TREES and WANT from tables that may hold anything, including records no
honest source would send. `inject` may replace the answer at any event with raw bytes
(a bomb, a frame over the limit, a message out of order); `opening` replaces the whole
greeting. The server's ERROR, its exit status and its stderr are returned.

`command` replaces the local `syncd serve` process by any other that carries the same
conversation on its stdin/stdout: the SSH campaign passes an OpenSSH client logging in
with a forced-command key, so the same scripts reach `serve` through a real SSH channel.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from protocol.connection import MIN_PEER_FRAME, NEED_DATA, Closed, Connection, Role
from protocol.errors import ProtocolError
from protocol.framing import FrameDecoder
from protocol.limits import DEFAULT_LIMITS
from protocol.messages import (
    Blobs,
    Bye,
    Error,
    GetTrees,
    Hello,
    Offer,
    Report,
    Result,
    Trees,
    Want,
    decode_message,
)
from tests.pushutil import syncd_env

PARAMS: dict[str, str | int | bool] = {"max_frame": MIN_PEER_FRAME + 65536}
TIMEOUT = 60.0

# Given the client's connection and the event just received: raw bytes to send instead of
# the honest answer, or None to answer honestly.
Inject = Callable[[Connection, object], bytes | None]


@dataclass(slots=True)
class Script:
    offer_root: bytes
    trees: dict[bytes, bytes] = field(default_factory=dict)
    blobs: dict[bytes, bytes] = field(default_factory=dict)
    inject: Inject | None = None
    opening: bytes | None = None  # raw bytes instead of HELLO + OFFER
    params: dict[str, str | int | bool] | None = None  # HELLO parameters (default PARAMS)


@dataclass(slots=True)
class Reply:
    error: Error | None
    exit_code: int
    stderr: str
    events: list[object]


# (far root, script) -> the server's reply: how a case reaches the server.
Talk = Callable[[Path, Script], Reply]


def converse(
    far: Path,
    script: Script,
    *,
    command: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Reply:
    if command is None:
        command = [sys.executable, "-m", "syncd", "serve", "--stdio", "--root", str(far)]
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env=dict(env) if env is not None else syncd_env(),
        )
        try:
            events = _talk(proc, script)
            exit_code = proc.wait(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    error = next((e for e in events if isinstance(e, Error)), None)
    return Reply(error, exit_code, stderr, events)


def _talk(proc: subprocess.Popen[bytes], script: Script) -> list[object]:
    assert proc.stdin is not None and proc.stdout is not None
    conn = Connection(Role.CLIENT)
    events: list[object] = []
    if script.opening is not None:
        _write(proc, script.opening)
        _close_input(proc)
        return _collect(proc)
    params = PARAMS if script.params is None else {**PARAMS, **script.params}
    _write(proc, conn.send(Hello((1, 1), "hostile", (), params)))
    _write(proc, conn.send(Offer(script.offer_root, 1, 1, True, True)))
    while data := _read(proc):
        conn.receive_data(data)
        if not _handle(proc, conn, script, events):
            break
    _close_input(proc)
    return events


def _collect(proc: subprocess.Popen[bytes]) -> list[object]:
    """Every message the server sends after a raw opening (no client state to check)."""
    decoder = FrameDecoder(DEFAULT_LIMITS)
    events: list[object] = []
    while data := _read(proc):
        decoder.feed(data)
        while (payload := decoder.next_payload()) is not None:
            events.append(decode_message(payload, DEFAULT_LIMITS))
    return events


def _handle(
    proc: subprocess.Popen[bytes], conn: Connection, script: Script, events: list[object]
) -> bool:
    """Take the events the data gave; False once the conversation is over."""
    try:
        while (event := conn.next_event()) is not NEED_DATA:
            if isinstance(event, Closed):
                return False
            events.append(event)
            if isinstance(event, Error):
                return False
            raw = script.inject(conn, event) if script.inject else None
            if raw is not None:
                _write(proc, raw)
                _close_input(proc)
                continue
            for frame in _answer(conn, script, event):
                _write(proc, frame)
    except ProtocolError as exc:  # the server said something our client refuses
        events.append(exc)
        return False
    return True


def _answer(conn: Connection, script: Script, event: object) -> list[bytes]:
    if isinstance(event, GetTrees):
        return [conn.send(Trees(tuple((key, script.trees[key]) for key in event.ids)))]
    if isinstance(event, Want):
        return [conn.send(Blobs(tuple((d, script.blobs[d]) for d, _ in event.blobs)))]
    if isinstance(event, Result):
        return [] if conn.report_asked else [conn.send(Bye())]
    if isinstance(event, Report):
        return [conn.send(Bye())]
    return []


def _write(proc: subprocess.Popen[bytes], data: bytes) -> None:
    assert proc.stdin is not None
    if proc.stdin.closed:
        return
    try:
        proc.stdin.write(data)
        proc.stdin.flush()
    except BrokenPipeError:  # the server stopped reading: it has refused already
        proc.stdin.close()


def _close_input(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdin is not None
    if not proc.stdin.closed:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()


def _read(proc: subprocess.Popen[bytes]) -> bytes:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
    if not ready:
        raise TimeoutError(f"syncd serve said nothing for {TIMEOUT:.0f} s")
    return os.read(proc.stdout.fileno(), 65536)
