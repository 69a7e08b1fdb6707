"""One contract for every transport: local child, SSH, and SSH through a forced command.

The far program is tests/far_echo.py, a stand-in for `syncd serve --stdio` that records
its argv in the root it was given and echoes stdin to stdout (through
`syncd.transport.stdio`, so the far side's channel is exercised too). Each test runs
against all three transports; the SSH ones use a real OpenSSH sshd on 127.0.0.1.

The rate limiter is tested with an injected clock: no assertion depends on wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import shlex
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from syncd.errors import UsageError
from syncd.transport import (
    Channel,
    ChannelClosed,
    ConnectError,
    RateLimited,
    Target,
    open_local,
    open_ssh,
    parse_rate,
    parse_target,
)
from syncd.transport.ratelimit import GRANULARITY, TokenBucket
from tests.sshd import FAR_ECHO, SSHServer, far_echo_command

T = TypeVar("T")
MiB = 1 << 20
ROUND_TRIP = 64 * MiB
ARGV_FILE = "far_echo.argv.json"
MODE_FILE = "far_echo.mode.json"
# A root that breaks naive quoting: spaces, $, ;, quotes, backquotes, glob characters.
ROOT_NAME = "root with spaces $HOME; echo pwned 'q' \"dq\" `x` * ~"

Connect = Callable[[Path, float | None, float], Awaitable[Channel]]


def run(coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
    """Run one test's async body; the timeout only turns a deadlock into a failure."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@dataclass
class Far:
    name: str
    connect: Connect


def _local() -> Far:
    async def connect(root: Path, bwlimit: float | None, close_timeout: float) -> Channel:
        argv = [sys.executable, str(FAR_ECHO)]
        return await open_local(
            root, remote_syncd=argv, bwlimit=bwlimit, close_timeout=close_timeout
        )

    return Far("local", connect)


def _ssh(server: SSHServer) -> Far:
    async def connect(root: Path, bwlimit: float | None, close_timeout: float) -> Channel:
        target = Target("ssh", "root", "127.0.0.1", server.port, str(root))
        return await open_ssh(
            target, remote_syncd=far_echo_command(), bwlimit=bwlimit, close_timeout=close_timeout
        )

    return Far("ssh", connect)


def _ssh_forced(server: SSHServer) -> Far:
    """The far program is pinned by `restrict,command="..."`; the client's own command
    (a program that does not exist) is never run."""

    async def connect(root: Path, bwlimit: float | None, close_timeout: float) -> Channel:
        server.force_command(f"{far_echo_command()} serve --stdio --root {shlex.quote(str(root))}")
        return await open_ssh(
            parse_target(f"far-forced:{root}"),
            remote_syncd="/nonexistent/syncd",
            bwlimit=bwlimit,
            close_timeout=close_timeout,
        )

    return Far("ssh-forced", connect)


@pytest.fixture(
    params=[
        "local",
        pytest.param("ssh", marks=pytest.mark.needs_sshd),
        pytest.param("ssh-forced", marks=pytest.mark.needs_sshd),
    ]
)
def far(request: pytest.FixtureRequest) -> Far:
    if request.param == "local":
        return _local()
    server: SSHServer = request.getfixturevalue("sshd")
    return _ssh(server) if request.param == "ssh" else _ssh_forced(server)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / ROOT_NAME
    path.mkdir()
    return path


def set_mode(root: Path, **mode: object) -> None:
    (root / MODE_FILE).write_text(json.dumps(mode))


def recorded_argv(root: Path) -> list[str]:
    argv: list[str] = json.loads((root / ARGV_FILE).read_text())["argv"]
    return argv


async def read_exactly(channel: Channel, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        data = await channel.read()
        assert data, f"EOF after {len(got)} of {n} bytes: {channel.diagnostics()}"
        got += data
    return bytes(got)


# -- the contract -------------------------------------------------------------------


def test_far_program_gets_exact_argv(far: Far, root: Path) -> None:
    """The root reaches the far program as one argument, byte for byte, whatever it holds."""

    async def body() -> str:
        channel = await far.connect(root, None, 30.0)
        await channel.close()
        return channel.describe()

    description = run(body())
    assert recorded_argv(root) == ["serve", "--stdio", "--root", str(root)]
    assert description


def _blocks() -> list[bytes]:
    """64 MiB of distinct random bytes in blocks of assorted sizes (1 B to 3 MiB)."""
    rng = random.Random(20261124)
    sizes = [1, 7, 4096, 65535, 65537, MiB - 1, MiB, 3 * MiB]
    blocks: list[bytes] = []
    total = 0
    while total < ROUND_TRIP:
        size = min(sizes[len(blocks) % len(sizes)], ROUND_TRIP - total)
        blocks.append(rng.randbytes(size))
        total += size
    return blocks


def test_round_trip_64_mib_both_ways_concurrently(far: Far, root: Path) -> None:
    """Writer and reader run at once: 64 MiB go out and come back while more is being
    sent, with backpressure on both legs and no deadlock; the bytes are equal."""
    blocks = _blocks()
    sent = hashlib.sha256(b"".join(blocks)).hexdigest()

    async def body() -> tuple[int, str, bytes, str]:
        channel = await far.connect(root, None, 30.0)
        received = hashlib.sha256()

        async def writer() -> None:
            for block in blocks:
                await channel.write(block)

        async def reader() -> int:
            count = 0
            while count < ROUND_TRIP:
                data = await channel.read()
                assert data, f"early EOF at {count}: {channel.diagnostics()}"
                received.update(data)
                count += len(data)
            return count

        _, count = await asyncio.gather(writer(), reader())
        await channel.close()
        return count, received.hexdigest(), await channel.read(), channel.diagnostics()

    count, digest, after, diagnostics = run(body())
    assert count == ROUND_TRIP
    assert digest == sent
    assert after == b""
    assert "exited with status 0" in diagnostics


def test_close_sends_eof_and_is_idempotent(far: Far, root: Path) -> None:
    """close() gives the far side EOF (it echoes what it had, then exits 0); afterwards
    reads return b"", writes raise ChannelClosed, and close() may be repeated."""

    async def body() -> tuple[bytes, bytes, bytes, str]:
        channel = await far.connect(root, None, 30.0)
        await channel.write(b"hello")
        echoed = await read_exactly(channel, 5)
        await channel.close()
        await asyncio.gather(channel.close(), channel.close())
        first, second = await channel.read(), await channel.read()
        with pytest.raises(ChannelClosed):
            await channel.write(b"late")
        return echoed, first, second, channel.diagnostics()

    echoed, first, second, diagnostics = run(body())
    assert echoed == b"hello"
    assert first == second == b""
    assert "exited with status 0" in diagnostics


def test_far_exit_gives_eof_stderr_and_status(far: Far, root: Path) -> None:
    """A far side that writes to stderr and exits 3 without reading: reads return b""
    (repeatedly), and diagnostics() carries its stderr and exit status."""
    set_mode(root, stderr="far side says: disk full on /srv\n", echo=False, exit=3)

    async def body() -> tuple[bytes, bytes, str]:
        channel = await far.connect(root, None, 30.0)
        first, second = await channel.read(), await channel.read()
        await channel.close()
        return first, second, channel.diagnostics()

    first, second, diagnostics = run(body())
    assert first == second == b""
    lines = diagnostics.splitlines()
    assert lines[0] == "(the far side exited with status 3)"
    assert lines[-1] == "far side says: disk full on /srv"  # the last thing it said


def test_write_to_exited_far_side_raises(far: Far, root: Path) -> None:
    """Writing to a far side that is gone ends in ChannelClosed, never a hang."""
    set_mode(root, echo=False, exit=0)

    async def body() -> None:
        channel = await far.connect(root, None, 30.0)
        assert await channel.read() == b""
        with pytest.raises(ChannelClosed):
            for _ in range(64):
                await channel.write(bytes(MiB))
        await channel.close()

    run(body())


def test_stderr_is_captured_concurrently_and_bounded(far: Far, root: Path) -> None:
    """300 kB of stderr before the echo starts: more than a pipe holds, so the far side
    only gets to echoing if stderr is drained in the background; diagnostics() keeps the
    last 64 KiB."""
    set_mode(root, stderr_bytes=300_000)

    async def body() -> tuple[bytes, str]:
        channel = await far.connect(root, None, 30.0)
        await channel.write(b"ping")
        echoed = await read_exactly(channel, 4)
        await channel.close()
        return echoed, channel.diagnostics()

    echoed, diagnostics = run(body())
    assert echoed == b"ping"
    assert "END" in diagnostics
    assert "omitted" in diagnostics
    assert 64 * 1024 <= len(diagnostics) < 64 * 1024 + 200


def test_close_gives_up_on_a_far_side_that_ignores_eof(far: Far, root: Path) -> None:
    """A far side that lingers after EOF: close() returns anyway once close_timeout has
    passed, and diagnostics() says so. A local child is terminated; over SSH we ask for
    SIGTERM, which OpenSSH refuses for root and forced-command sessions, and close."""
    set_mode(root, linger=60)

    async def body() -> str:
        channel = await far.connect(root, None, 0.5)
        await channel.close()
        return channel.diagnostics()

    try:
        diagnostics = run(body())
    finally:
        pid = json.loads((root / ARGV_FILE).read_text())["pid"]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # the far program this test started, if it lingers
    assert "did not exit within 0.5 s" in diagnostics
    if far.name == "local":
        assert "killed by SIGTERM" in diagnostics


def test_rate_limited_channel_over_transport(far: Far, root: Path) -> None:
    """--bwlimit wraps the channel; bytes still go through intact (a high rate, so the
    test stays fast; the limiting itself is tested with an injected clock below)."""

    async def body() -> tuple[Channel, bytes]:
        channel = await far.connect(root, 200e6, 30.0)
        data = random.Random(7).randbytes(3 * MiB)
        writer = asyncio.ensure_future(channel.write(data))
        echoed = await read_exactly(channel, len(data))
        await writer
        await channel.close()
        return channel, hashlib.sha256(echoed).digest() + hashlib.sha256(data).digest()

    channel, digests = run(body())
    assert isinstance(channel, RateLimited)
    assert digests[:32] == digests[32:]


def test_missing_local_program_is_a_connect_error(root: Path) -> None:
    async def body() -> None:
        await open_local(root, remote_syncd=["/nonexistent/syncd"])

    with pytest.raises(ConnectError, match="/nonexistent/syncd"):
        run(body())


# -- the far side's own end (stdio) ---------------------------------------------------


def test_stdio_with_regular_files(root: Path, tmp_path: Path) -> None:
    """`serve --stdio < file > file`: not pipes, so the stdio channel falls back to
    threads; the bytes come through unchanged."""
    data = random.Random(3).randbytes(5 * MiB + 3)
    (tmp_path / "in.bin").write_bytes(data)
    with (tmp_path / "in.bin").open("rb") as src, (tmp_path / "out.bin").open("wb") as dst:
        done = subprocess.run(
            [sys.executable, str(FAR_ECHO), "serve", "--stdio", "--root", str(root)],
            stdin=src,
            stdout=dst,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.bin").read_bytes() == data


STRAY_PRINT = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
from syncd.transport.stdio import open_stdio

async def main():
    channel = await open_stdio()
    print("stray print", flush=True)
    await channel.write(b"protocol bytes")
    await channel.close()

asyncio.run(main())
"""


def test_stdio_keeps_stray_prints_off_the_stream() -> None:
    """In serve mode stdout is the protocol: after open_stdio(), print() lands on stderr."""
    repo = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run(
        [sys.executable, "-c", STRAY_PRINT, repo], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"protocol bytes"
    assert b"stray print" in done.stderr


# -- rate limiting with an injected clock ---------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Recorder:
    """A Channel that records (time, size, bytes) of every write."""

    def __init__(self, time: FakeTime) -> None:
        self.time = time
        self.writes: list[tuple[float, bytes]] = []
        self.closed = False

    async def read(self, max_bytes: int = MiB) -> bytes:
        return b"from far"[:max_bytes]

    async def write(self, data: bytes) -> None:
        self.writes.append((self.time.now, data))
        await asyncio.sleep(0)  # let a concurrent writer try to interleave

    async def close(self) -> None:
        self.closed = True

    def describe(self) -> str:
        return "recorder"

    def diagnostics(self) -> str:
        return "nothing to report"


def test_rate_limit_never_exceeds_rate_plus_burst() -> None:
    rate = 1_000_000.0
    fake = FakeTime()
    recorder = Recorder(fake)
    limited = RateLimited(recorder, rate, clock=fake.clock, sleep=fake.sleep)
    sizes = [1, 10, 49_999, 50_000, 50_001, 123_456, 1_000_000, 3_333_333, 7]
    data = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    start = fake.now

    async def body() -> None:
        for chunk in data:
            await limited.write(chunk)

    run(body())
    total = sum(sizes)
    burst = rate * GRANULARITY
    assert b"".join(d for _, d in recorder.writes) == b"".join(data)
    assert max(len(d) for _, d in recorder.writes) <= burst
    sent = 0
    for when, chunk in recorder.writes:
        sent += len(chunk)
        # Everything released by `when` (this write included) fits the bucket.
        assert sent <= burst + rate * (when - start) + 1e-6
    elapsed = fake.now - start
    assert (total - burst) / rate - 1e-9 <= elapsed <= total / rate
    assert max(fake.sleeps) <= GRANULARITY + 1e-9  # smooth: no long stalls


def test_rate_limit_idle_time_does_not_bank_a_big_burst() -> None:
    fake = FakeTime()
    bucket = TokenBucket(rate=1000.0, burst=50.0, clock=fake.clock)
    assert bucket.reserve(50) == 0.0
    fake.now += 3600.0  # an hour idle
    assert bucket.reserve(50) == 0.0
    assert bucket.reserve(100) == pytest.approx(0.1)


def test_rate_limited_writes_stay_whole_and_calls_pass_through() -> None:
    fake = FakeTime()
    recorder = Recorder(fake)
    limited = RateLimited(recorder, 10_000.0, clock=fake.clock, sleep=fake.sleep)

    async def body() -> bytes:
        await asyncio.gather(limited.write(b"a" * 2000), limited.write(b"b" * 2000))
        got = await limited.read()
        await limited.close()
        return got

    assert run(body()) == b"from far"
    stream = b"".join(d for _, d in recorder.writes)
    assert stream in (b"a" * 2000 + b"b" * 2000, b"b" * 2000 + b"a" * 2000)
    assert recorder.closed
    assert limited.describe() == "recorder"
    assert limited.diagnostics() == "nothing to report"
    with pytest.raises(ValueError, match="positive"):
        RateLimited(recorder, 0)


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("10M", 10e6),
        ("500k", 500e3),
        ("500K", 500e3),
        ("1.5MB/s", 1.5e6),
        ("1G", 1e9),
        ("2MiB", 2 * MiB),
        ("1000", 1000),
        (" 25 MB/s ", 25e6),
    ],
)
def test_parse_rate(text: str, rate: float) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    "text", ["", "fast", "10 Mbit", "-1M", "0", "0k", "1M/h", "1.5", "999", "0.5k"]
)
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="rate"):
        parse_rate(text)
