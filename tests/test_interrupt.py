"""Ctrl-C and SIGTERM stop a push, an export and an import (issue 14, item 4).

Each run is stopped at a moment chosen by what it has done (the far side has staged
bytes, the export has begun writing), never by a timer: the exit status, the one line
saying what was kept, a consistent far tree, and a rerun that completes are checked.
How fast it stops is measured by the crash campaign (reliability/crash_signals.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.mediautil import syncd
from tests.pushutil import push, snapshot_id, syncd_env

WAIT = 60.0  # seconds to wait for a condition or an exit (never a timing assertion)


def random_source(folder: Path, files: int = 4, size: int = 1_000_000) -> Path:
    (folder / "content").mkdir(parents=True)
    for n in range(files):
        (folder / "content" / f"f{n}.bin").write_bytes(os.urandom(size))
    return folder


BLOBS_STAGED = 200_000  # more than the tree records: blobs are arriving
# Many small files: the client reads (and frames) at most 512 pieces at a time, so the
# first frame arrives, and is staged, while the others are still on their way.
MANY, SMALL = 1100, 2000


def staged_bytes(far: Path) -> int:
    state = far / ".syncd"
    return sum(p.stat().st_size for p in state.rglob("*") if p.is_file() and "staging" in str(p))


def start(*args: str | Path, ignore_sigint: bool = False) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "syncd", *map(str, args)]
    if ignore_sigint:  # as a shell does for `syncd push ... &` in a script
        command = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *command]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=syncd_env()
    )


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert process.poll() is None, "the run ended before the moment to stop it"
        assert time.monotonic() < deadline, "the moment to stop it never came"
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("signum", "code", "ignored"),
    [(signal.SIGINT, 130, False), (signal.SIGTERM, 143, False), (signal.SIGINT, 130, True)],
    ids=["sigint", "sigterm", "sigint-in-a-background-job"],
)
def test_a_push_at_a_bwlimit_stops_and_keeps_what_arrived(
    tmp_path: Path, signum: int, code: int, ignored: bool
) -> None:
    src, far = random_source(tmp_path / "src", MANY, SMALL), tmp_path / "far"
    run = start("push", src, far, "--bwlimit", "400k", ignore_sigint=ignored)
    wait_for(lambda: staged_bytes(far) > BLOBS_STAGED, run)
    run.send_signal(signum)
    _, err = run.communicate(timeout=WAIT)
    assert run.returncode == code, err
    name = signal.Signals(signum).name
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith(f"syncd push: interrupted by {name}: about "), err
    assert "had been sent" in lines[-1] and "live tree is unchanged" in lines[-1]
    assert "Traceback" not in err
    assert not (far / "content").exists()  # nothing applied
    again = push(src, str(far))
    assert again["status"] == "applied"
    assert snapshot_id(far) == again["snapshot"]


def test_the_first_ctrl_c_in_a_terminal_stops_a_push(tmp_path: Path) -> None:
    """Ctrl-C on a terminal signals its whole foreground process group: the push, not
    the local far side (in its own session), decides what happens."""
    src, far = random_source(tmp_path / "src", MANY, SMALL), tmp_path / "far"
    master, slave = os.openpty()
    # setsid -c: a new session whose controlling terminal is its stdin, the pty.
    command = ["setsid", "-c", sys.executable, "-m", "syncd", "push", str(src), str(far)]
    run = subprocess.Popen(
        [*command, "--bwlimit", "400k"], stdin=slave, stdout=slave, stderr=slave, env=syncd_env()
    )
    os.close(slave)
    output = bytearray()
    try:
        while staged_bytes(far) <= BLOBS_STAGED:
            assert run.poll() is None
            time.sleep(0.02)
        os.write(master, b"\x03")  # one Ctrl-C
        code = run.wait(timeout=WAIT)
        output += _drain(master)
    finally:
        os.close(master)
        if run.poll() is None:
            run.kill()
    text = output.decode(errors="replace")
    assert code == 130, text
    assert "interrupted by SIGINT" in text
    assert not (far / "content").exists()  # it stopped before the far side had it all


def _drain(fd: int) -> bytes:
    data = bytearray()
    os.set_blocking(fd, False)
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO once the child side is closed, EAGAIN when empty
            return bytes(data)
        if not chunk:
            return bytes(data)
        data += chunk


def test_an_export_stops_and_leaves_nothing_that_looks_complete(tmp_path: Path) -> None:
    src, media = random_source(tmp_path / "src", files=8), tmp_path / "media"
    assert syncd("scan", src).code == 0
    run = start("export", src, "--to", media, "--full", "--volume-size", "2M")
    wait_for(lambda: any(media.glob("*.partial/vol-*")) if media.exists() else False, run)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=WAIT)
    assert run.returncode == 130, err
    assert "syncd export: interrupted by SIGINT: no export was completed" in err
    assert not [p for p in media.iterdir() if not p.name.endswith(".partial")]


def test_an_import_stops_and_the_next_one_finishes(tmp_path: Path) -> None:
    src, media, far = random_source(tmp_path / "src", files=8), tmp_path / "media", tmp_path / "far"
    assert syncd("export", src, "--to", media, "--full", "--volume-size", "2M").code == 0
    run = start("import", media, "--root", far)
    wait_for(lambda: staged_bytes(far) > 0, run)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=WAIT)
    assert run.returncode in (143, 0), err  # it may have finished first: that is fine too
    if run.returncode == 143:
        assert "syncd import: interrupted by SIGTERM: the volumes it had staged are kept" in err
    assert syncd("import", media, "--root", far).code == 0
    assert snapshot_id(far) == snapshot_id(src)
