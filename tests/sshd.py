"""A real OpenSSH server on a loopback port, with throwaway keys, for transport tests.

`SSHServer.start(base)` creates under `base`:

- `server/`: an ed25519 host key, `sshd_config` (127.0.0.1 only, public keys only, the
  authorized keys file below, `LogLevel VERBOSE`), `sshd.pid`, `sshd.log`, and
  `authorized_keys`;
- `home/`: the client's HOME, with `.ssh/id_ed25519` (authorized by default),
  `.ssh/id_forced` (authorized only through `force_command`), `.ssh/known_hosts` holding
  the host key as `[127.0.0.1]:PORT`, and `.ssh/config` with two aliases: `far` (HostName
  127.0.0.1, the port, User root, IdentityFile id_ed25519) and `far-forced` (the same with
  IdentityFile id_forced).

It runs `/usr/sbin/sshd -D -e -f sshd_config -E sshd.log` and waits until the port
accepts connections; `stop()` terminates it (kills it if it lingers). `extra_config` lines
go first in sshd_config, where they win: sshd keeps the first value of each keyword.
`prefix` goes before sshd's argv (the push benchmark runs it in a network namespace with
`ip netns exec NAME`); the port is then out of this process's reach, so it waits for
sshd's own "Server listening" line in its log instead.

Fixtures: `sshd_server` (session scope) starts one server; `sshd` (function scope) resets
the client files and authorized keys to the defaults above, makes the client HOME
current for this process (asyncssh reads ~/.ssh from $HOME) and removes SSH_AUTH_SOCK, so
tests stay independent. `SSHServer.env()` gives the same HOME to CLI subprocesses.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")  # sshd insists on being started by its absolute path
SSH_KEYGEN = "ssh-keygen"
START_TIMEOUT = 15.0
FAR_ECHO = Path(__file__).with_name("far_echo.py")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_key(path: Path, comment: str = "syncd-test") -> str:
    """An ed25519 key pair at `path` / `path`.pub; returns the public line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )
    path.chmod(0o600)
    return path.with_name(path.name + ".pub").read_text().strip()


def far_echo_command() -> str:
    """The far program as a command string: this Python running tests/far_echo.py."""
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(FAR_ECHO))}"


def authorized_line(public_key: str, options: str | None = None) -> str:
    return f"{options} {public_key}" if options else public_key


def forced_options(command: str) -> str:
    """`restrict,command="..."` with the command escaped for authorized_keys (only `"`
    is special inside the quotes)."""
    return 'restrict,command="' + command.replace('"', '\\"') + '"'


@dataclass
class SSHServer:
    base: Path
    port: int
    host_key: str  # "ssh-ed25519 AAAA..." (no comment)
    client_key: str  # public line of home/.ssh/id_ed25519
    forced_key: str  # public line of home/.ssh/id_forced
    process: subprocess.Popen[bytes] | None = None
    prefix: tuple[str, ...] = ()  # before sshd's argv, e.g. ("ip", "netns", "exec", NAME)

    @property
    def server_dir(self) -> Path:
        return self.base / "server"

    @property
    def home(self) -> Path:
        return self.base / "home"

    @property
    def ssh_dir(self) -> Path:
        return self.home / ".ssh"

    @property
    def known_hosts(self) -> Path:
        return self.ssh_dir / "known_hosts"

    @property
    def authorized_keys(self) -> Path:
        return self.server_dir / "authorized_keys"

    @property
    def log(self) -> Path:
        return self.server_dir / "sshd.log"

    @property
    def host_label(self) -> str:
        return f"[127.0.0.1]:{self.port}"

    # -- lifecycle -------------------------------------------------------------------

    @classmethod
    def start(
        cls, base: Path, extra_config: Sequence[str] = (), prefix: Sequence[str] = ()
    ) -> SSHServer:
        server_dir, ssh_dir = base / "server", base / "home" / ".ssh"
        server_dir.mkdir(parents=True)
        ssh_dir.mkdir(parents=True, mode=0o700)
        host_pub = make_key(server_dir / "host_ed25519", "host")
        server = cls(
            base=base,
            port=free_port(),
            host_key=" ".join(host_pub.split()[:2]),
            client_key=make_key(ssh_dir / "id_ed25519", "client"),
            forced_key=make_key(ssh_dir / "id_forced", "forced"),
            prefix=tuple(prefix),
        )
        server._write_sshd_config(extra_config)
        server.reset()
        server._launch()
        return server

    def _write_sshd_config(self, extra: Sequence[str]) -> None:
        d = self.server_dir
        lines = [
            *extra,
            "ListenAddress 127.0.0.1",
            f"Port {self.port}",
            f"HostKey {d / 'host_ed25519'}",
            f"PidFile {d / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",  # the tests run as root
            "StrictModes no",
            "UsePAM no",
            "LogLevel VERBOSE",
            "MaxStartups 64",
            "MaxSessions 64",
        ]
        config = d / "sshd_config"
        config.write_text("\n".join(lines) + "\n")
        # OpenSSH >= 9.8 throttles sources that fail auth; tests fail auth on purpose.
        probe = [*lines, "PerSourcePenalties no"]
        config.with_suffix(".probe").write_text("\n".join(probe) + "\n")
        check = subprocess.run(
            [str(SSHD), "-t", "-f", str(config.with_suffix(".probe"))],
            capture_output=True,
            check=False,
        )
        if check.returncode == 0:
            config.write_text("\n".join(probe) + "\n")

    def _launch(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        config = self.server_dir / "sshd_config"
        self.process = subprocess.Popen(
            [*self.prefix, str(SSHD), "-D", "-e", "-f", str(config), "-E", str(self.log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited at start:\n{self.log_text()}")
            if self._listening():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not listen on port {self.port}:\n{self.log_text()}")

    def _listening(self) -> bool:
        if self.prefix:  # another network namespace's 127.0.0.1: ask sshd's log
            return f"Server listening on 127.0.0.1 port {self.port}" in self.log_text()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    # -- client and server files -----------------------------------------------------

    def reset(self) -> None:
        """Default state: the host key trusted, the config aliases, only the client key
        authorized (no forced command)."""
        self.known_hosts.write_text(f"{self.host_label} {self.host_key}\n")
        self.write_config()
        self.set_authorized([authorized_line(self.client_key)])

    def write_config(self, extra: str = "") -> None:
        ssh = self.ssh_dir
        text = (
            f"Host far\n"
            f"    HostName 127.0.0.1\n    Port {self.port}\n    User root\n"
            f"    IdentityFile {ssh / 'id_ed25519'}\n    IdentitiesOnly yes\n"
            f"Host far-forced\n"
            f"    HostName 127.0.0.1\n    Port {self.port}\n    User root\n"
            f"    IdentityFile {ssh / 'id_forced'}\n    IdentitiesOnly yes\n"
        )
        (ssh / "config").write_text(text + extra)

    def set_authorized(self, lines: Sequence[str]) -> None:
        self.authorized_keys.write_text("".join(f"{line}\n" for line in lines))

    def add_authorized(self, public_key: str, options: str | None = None) -> None:
        with self.authorized_keys.open("a") as out:
            out.write(authorized_line(public_key, options) + "\n")

    def force_command(self, command: str) -> None:
        """Authorize id_forced (alias `far-forced`) only to run `command`."""
        self.set_authorized(
            [
                authorized_line(self.client_key),
                authorized_line(self.forced_key, forced_options(command)),
            ]
        )

    def env(self) -> dict[str, str]:
        """Environment for a CLI subprocess that should act as this test's client."""
        env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
        env["HOME"] = str(self.home)
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        return env

    def use_home(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make the client HOME current in this process (for asyncssh)."""
        monkeypatch.setenv("HOME", str(self.home))
        monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    server = SSHServer.start(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sshd(sshd_server: SSHServer, monkeypatch: pytest.MonkeyPatch) -> SSHServer:
    sshd_server.reset()
    sshd_server.use_home(monkeypatch)
    return sshd_server
