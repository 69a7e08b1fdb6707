"""SSH specifics against a real OpenSSH sshd on 127.0.0.1: host keys, ~/.ssh/config,
authentication failures, forced commands; and the target syntax.

"Nothing ran on the far side" is checked by the far program's own record: far_echo.py
writes its argv into its root before anything else, so a missing record means no
command was started.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shlex
import socket
import subprocess
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import asyncssh
import pytest

from syncd.errors import SyncdError, UsageError
from syncd.transport import (
    Channel,
    ConnectError,
    HostKeyError,
    Target,
    open_channel,
    open_ssh,
    parse_target,
    remote_command,
)
from syncd.transport.ssh import _host_key_algorithms
from tests.sshd import SSHServer, far_echo_command, free_port, make_key

T = TypeVar("T")
ARGV_FILE = "far_echo.argv.json"


def run(coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "mirror root"
    path.mkdir()
    return path


def direct(server: SSHServer, root: Path) -> Target:
    return Target("ssh", "root", "127.0.0.1", server.port, str(root))


def fingerprint(public_line: str) -> str:
    fp: str = asyncssh.import_public_key(public_line).get_fingerprint("sha256")
    return fp


async def echo_once(channel: Channel, payload: bytes = b"ping") -> bytes:
    await channel.write(payload)
    got = b""
    while len(got) < len(payload):
        data = await channel.read()
        assert data, channel.diagnostics()
        got += data
    await channel.close()
    return got


def connect_and_echo(target: Target, **kwargs: Any) -> tuple[bytes, str]:
    async def body() -> tuple[bytes, str]:
        channel = await open_ssh(target, remote_syncd=far_echo_command(), **kwargs)
        return await echo_once(channel), channel.describe()

    return run(body())


def refused(target: Target, **kwargs: Any) -> SyncdError:
    async def body() -> None:
        await open_ssh(target, remote_syncd=far_echo_command(), **kwargs)

    with pytest.raises(SyncdError) as info:
        run(body())
    return info.value


# -- host keys ------------------------------------------------------------------------


@pytest.mark.needs_sshd
@pytest.mark.parametrize("known_hosts", ["empty", "missing"])
def test_unknown_host_key_is_refused_before_anything_runs(
    sshd: SSHServer, root: Path, known_hosts: str
) -> None:
    if known_hosts == "empty":
        sshd.known_hosts.write_text("")
    else:
        sshd.known_hosts.unlink()
    error = refused(direct(sshd, root))
    message = str(error)
    assert isinstance(error, HostKeyError)
    assert not (root / ARGV_FILE).exists()
    assert "\n" not in message
    assert "not known" in message
    for part in ("127.0.0.1", str(sshd.port), "ssh-ed25519", fingerprint(sshd.host_key)):
        assert part in message
    assert "ssh-keyscan" in message
    assert "--accept-new-host-key" in message
    assert not sshd.known_hosts.exists() or sshd.known_hosts.read_text() == ""


@pytest.mark.needs_sshd
def test_a_key_known_by_address_only_does_not_trust_the_name(sshd: SSHServer, root: Path) -> None:
    """known_hosts holds the key for [127.0.0.1]:port; `localhost` is another name, which
    OpenSSH (CheckHostIP no, its default) refuses: so does syncd (asyncssh alone would
    accept it through the peer's address)."""
    target = dataclasses.replace(direct(sshd, root), host="localhost")
    error = refused(target)
    assert isinstance(error, HostKeyError) and "not known" in str(error), error
    assert not (root / ARGV_FILE).exists()


@pytest.mark.needs_sshd
def test_accept_new_host_key_records_it_for_next_time(sshd: SSHServer, root: Path) -> None:
    sshd.known_hosts.write_text("# nothing trusted yet")  # no final newline on purpose
    echoed, _ = connect_and_echo(direct(sshd, root), accept_new_host_key=True)
    assert echoed == b"ping"
    lines = sshd.known_hosts.read_text().splitlines()
    assert lines == ["# nothing trusted yet", f"{sshd.host_label} {sshd.host_key}"]
    # OpenSSH itself finds the entry (its format and [host]:port form are right) ...
    found = subprocess.run(
        ["ssh-keygen", "-F", sshd.host_label, "-f", str(sshd.known_hosts)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.returncode == 0 and sshd.host_key in found.stdout
    # ... and so do we, without being told to accept anything.
    (root / ARGV_FILE).unlink()
    echoed, _ = connect_and_echo(direct(sshd, root))
    assert echoed == b"ping"
    assert sshd.known_hosts.read_text().splitlines() == lines


@pytest.mark.needs_sshd
@pytest.mark.parametrize("accept_new", [False, True])
def test_changed_host_key_is_always_refused(
    sshd: SSHServer, root: Path, tmp_path: Path, accept_new: bool
) -> None:
    other = " ".join(make_key(tmp_path / "impostor").split()[:2])
    sshd.known_hosts.write_text(f"{sshd.host_label} {other}\n")
    error = refused(direct(sshd, root), accept_new_host_key=accept_new)
    message = str(error)
    assert isinstance(error, HostKeyError)
    assert not (root / ARGV_FILE).exists()
    assert "CHANGED" in message
    assert "\n" not in message
    assert fingerprint(sshd.host_key) in message  # what the server offered
    assert fingerprint(other) in message  # what we expected
    assert sshd.known_hosts.read_text() == f"{sshd.host_label} {other}\n"


def other_type_key(path: Path) -> str:
    """'ecdsa-sha2-nistp256 BASE64' of a fresh key: a type the test server does not have."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", str(path)], check=True)
    return " ".join(path.with_name(path.name + ".pub").read_text().split()[:2])


@pytest.mark.needs_sshd
@pytest.mark.parametrize("accept_new", [False, True])
def test_revoked_key_is_refused_even_when_new_keys_are_accepted(
    sshd: SSHServer, root: Path, accept_new: bool
) -> None:
    """Found by the ssh campaign: asyncssh, finding no trusted [host]:port entry, falls
    back to the bare host and drops the [host]:port @revoked lines; the revoked key then
    looked new, and --accept-new-host-key trusted and recorded it."""
    revoked = f"@revoked {sshd.host_label} {sshd.host_key}\n"
    sshd.known_hosts.write_text(revoked)
    error = refused(direct(sshd, root), accept_new_host_key=accept_new)
    assert isinstance(error, HostKeyError)
    assert "REVOKED" in str(error) and fingerprint(sshd.host_key) in str(error)
    assert "\n" not in str(error)
    assert not (root / ARGV_FILE).exists()
    assert sshd.known_hosts.read_text() == revoked


@pytest.mark.needs_sshd
@pytest.mark.parametrize("accept_new", [False, True])
def test_known_key_of_another_type_is_refused_as_changed(
    sshd: SSHServer, root: Path, tmp_path: Path, accept_new: bool
) -> None:
    """Found by the ssh campaign: only the known type was offered, the server had none,
    and the refusal read "Connection lost". Now the server shows its key and the
    refusal names both."""
    other = other_type_key(tmp_path / "ecdsa")
    sshd.known_hosts.write_text(f"{sshd.host_label} {other}\n")
    error = refused(direct(sshd, root), accept_new_host_key=accept_new)
    assert isinstance(error, HostKeyError)
    assert "CHANGED" in str(error)
    assert fingerprint(sshd.host_key) in str(error) and fingerprint(other) in str(error)
    assert not (root / ARGV_FILE).exists()


@pytest.mark.needs_sshd
@pytest.mark.parametrize("accept_new", [False, True])
def test_cert_authority_line_does_not_trust_a_plain_key(
    sshd: SSHServer, root: Path, accept_new: bool
) -> None:
    """Found by the ssh campaign: a host with a @cert-authority line offering a plain key
    failed as "Connection lost"; once the plain key could be offered it would have been
    new, and recorded under --accept-new-host-key. It is refused, by name, always."""
    line = f"@cert-authority {sshd.host_label} {sshd.host_key}\n"
    sshd.known_hosts.write_text(line)
    error = refused(direct(sshd, root), accept_new_host_key=accept_new)
    assert isinstance(error, HostKeyError)
    assert "not certified" in str(error) and "certificate authority" in str(error)
    assert not (root / ARGV_FILE).exists()
    assert sshd.known_hosts.read_text() == line


def test_known_key_types_are_offered_first(tmp_path: Path) -> None:
    """A server with several host keys must be asked for the one known_hosts holds."""
    other = other_type_key(tmp_path / "ecdsa")
    known = asyncssh.SSHKnownHosts(f"[far.example]:2222 {other}\n")
    algorithms = _host_key_algorithms(known, "far.example", 2222)
    assert algorithms[0] == "ecdsa-sha2-nistp256"
    assert "ssh-ed25519" in algorithms  # offered too: a changed type is shown, then refused
    assert _host_key_algorithms(known, "elsewhere.example", 22)[0] != "ecdsa-sha2-nistp256"


@pytest.mark.needs_sshd
def test_hashed_known_hosts_entry_is_trusted(sshd: SSHServer, root: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(sshd.known_hosts)], check=True)
    assert sshd.known_hosts.read_text().startswith("|1|")
    assert connect_and_echo(direct(sshd, root))[0] == b"ping"


@pytest.mark.needs_sshd
def test_user_known_hosts_file_from_config(sshd: SSHServer, root: Path) -> None:
    """UserKnownHostsFile replaces ~/.ssh/known_hosts: the key trusted there does not
    count, and an accepted key is recorded in the configured file."""
    sshd.write_config("Host *\n    UserKnownHostsFile ~/.ssh/other_known_hosts\n")
    assert isinstance(refused(direct(sshd, root)), HostKeyError)
    assert connect_and_echo(direct(sshd, root), accept_new_host_key=True)[0] == b"ping"
    other = sshd.ssh_dir / "other_known_hosts"
    assert other.read_text() == f"{sshd.host_label} {sshd.host_key}\n"


# -- ~/.ssh/config, authentication, connection failures -------------------------------


@pytest.mark.needs_sshd
@pytest.mark.parametrize("form", ["url", "scp"])
def test_config_alias_supplies_hostname_port_user_identity(
    sshd: SSHServer, root: Path, form: str
) -> None:
    target = parse_target(f"ssh://far{root}" if form == "url" else f"far:{root}")
    echoed, description = connect_and_echo(target)
    assert echoed == b"ping"
    assert json.loads((root / ARGV_FILE).read_text())["argv"][-1] == str(root)
    assert description == f"ssh://root@127.0.0.1:{sshd.port}{root} (far)"


@pytest.mark.needs_sshd
def test_identity_file_from_config_is_used(sshd: SSHServer, root: Path) -> None:
    """Only id_forced is authorized (no forced command): the default key cannot log in,
    the alias whose IdentityFile names id_forced (with ~) can."""
    sshd.set_authorized([sshd.forced_key])
    sshd.write_config(
        f"Host other\n    HostName 127.0.0.1\n    Port {sshd.port}\n    User root\n"
        f"    IdentityFile ~/.ssh/id_forced\n"
    )
    assert isinstance(refused(direct(sshd, root)), ConnectError)
    assert connect_and_echo(parse_target(f"other:{root}"))[0] == b"ping"


@pytest.mark.needs_sshd
def test_auth_failure_is_one_line(sshd: SSHServer, root: Path) -> None:
    sshd.set_authorized([])
    error = refused(direct(sshd, root))
    message = str(error)
    assert type(error) is ConnectError
    assert "permission denied" in message
    assert "\n" not in message
    assert f"root@127.0.0.1:{sshd.port}" in message
    assert not (root / ARGV_FILE).exists()


def test_connection_refused_is_one_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    error = refused(Target("ssh", "root", "127.0.0.1", port, str(tmp_path)))
    assert type(error) is ConnectError
    assert "refused" in str(error).lower()
    assert f"127.0.0.1:{port}" in str(error)
    assert "\n" not in str(error)


def test_silent_server_times_out(tmp_path: Path) -> None:
    """A port that accepts but never speaks SSH: the connect timeout ends the wait."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        target = Target("ssh", "root", "127.0.0.1", port, str(tmp_path))
        error = refused(target, connect_timeout=0.5)
    assert type(error) is ConnectError
    assert "timed out" in str(error)


# -- forced commands ------------------------------------------------------------------


@pytest.mark.needs_sshd
def test_forced_command_pins_the_root(sshd: SSHServer, tmp_path: Path) -> None:
    """With `restrict,command="... --root /fixed"` the client cannot pick another root
    or run anything else: its own command (here one that would create a file) is only
    visible to the far program as SSH_ORIGINAL_COMMAND."""
    fixed, asked = tmp_path / "fixed", tmp_path / "asked for"
    fixed.mkdir()
    asked.mkdir()
    sshd.force_command(f"{far_echo_command()} serve --stdio --root {shlex.quote(str(fixed))}")
    marker = tmp_path / "client command ran"
    sneaky = f"touch {shlex.quote(str(marker))}; {far_echo_command()}"

    async def body() -> bytes:
        channel = await open_ssh(parse_target(f"far-forced:{asked}"), remote_syncd=sneaky)
        return await echo_once(channel)

    assert run(body()) == b"ping"
    record = json.loads((fixed / ARGV_FILE).read_text())
    assert record["argv"] == ["serve", "--stdio", "--root", str(fixed)]
    assert record["ssh_original_command"] == remote_command(sneaky, str(asked))
    assert not (asked / ARGV_FILE).exists()
    assert not marker.exists()


@pytest.mark.needs_sshd
def test_open_channel_dispatches_on_target_kind(sshd: SSHServer, root: Path) -> None:
    async def body(target: Target) -> bytes:
        channel = await open_channel(target, remote_syncd=far_echo_command())
        return await echo_once(channel)

    assert run(body(parse_target(f"far:{root}"))) == b"ping"
    assert run(body(parse_target(str(root)))) == b"ping"


# -- target syntax and the remote command ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ssh://host/srv/mirror", Target("ssh", None, "host", None, "/srv/mirror")),
        ("ssh://me@host:2222/srv/mirror", Target("ssh", "me", "host", 2222, "/srv/mirror")),
        ("ssh://host/", Target("ssh", None, "host", None, "/")),
        ("ssh://host/a b/$x", Target("ssh", None, "host", None, "/a b/$x")),
        ("ssh://[::1]:2222/srv", Target("ssh", None, "::1", 2222, "/srv")),
        ("ssh://me@[fe80::1%eth0]/srv", Target("ssh", "me", "fe80::1%eth0", None, "/srv")),
        ("ssh://a@b@host/p", Target("ssh", "a@b", "host", None, "/p")),
        ("host:/srv/mirror", Target("ssh", None, "host", None, "/srv/mirror")),
        ("me@host.example:/srv", Target("ssh", "me", "host.example", None, "/srv")),
        ("host:relative/dir", Target("ssh", None, "host", None, "relative/dir")),
        ("host:~/mirror", Target("ssh", None, "host", None, "~/mirror")),
        ("host:a:b", Target("ssh", None, "host", None, "a:b")),
        ("[::1]:/srv", Target("ssh", None, "::1", None, "/srv")),
        ("me@[::1]:rel", Target("ssh", "me", "::1", None, "rel")),
        ("/srv/mirror", Target.local("/srv/mirror")),
        ("relative/dir", Target.local("relative/dir")),
        ("./name:with:colons", Target.local("./name:with:colons")),
        ("dir/sub:colon", Target.local("dir/sub:colon")),
        ("plain", Target.local("plain")),
    ],
)
def test_parse_target(text: str, expected: Target) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty target"),
        ("   ", "empty target"),
        ("ssh://", "no path"),
        ("ssh:///srv", "empty host"),
        ("ssh://host", "no path"),
        ("ssh://@host/p", "empty user"),
        ("ssh://host:/p", "port ''"),
        ("ssh://host:0/p", "port '0'"),
        ("ssh://host:65536/p", "port '65536'"),
        ("ssh://host:ssh/p", "port 'ssh'"),
        ("ssh://::1/p", "brackets"),
        ("ssh://[::1/p", "unclosed"),
        ("ssh://[::1]x/p", "after the bracketed host"),
        (":/srv", "empty host"),
        ("@host:/srv", "empty user"),
        ("host:", "no path"),
        ("me@host:", "no path"),
        ("[::1]:", "no path"),
        ("-oProxyCommand=evil:/p", "not a host name"),
        ("bad host:/p", "not a host name"),
        ("http://host/p", "only ssh://"),
    ],
)
def test_parse_target_rejects(text: str, why: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_target(text)
    assert why in str(info.value)
    if text.strip():
        assert repr(text) in str(info.value)


def test_target_str_round_trips() -> None:
    for text in ["ssh://me@host:2222/srv", "ssh://host/srv", "me@host:rel", "/srv/m"]:
        assert str(parse_target(text)) == text
    assert str(parse_target("ssh://[::1]:2222/srv")) == "ssh://[::1]:2222/srv"


@pytest.mark.parametrize(
    ("path", "root_arg"),
    [
        ("/srv/mirror", "/srv/mirror"),
        ('/srv/it\'s $HOME; rm -rf * `x` "q"', '/srv/it\'s $HOME; rm -rf * `x` "q"'),
        ("relative dir", "relative dir"),
        ("~", "."),
        ("~/mirror", "mirror"),
        ("~user/x", "~user/x"),
    ],
)
def test_remote_command_quotes_the_root(path: str, root_arg: str) -> None:
    command = remote_command("/opt/venv/bin/python -m syncd", path)
    assert shlex.split(command) == [
        "/opt/venv/bin/python",
        "-m",
        "syncd",
        "serve",
        "--stdio",
        "--root",
        root_arg,
    ]
