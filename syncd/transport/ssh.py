"""The far side over SSH: `<remote_syncd> serve --stdio --root PATH` run by the server.

Connection settings come from OpenSSH's places, read by asyncssh: ~/.ssh/config (Host
aliases, HostName, Port, User, IdentityFile, ProxyJump, ConnectTimeout, ...), the default
keys in ~/.ssh, and the agent at SSH_AUTH_SOCK.

Host keys are checked strictly, against the UserKnownHostsFile list (default
~/.ssh/known_hosts) and the GlobalKnownHostsFile list (default /etc/ssh/ssh_known_hosts):

- a key that matches is accepted;
- a host with no known key is refused with `HostKeyError` (naming host, port, key type
  and fingerprint), unless `accept_new_host_key` is set: then the key is appended to the
  first user known-hosts file (OpenSSH format, `[host]:port` when the port is not 22);
- a host whose known keys do not include the offered one is refused as CHANGED, always.
  This is stricter than OpenSSH's accept-new, which would add a key of a new type;
- a key a `@revoked` line lists is refused, always; a host known_hosts trusts a
  `@cert-authority` for is refused when it offers a plain key, always.

The key types known_hosts lists for the host are offered first, then the rest (as
OpenSSH orders them): a server whose key changed type still shows it, and is refused by
name, instead of failing the negotiation with a bare "connection lost".

All of this happens during key exchange, before authentication: nothing runs on the far
side unless its key was trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import socket
import warnings
from collections.abc import Sequence
from pathlib import Path

from syncd.errors import UsageError
from syncd.transport.channel import DEFAULT_READ, Channel
from syncd.transport.closing import ClosesOnce
from syncd.transport.errors import ChannelClosed, ConnectError, HostKeyError
from syncd.transport.ratelimit import RateLimited
from syncd.transport.tail import TailBuffer, describe_exit, format_diagnostics
from syncd.transport.target import Target, format_ssh

# Recent cryptography releases deprecate DSA. asyncssh touches it on import and again
# when a known_hosts file holds an ssh-dss line: without this, runs (and the daemon's
# journal) would carry a warning about a key type syncd never offers. Only that warning,
# and only from asyncssh, is silenced.
warnings.filterwarnings("ignore", message="DSA is deprecated", module=r"asyncssh\.")

import asyncssh  # noqa: E402  (after the filter above)
from asyncssh.public_key import (  # noqa: E402
    get_default_certificate_algs,
    get_default_public_key_algs,
)

CONNECT_TIMEOUT = 30.0  # used when ~/.ssh/config sets no ConnectTimeout
KEEPALIVE_INTERVAL = 15.0  # used when ~/.ssh/config sets no ServerAliveInterval
KEEPALIVE_COUNT_MAX = 4
# Offered when ~/.ssh/config names no Ciphers (the server still chooses among them).
PREFERRED_CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)
CLOSE_TIMEOUT = 30.0
_CLOSE_GRACE = 5.0
_SIGNAL_GRACE = 2.0  # servers may refuse signals (OpenSSH does for root and forced commands)
DEFAULT_PORT = 22
_GLOBAL_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")


def remote_command(remote_syncd: str, path: str, flags: Sequence[str] = ()) -> str:
    """The command line the server runs. `remote_syncd` is a command string (may contain
    spaces, e.g. "/opt/venv/bin/python -m syncd"); the path is always one quoted word.

    The server starts the command in the login directory, so `~` and `~/x` (which quoting
    would make literal) are sent as `.` and `x`.
    """
    if path == "~":
        path = "."
    elif path.startswith("~/"):
        path = path[2:] or "."
    extra = "".join(f" {shlex.quote(flag)}" for flag in flags)
    return f"{remote_syncd} serve --stdio --root {shlex.quote(path)}{extra}"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _label(host: str, port: int) -> str:
    return host if port == DEFAULT_PORT else f"[{host}]:{port}"


def _keyscan_type(algorithm: str) -> str:
    if algorithm.startswith("ecdsa-sha2-"):
        return "ecdsa"
    if algorithm.startswith("sk-ecdsa"):
        return "ecdsa-sk"
    if algorithm.startswith("sk-ssh-ed25519"):
        return "ed25519-sk"
    return algorithm.removeprefix("ssh-")


def _entries(
    known: asyncssh.SSHKnownHosts, host: str, addr: str, port: int
) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]]:
    """(trusted keys, CA keys, revoked keys) known_hosts holds for the host.

    Trusted keys are looked up by the host's name only (the `[host]:port` entries, else
    the bare host's), as OpenSSH does (CheckHostIP no, its default): asyncssh would also
    trust a key recorded for the peer's address, so `localhost` would pass on a key
    recorded for 127.0.0.1, which `ssh` refuses. Revocations count under any name, the
    address's and the bare host's included: asyncssh's fallback to the bare host drops
    the `[host]:port` revocations, and would then call a revoked key merely unknown.
    """
    keys, cas, revoked = known.match(host, "", None if port == DEFAULT_PORT else port)[:3]
    revoked = list(revoked)
    names = {host, addr} - {""}
    for name in names:
        revoked += known.match(name, "", None)[2]
        if port != DEFAULT_PORT:
            revoked += known.match(f"[{name}]:{port}", "", None)[2]
    return list(keys), list(cas), revoked


def _host_key_algorithms(known: asyncssh.SSHKnownHosts, host: str, port: int) -> list[str]:
    """The types known_hosts lists for the host first, then every default type.

    asyncssh alone offers only the known types, so a server whose key changed type ends
    the negotiation ("connection lost") before its key can be named in the refusal.
    """
    keys, cas, _ = _entries(known, host, "", port)
    certificates = list(get_default_certificate_algs())
    first = (certificates if cas else []) + [alg for key in keys for alg in key.sig_algorithms]
    ordered = first + certificates + list(get_default_public_key_algs())
    return list(dict.fromkeys(alg.decode("ascii") for alg in ordered))


def _fingerprints(keys: list[asyncssh.SSHKey]) -> str:
    unique = {k.public_data: k for k in keys}.values()  # an entry may match name and address
    return ", ".join(f"{k.get_algorithm()} {k.get_fingerprint('sha256')}" for k in unique)


class _HostKeyCheck:
    """Decides on host keys that asyncssh did not find among the trusted ones."""

    def __init__(self, known: asyncssh.SSHKnownHosts, accept_new: bool, record_to: Path | None):
        self.known = known
        self.accept_new = accept_new
        self.record_to = record_to
        self.refusal: str | None = None
        self.recorded: str | None = None

    def lookup(
        self, host: str, addr: str, port: int | None
    ) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]]:
        """asyncssh's known_hosts callable: the keys it may trust (_entries), never a
        revoked one. Revocations are left to `validate`, which asyncssh asks about every
        key it does not trust, so that a revoked key is refused in syncd's own words."""
        keys, cas, revoked = _entries(self.known, host, addr, port or DEFAULT_PORT)
        bad = {key.public_data for key in revoked}
        return [k for k in keys if k.public_data not in bad], cas, []

    def validate(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        where = f"{host} port {port}"
        offered = f"{key.get_algorithm()} key {key.get_fingerprint('sha256')}"
        self.refusal = self._known_refusal(host, addr, port, key, offered)
        if self.refusal is None and not self.accept_new:
            port_flag = "" if port == DEFAULT_PORT else f"-p {port} "
            self.refusal = (
                f"host key for {where} is not known: the server "
                f"offered {offered}. If that fingerprint is right, trust it with `ssh-keyscan "
                f"{port_flag}-t {_keyscan_type(key.get_algorithm())} {host} >> "
                f"~/.ssh/known_hosts` (compare the fingerprint first) or run again with "
                f"--accept-new-host-key. Refused; nothing was run on the far side"
            )
        if self.refusal is None:
            self.refusal = self._record(where, _label(host, port), key, offered)
        return self.refusal is None

    def _known_refusal(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey, offered: str
    ) -> str | None:
        """Why known_hosts, holding something for this host, refuses `key` (None: it
        holds nothing: the key is new)."""
        where = f"host key for {host} port {port}"
        keys, cas, revoked = _entries(self.known, host, addr, port)
        if any(r.public_data == key.public_data for r in revoked):
            return (
                f"{where} is REVOKED: the server offered {offered}, which a @revoked line in "
                f"known_hosts lists. Refused; nothing was run on the far side"
            )
        if keys:
            return (
                f"{where} has CHANGED: the server offered {offered}, "
                f"but known_hosts lists {_fingerprints(keys)}. This could be a "
                f"man-in-the-middle attack, or the host was reinstalled; if you know the new "
                f"key is right, remove the old entry with `ssh-keygen -R '{_label(host, port)}'` "
                f"and connect again. Refused; nothing was run on the far side"
            )
        if cas:
            return (
                f"{where} is not certified: known_hosts trusts only keys signed by the "
                f"certificate authority {_fingerprints(cas)} for it, but the server offered a "
                f"plain {offered}. Refused; nothing was run on the far side"
            )
        return None

    def _record(self, where: str, label: str, key: asyncssh.SSHKey, offered: str) -> str | None:
        """Append the accepted new key to the user known_hosts file; why not, if it fails."""
        if self.record_to is None:
            return (
                f"host key for {where} is not known ({offered}) and cannot be recorded: "
                f"UserKnownHostsFile is 'none'"
            )
        try:
            _append_known_host(self.record_to, label, key)
        except OSError as exc:
            return (
                f"host key for {where} ({offered}) could not be recorded in "
                f"{self.record_to}: {exc.strerror or exc}"
            )
        self.recorded = f"{label} {offered}"
        return None


def _append_known_host(path: Path, label: str, key: asyncssh.SSHKey) -> None:
    algorithm, blob = key.export_public_key("openssh").decode("ascii").split()[:2]
    line = f"{label} {algorithm} {blob}\n"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = "\n" + line
        os.write(fd, line.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


class _Client(asyncssh.SSHClient):
    def __init__(self, check: _HostKeyCheck) -> None:
        self._check = check

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        return self._check.validate(host, addr, port, key)


def _known_hosts_files(config: asyncssh.config.SSHConfig) -> tuple[list[Path], list[Path]]:
    """(user files, global files) as ~/.ssh/config names them, with OpenSSH's defaults."""
    user = config.get("UserKnownHostsFile", None)
    if isinstance(user, list):
        user_files = [Path(os.path.expanduser(str(p))) for p in user]  # noqa: PTH111
    else:
        user_files = [Path.home() / ".ssh" / "known_hosts"]
    glob = config.get("GlobalKnownHostsFile", None)
    global_names = [str(p) for p in glob] if isinstance(glob, list) else _GLOBAL_KNOWN_HOSTS
    return user_files, [Path(os.path.expanduser(p)) for p in global_names]  # noqa: PTH111


def _load_known_hosts(files: list[Path]) -> asyncssh.SSHKnownHosts:
    known = asyncssh.SSHKnownHosts()
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConnectError(f"cannot read known hosts file {path}: {exc.strerror}") from None
        try:
            known.load(text)
        except (ValueError, asyncssh.Error) as exc:
            raise ConnectError(f"bad known hosts file {path}: {_one_line(str(exc))}") from None
    return known


def _quiet_asyncssh() -> None:
    logger = logging.getLogger("asyncssh")
    if logger.level == logging.NOTSET:  # leave an explicit choice (debugging) alone
        logger.setLevel(logging.WARNING)


def _connect_error(
    exc: BaseException, description: str, user: str, check: _HostKeyCheck, timeout: object
) -> ConnectError:
    """One line naming the target for anything `asyncssh.connect` raised."""
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        message = check.refusal or (
            f"the host key could not be verified ({_one_line(exc.reason)}); "
            f"nothing was run on the far side"
        )
        return HostKeyError(f"{description}: {message}")
    if isinstance(exc, asyncssh.PermissionDenied):
        return ConnectError(
            f"cannot log in to {description} as {user!r}: permission denied (no key was "
            f"accepted: check IdentityFile or ssh-agent here and authorized_keys there)"
        )
    if isinstance(exc, asyncssh.DisconnectError):
        reason = _one_line(exc.reason) or type(exc).__name__
    elif isinstance(exc, TimeoutError):
        reason = f"timed out after {timeout} s"
    elif isinstance(exc, socket.gaierror):
        reason = f"cannot resolve the host name: {exc.strerror}"
    elif isinstance(exc, OSError):
        reason = _one_line(exc.strerror or str(exc)) or type(exc).__name__
    else:  # unusable key files, bad settings
        reason = _one_line(str(exc)) or type(exc).__name__
    return ConnectError(f"cannot connect to {description}: {reason}")


def _defaults(config: asyncssh.config.SSHConfig, connect_timeout: float) -> dict[str, object]:
    """Our settings where ~/.ssh/config gives none."""
    extra: dict[str, object] = {}
    if config.get("ConnectTimeout", None) is None:
        extra["connect_timeout"] = connect_timeout
    if config.get("ServerAliveInterval", None) is None:
        extra["keepalive_interval"] = KEEPALIVE_INTERVAL
        extra["keepalive_count_max"] = KEEPALIVE_COUNT_MAX
    if config.get("Ciphers", None) is None:
        # AES-GCM runs on AES-NI: ~750 MiB/s through asyncssh here, against ~450 for its
        # default ChaCha20-Poly1305. Kept as a preference: the server still chooses.
        extra["encryption_algs"] = PREFERRED_CIPHERS
    return extra


async def open_ssh(
    target: Target,
    *,
    remote_syncd: str = "syncd",
    accept_new_host_key: bool = False,
    bwlimit: float | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    close_timeout: float = CLOSE_TIMEOUT,
    serve_flags: Sequence[str] = (),
) -> Channel:
    """Connect and run `{remote_syncd} serve --stdio --root {quoted path}` on the server.

    Raises `HostKeyError` for an unknown or changed host key and `ConnectError` (one
    line, naming the target) when the server cannot be reached or refuses us.
    `bwlimit` (bytes per second) throttles what we send. `connect_timeout` applies when
    ~/.ssh/config gives no ConnectTimeout.
    """
    if target.kind != "ssh" or target.host is None:
        raise UsageError(f"{target} is not an ssh target")
    _quiet_asyncssh()
    given = format_ssh(target.user, target.host, target.port, target.path)
    settings: dict[str, object] = {"host": target.host}  # config=() loads ~/.ssh/config
    if target.port is not None:
        settings["port"] = target.port
    if target.user is not None:
        settings["username"] = target.user
    try:
        options = await asyncssh.SSHClientConnectionOptions.construct(config=(), **settings)
    except (ValueError, OSError, asyncssh.Error) as exc:
        raise ConnectError(f"cannot connect to {given}: {_one_line(str(exc))}") from None

    host, port, user = str(options.host), int(options.port), str(options.username)
    description = format_ssh(user, host, port, target.path)
    if host != target.host:
        description += f" ({target.host})"
    config = options.config
    user_files, global_files = _known_hosts_files(config)
    check = _HostKeyCheck(
        _load_known_hosts(user_files + global_files),
        accept_new_host_key,
        user_files[0] if user_files else None,
    )
    extra = _defaults(config, connect_timeout)
    if config.get("HostKeyAlgorithms", None) is None:
        # Entries are looked up under HostKeyAlias when ~/.ssh/config names one.
        alias = str(options.host_key_alias or host)
        extra["server_host_key_algs"] = _host_key_algorithms(check.known, alias, port)
    try:
        conn = await asyncssh.connect(
            options=options,
            **settings,  # connect() re-applies host/port/user over the options' own
            known_hosts=check.lookup,
            client_factory=lambda: _Client(check),
            **extra,
        )
    except (asyncssh.Error, OSError, TimeoutError, ValueError) as exc:
        timeout = config.get("ConnectTimeout", None) or connect_timeout
        raise _connect_error(exc, description, user, check, timeout) from None

    command = remote_command(remote_syncd, target.path, serve_flags)
    try:
        process = await conn.create_process(command, encoding=None)
    except BaseException as exc:  # including cancellation: do not leak the connection
        conn.close()
        if isinstance(exc, asyncssh.Error | OSError):
            raise ConnectError(
                f"{description}: the server would not run the command: {_one_line(str(exc))}"
            ) from None
        raise
    channel: Channel = SSHChannel(conn, process, description, close_timeout=close_timeout)
    if bwlimit is not None:
        channel = RateLimited(channel, bwlimit)
    return channel


class SSHChannel(ClosesOnce):
    """A `Channel` over one SSH session's stdin/stdout; it owns the connection."""

    def __init__(
        self,
        conn: asyncssh.SSHClientConnection,
        process: asyncssh.SSHClientProcess[bytes],
        description: str,
        *,
        close_timeout: float,
    ) -> None:
        super().__init__()
        self._conn = conn
        self._process = process
        self._description = description
        self._close_timeout = close_timeout
        self._stderr = TailBuffer()
        self._stderr_task = asyncio.create_task(self._stderr.pump(self._read_stderr))
        self._note: str | None = None

    async def _read_stderr(self, n: int) -> bytes:
        try:
            return await self._process.stderr.read(n)
        except asyncssh.Error:
            return b""

    async def read(self, max_bytes: int = DEFAULT_READ) -> bytes:
        if self._closing:
            return b""
        try:
            return await self._process.stdout.read(max_bytes)
        except (asyncssh.Error, OSError) as exc:
            raise ChannelClosed(
                f"{self._description}: connection lost: {_one_line(str(exc))}"
            ) from exc

    async def write(self, data: bytes) -> None:
        if self._closing:
            raise ChannelClosed(f"{self._description}: write after close")
        try:
            self._process.stdin.write(data)
            await self._process.stdin.drain()
        except (asyncssh.Error, OSError) as exc:
            raise ChannelClosed(
                f"{self._description}: the far side stopped reading its input"
            ) from exc

    async def _close(self) -> None:
        drain = asyncio.create_task(self._discard_output())
        try:
            async with asyncio.timeout(self._close_timeout):
                with contextlib.suppress(asyncssh.Error, OSError):
                    self._process.stdin.write_eof()
                await self._process.wait_closed()
        except TimeoutError:
            self._note = f"it did not exit within {self._close_timeout:g} s of end of input"
            await self._stop_process()
        finally:
            self._conn.close()
            for waitable in (self._conn.wait_closed(), drain, self._stderr_task):
                with contextlib.suppress(TimeoutError, asyncssh.Error, OSError):
                    await asyncio.wait_for(waitable, _CLOSE_GRACE)

    async def _stop_process(self) -> None:
        """Ask the server to SIGTERM the far process, then close the session regardless.

        Servers may refuse signals; the far process then sees its pipes closed and is
        left to end on its own (on its next write, typically).
        """
        with contextlib.suppress(asyncssh.Error, OSError):
            self._process.terminate()
        try:
            await asyncio.wait_for(self._process.wait_closed(), _SIGNAL_GRACE)
        except TimeoutError:
            self._process.close()

    async def _discard_output(self) -> None:
        with contextlib.suppress(asyncssh.Error, OSError):
            while await self._process.stdout.read(1 << 20):
                pass

    def describe(self) -> str:
        return self._description

    def diagnostics(self) -> str:
        status: str | None = None
        signal_info = self._process.exit_signal
        if signal_info is not None:
            status = f"the far side was killed by SIG{signal_info[0]}"
        elif self._process.exit_status is not None:
            status = describe_exit(self._process.exit_status)
        elif self._close_task is not None and self._close_task.done():
            status = "the far side ended without reporting an exit status"
        if status and self._note:
            status = f"{status}; {self._note}"
        elif self._note:
            status = self._note
        return format_diagnostics(self._stderr, status)
