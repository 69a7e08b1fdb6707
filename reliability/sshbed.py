"""The SSH campaign's tools: the README's forced command, the OpenSSH client, the far view.

- `forced_command(root)` is the command of README's authorized_keys line,
  `restrict,command="syncd serve --stdio --root R"`, with `syncd` spelled as this
  environment installs it (sshd's PATH does not hold the virtualenv);
- `ssh_argv` runs OpenSSH's own `ssh`, `scp` or `sftp` as the test server's client:
  its config aliases, its known_hosts, batch mode (OpenSSH takes ~ from the password
  database, not $HOME, so every file is named);
- `session` logs in, waits for the far `syncd serve` process, reads what /proc shows of
  it (environment, what its stdin is), sends HELLO and returns the root the server says
  it serves: evidence of what ran, taken from the far process itself;
- a `Check` is one named case; it returns "" when it held, else the problem in words.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from protocol.connection import MIN_PEER_FRAME, NEED_DATA, Connection, Role
from protocol.errors import ProtocolError
from protocol.messages import Hello
from tests.sshd import SSHServer

WAIT = 20.0  # seconds for a far process to appear or a client to finish
HELLO_PARAMS: dict[str, str | int | bool] = {"max_frame": MIN_PEER_FRAME + 65536}


@dataclass
class Bed:
    """The campaign's sshd (`main`), a small source tree, and fresh names below scratch."""

    scratch: Path
    main: SSHServer
    source: Path
    quick: bool = False
    bytes_outside: int = 0  # changed beside the far roots of the wire cases
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    @property
    def markers(self) -> Path:
        """Where every marker a case names would land, had the far side run anything."""
        return self.scratch / "markers"

    def fresh(self, stem: str) -> Path:
        """A new path (not created) below scratch/cases."""
        return self.scratch / "cases" / f"{stem}-{next(self._numbers)}"

    def marker(self, stem: str) -> Path:
        return self.markers / f"{stem}-{next(self._numbers)}"


@dataclass(frozen=True, slots=True)
class Check:
    category: str
    name: str
    run: Callable[[Bed], str]  # "" when it held, else the problem
    quick: bool = True  # in CI's slice


def syncd_program() -> str:
    """`syncd` as installed beside this Python, else this Python running the module."""
    script = Path(sys.executable).with_name("syncd")
    if script.is_file():
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m syncd"


def forced_command(root: Path) -> str:
    return f"{syncd_program()} serve --stdio --root {shlex.quote(str(root))}"


def ssh_argv(server: SSHServer, *args: str, program: str = "ssh") -> list[str]:
    ssh = server.ssh_dir
    options = {
        "UserKnownHostsFile": str(ssh / "known_hosts"),
        "GlobalKnownHostsFile": "/dev/null",
        "StrictHostKeyChecking": "yes",
        "BatchMode": "yes",
        "LogLevel": "ERROR",
        "ConnectTimeout": "10",
    }
    flags = [f"-o{key}={value}" for key, value in options.items()]
    return [program, "-F", str(ssh / "config"), *flags, *args]


# -- the far process, as /proc shows it ------------------------------------------------


@dataclass(frozen=True, slots=True)
class FarView:
    """The far `syncd serve` process: its environment and what its stdin is."""

    pid: int
    environ: dict[str, str]
    stdin: str  # "pipe:[...]", "socket:[...]" or "/dev/pts/N"

    @property
    def has_tty(self) -> bool:
        return self.stdin.startswith("/dev/")


def _serve_pids(root: Path) -> Iterator[int]:
    wanted = ["serve", "--stdio", "--root", str(root)]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if any(args[i : i + 4] == wanted for i in range(len(args))):
                yield int(entry.name)


def _view(pid: int) -> FarView | None:
    proc = Path("/proc", str(pid))
    try:
        raw = (proc / "environ").read_bytes()
        stdin = str((proc / "fd" / "0").readlink())
    except OSError:  # it ended meanwhile
        return None
    pairs = (item.partition("=") for item in raw.decode(errors="replace").split("\0") if item)
    return FarView(pid, {name: value for name, _, value in pairs}, stdin)


def find_serve(root: Path, client: subprocess.Popen[bytes]) -> FarView | None:
    """The serve process for `root`, once it runs; None if the client ends first."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for pid in _serve_pids(root):
            if (view := _view(pid)) is not None:
                return view
        if client.poll() is not None:
            return None
        time.sleep(0.02)
    return None


def serve_ended(root: Path) -> bool:
    """Whether every serve process for `root` has exited (waits a little for them)."""
    deadline = time.monotonic() + WAIT
    while any(True for _ in _serve_pids(root)):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- a session through the OpenSSH client ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Session:
    exit_code: int
    stderr: str
    far: FarView | None  # None: no serve process for the root ever ran
    served_root: str | None  # the root the server's HELLO named; None: no HELLO came


def _hello_root(client: subprocess.Popen[bytes]) -> str | None:
    """Send HELLO, read the server's: the root it says it serves."""
    assert client.stdin is not None and client.stdout is not None
    conn = Connection(Role.CLIENT)
    with contextlib.suppress(BrokenPipeError):
        client.stdin.write(conn.send(Hello((1, 1), "ssh-campaign", (), HELLO_PARAMS)))
        client.stdin.flush()
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([client.stdout], [], [], 0.5)
        if not ready:
            continue
        data = os.read(client.stdout.fileno(), 65536)
        if not data:
            return None
        try:
            conn.receive_data(data)
            while (event := conn.next_event()) is not NEED_DATA:
                if isinstance(event, Hello):
                    root = event.params.get("root")
                    return root if isinstance(root, str) else None
        except ProtocolError:
            return None
    return None


def session(
    server: SSHServer,
    args: Sequence[str],
    root: Path,
    *,
    env: Mapping[str, str] | None = None,
    talk: bool = True,
) -> Session:
    """`ssh ARGS` with pipes; `root` is the forced command's. `talk`: also exchange HELLO
    and end the session by closing its input; else end the client once serve is seen (a
    granted pty would garble the stream, and hold serve past the end of input)."""
    with tempfile.TemporaryFile() as errors:
        client = subprocess.Popen(
            ssh_argv(server, *args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env={**server.env(), **(env or {})},
        )
        try:
            far = find_serve(root, client)
            served = _hello_root(client) if talk and far is not None else None
            if not talk:
                end(client)
            assert client.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                client.stdin.close()
            code = client.wait(timeout=WAIT)
        finally:
            end(client)
        errors.seek(0)
        text = errors.read().decode(errors="replace")
    return Session(code, text, far, served)


def end(process: subprocess.Popen[bytes]) -> None:
    """Stop a process this campaign started, if it still runs."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_client(
    argv: Sequence[str], env: Mapping[str, str], *, timeout: float = WAIT
) -> subprocess.CompletedProcess[str]:
    """A client run to its end with no input; a client that stalls is ended (exit -15)."""
    with subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        encoding="utf-8",
        errors="replace",  # a far side that speaks syncd's protocol at an scp client
        env=dict(env),
    ) as client:
        try:
            out, err = client.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            client.terminate()
            out, err = client.communicate()
        return subprocess.CompletedProcess(argv, client.returncode, out, err)


def wait_until(condition: Callable[[], bool], process: subprocess.Popen[bytes]) -> bool:
    """Poll `condition` until it holds (True) or `process` ends or time runs out (False)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return condition()
        time.sleep(0.05)
    return False


# -- sshd's log ------------------------------------------------------------------------


class LogMark:
    """What sshd logged from now on: whether anyone logged in, whatever the client says."""

    def __init__(self, server: SSHServer) -> None:
        self.server = server
        self.offset = server.log.stat().st_size if server.log.exists() else 0

    def text(self) -> str:
        with self.server.log.open("rb") as log:
            log.seek(self.offset)
            return log.read().decode(errors="replace")

    def logged_in(self) -> bool:
        return "Accepted publickey" in self.text()
