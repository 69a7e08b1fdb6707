"""Forced command: what a client holding the pinned key can get out of the far side.

The key is authorized exactly as README.md says,
`restrict,command="syncd serve --stdio --root R"`, on an sshd that allows everything
else (tcp and Unix-socket forwarding, agent and X11 forwarding, ttys, user rc, an sftp
subsystem; AcceptEnv LANG LC_* as Debian ships it): only the key's options stand in
the way. Each case asks, with OpenSSH's own `ssh`, `scp` and `sftp`, for a shell,
another command, another root, a subsystem, environment, a pty or a forwarding, and is
judged by effect, never by the client's messages:

- the far process: a `syncd serve` for R ran (found in /proc), answered HELLO naming R,
  its stdin is no terminal, and its environment holds none of SSH_TTY, SSH_AUTH_SOCK,
  DISPLAY, LD_PRELOAD, BASH_ENV, PYTHONPATH, PYTHONINSPECT, PYTHONSTARTUP, SYNCD_FAULT;
- marker files the asked-for commands would create do not exist; other roots do not;
- forwardings: a listener here never sees the forwarded connection, a remote-forwarded
  port never listens, a remote-forwarded socket never appears.

Controls: the same pty, agent, X11 and forwarding requests with the key's `restrict`
dropped (`command=` alone) are granted and seen by the same checks, and the unpinned key's
sftp put lands: a refusal above is the key options' doing, and the checks can tell.
"""

from __future__ import annotations

import contextlib
import select
import shlex
import socket
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from reliability.sshbed import (
    Bed,
    Check,
    Session,
    end,
    forced_command,
    run_client,
    session,
    ssh_argv,
    syncd_program,
    wait_until,
)
from tests.pushutil import run_push
from tests.sshd import SSHServer, authorized_line, forced_options, free_port

REFUSED = "forced command: no shell, command, root or forwarding"
CONTROLS = "forced command: controls granted (`restrict` dropped, or the unpinned key)"
ALIAS = "far-forced"
# Set only by a granted pty, agent or X11 forwarding, or by a client's environment that
# would run code before serve (the shell's BASH_ENV, Python's start-up variables).
HIDDEN = (
    "SSH_TTY",
    "SSH_AUTH_SOCK",
    "DISPLAY",
    "LD_PRELOAD",
    "BASH_ENV",
    "PYTHONPATH",
    "PYTHONINSPECT",
    "PYTHONSTARTUP",
    "SYNCD_FAULT",
)
# What an sshd allows unless told otherwise, made explicit, plus what is off by default.
PERMISSIVE = (
    "AllowTcpForwarding yes",
    "AllowStreamLocalForwarding yes",
    "AllowAgentForwarding yes",
    "X11Forwarding yes",
    "PermitTTY yes",
    "PermitUserRC yes",
    "PermitTunnel yes",
    "Subsystem sftp internal-sftp",
    "AcceptEnv LANG LC_*",
)


def pin(bed: Bed, *, restrict: bool = True) -> Path:
    """A fresh root R, and the forced key authorized for it (README's line)."""
    root = bed.fresh("forced-root")
    root.mkdir(parents=True)
    server = bed.main
    server.reset()
    options = forced_options(forced_command(root))
    if not restrict:
        options = options.removeprefix("restrict,")
    server.set_authorized(
        [authorized_line(server.client_key), authorized_line(server.forced_key, options)]
    )
    return root


def judge(found: Session, root: Path, *gone: Path, present: Mapping[str, str] | None = None) -> str:
    """What the session got that it should not have: "" when serve ran for R, plainly,
    nothing in `gone` exists, and the variables in `present` arrived as sent."""
    if found.far is None:
        return f"no `syncd serve` for {root} ran (exit {found.exit_code}: {found.stderr[-200:]})"
    environ = found.far.environ
    problems = [
        (found.served_root != str(root), f"HELLO named root {found.served_root!r}"),
        (found.far.has_tty, f"serve's stdin is a terminal ({found.far.stdin})"),
        *((name in environ, f"{name} reached serve") for name in HIDDEN),
        *((path.exists(), f"{path.name} exists") for path in gone),
        *(
            (environ.get(k) != v, f"serve's {k} is {environ.get(k)!r}")
            for k, v in (present or {}).items()
        ),
    ]
    return "; ".join(what for failed, what in problems if failed)


# -- commands ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ask:
    """What a client asks for: its ssh arguments, the paths that must not appear, and the
    SSH_ORIGINAL_COMMAND sshd must hand serve (the ask arrived, and was only recorded)."""

    args: list[str]
    gone: list[Path]
    original: str


PTY_REFUSED = "PTY allocation request failed"


def judge_ask(found: Session, root: Path, ask: Ask) -> str:
    if found.far is None and "-tt" in ask.args and PTY_REFUSED in found.stderr:
        # OpenSSH's client gives up when a forced (-tt) pty is refused: no session at all.
        return "; ".join(f"{path.name} exists" for path in ask.gone if path.exists())
    problem = judge(found, root, *ask.gone)
    seen = found.far.environ.get("SSH_ORIGINAL_COMMAND", "") if found.far else ""
    if not problem and seen != ask.original:
        problem = f"SSH_ORIGINAL_COMMAND is {seen!r}, expected {ask.original!r}"
    return problem


def command_case(name: str, build: Callable[[Bed], Ask], quick: bool = False) -> Check:
    def run(bed: Bed) -> str:
        root = pin(bed)
        ask = build(bed)
        return judge_ask(session(bed.main, ask.args, root), root, ask)

    return Check(REFUSED, name, run, quick)


def touch(bed: Bed) -> Ask:
    marker = bed.marker("touch")
    return Ask([ALIAS, f"touch {marker}"], [marker], f"touch {marker}")


def sh_c(bed: Bed) -> Ask:
    marker = bed.marker("sh-c")
    line = "sh -c " + shlex.quote(f"touch {marker}")
    return Ask([ALIAS, line], [marker], line)


def other_root(bed: Bed) -> Ask:
    other = bed.fresh("other-root")
    line = f"{syncd_program()} serve --stdio --root {other}"
    return Ask([ALIAS, "--", line], [other], line)


def metacharacters(bed: Bed) -> Ask:
    m = [bed.marker("meta") for _ in range(4)]
    line = f"x; touch {m[0]} && $(touch {m[1]}) `touch {m[2]}` | touch {m[3]}"
    return Ask([ALIAS, line], m, line)


def pty_shell(bed: Bed) -> Ask:
    return Ask(["-tt", ALIAS], [], "")


def pty_command(bed: Bed) -> Ask:
    marker = bed.marker("pty")
    return Ask(["-tt", ALIAS, f"touch {marker}"], [marker], f"touch {marker}")


def subsystem(bed: Bed) -> Ask:
    # sshd resolves the subsystem to its command, then runs the forced one instead.
    return Ask(["-s", ALIAS, "sftp"], [], "internal-sftp")


def command_checks() -> Iterator[Check]:
    yield command_case("a command (touch MARKER)", touch, quick=True)
    yield command_case("sh -c 'touch MARKER'", sh_c)
    yield command_case("another root (-- syncd serve --stdio --root OTHER)", other_root, quick=True)
    yield command_case("shell metacharacters (; && $() `` |)", metacharacters)
    yield command_case("a login shell with a pty (-tt)", pty_shell, quick=True)
    yield command_case("a command with a pty (-tt touch MARKER)", pty_command)
    yield command_case("the sftp subsystem (-s sftp)", subsystem, quick=True)


# -- file transfer clients --------------------------------------------------------------


def transfer_case(
    name: str, argv: Callable[[Bed, Path, Path], list[str]], quick: bool = False
) -> Check:
    """`argv(bed, local file, target path)`: a client that would create `target`."""

    def run(bed: Bed) -> str:
        root = pin(bed)
        local = bed.fresh("local-file")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text("would be copied\n")
        target = bed.marker("transfer")
        done = run_client(argv(bed, local, target), bed.main.env(), timeout=5)
        problems = [
            (done.returncode == 0, "the client reported success"),
            (target.exists(), f"{target.name} exists"),
            (any(p.name != ".syncd" for p in root.iterdir()), "R holds new entries"),
        ]
        return "; ".join(what for failed, what in problems if failed)

    return Check(REFUSED, name, run, quick)


def download_case(name: str, argv: Callable[[Bed, Path], list[str]]) -> Check:
    """`argv(bed, local destination)`: a client fetching a far file outside R."""

    def run(bed: Bed) -> str:
        pin(bed)
        fetched = bed.marker("download")
        done = run_client(argv(bed, fetched), bed.main.env(), timeout=5)
        if fetched.exists():
            return f"{fetched.name} was fetched ({fetched.stat().st_size} bytes)"
        return "the client reported success" if done.returncode == 0 else ""

    return Check(REFUSED, name, run, quick=False)


def sftp_batch(bed: Bed, line: str, alias: str = ALIAS) -> list[str]:
    batch = bed.fresh("sftp-batch")
    batch.parent.mkdir(parents=True, exist_ok=True)
    batch.write_text(line + "\n")
    return ssh_argv(bed.main, "-b", str(batch), alias, program="sftp")


def sftp_control(bed: Bed) -> str:
    """The unpinned key's sftp put lands: this sshd's sftp works, the pin is what refuses."""
    pin(bed)
    local, target = bed.fresh("local-file"), bed.fresh("sftp-control")
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text("copied\n")
    done = run_client(sftp_batch(bed, f"put {local} {target}", alias="far"), bed.main.env())
    landed = target.exists() and target.read_text() == "copied\n"
    return "" if done.returncode == 0 and landed else f"not copied: {done.stderr[-200:]}"


def transfer_checks() -> Iterator[Check]:
    yield transfer_case(
        "sftp put", lambda bed, local, target: sftp_batch(bed, f"put {local} {target}"), True
    )
    yield transfer_case(
        "scp (SFTP protocol) to a path outside R",
        lambda bed, local, target: ssh_argv(
            bed.main, str(local), f"{ALIAS}:{target}", program="scp"
        ),
    )
    # The old protocol stalls: scp waits for serve's answer, serve for HELLO; ended at 5 s.
    yield transfer_case(
        "scp -O (the old protocol) to a path outside R",
        lambda bed, local, target: ssh_argv(
            bed.main, "-O", str(local), f"{ALIAS}:{target}", program="scp"
        ),
        quick=False,
    )
    yield download_case(
        "sftp get /etc/hostname", lambda bed, dest: sftp_batch(bed, f"get /etc/hostname {dest}")
    )
    yield download_case(
        "scp /etc/hostname from the far side",
        lambda bed, dest: ssh_argv(bed.main, f"{ALIAS}:/etc/hostname", str(dest), program="scp"),
    )
    yield Check(CONTROLS, "sftp put with the unpinned key (far)", sftp_control, quick=False)


# -- environment ------------------------------------------------------------------------


def hostile_environment(bed: Bed) -> tuple[dict[str, str], list[Path]]:
    """Variables that would run code before serve, and the markers that code would make."""
    shell_marker, python_marker = bed.marker("bash-env"), bed.marker("sitecustomize")
    attack = bed.fresh("attack")
    attack.mkdir(parents=True)
    (attack / "bash_env.sh").write_text(f"touch {shell_marker}\n")
    (attack / "sitecustomize.py").write_text(
        f"import pathlib\npathlib.Path({str(python_marker)!r}).touch()\n"
    )
    values = {
        "BASH_ENV": str(attack / "bash_env.sh"),
        "PYTHONPATH": str(attack),
        "PYTHONINSPECT": "1",
        "PYTHONSTARTUP": str(attack / "sitecustomize.py"),
        "LD_PRELOAD": str(attack / "missing.so"),
        "SYNCD_FAULT": "tree:1",
    }
    return values, [shell_marker, python_marker]


def send_env(bed: Bed) -> str:
    root = pin(bed)
    values, gone = hostile_environment(bed)
    args = ["-o", "SendEnv=" + " ".join(values), ALIAS]
    return judge(session(bed.main, args, root, env=values), root, *gone)


def set_env(bed: Bed) -> str:
    root = pin(bed)
    values, gone = hostile_environment(bed)
    pairs = " ".join(f"{k}={v}" for k, v in values.items())
    return judge(session(bed.main, ["-o", f"SetEnv={pairs}", ALIAS], root), root, *gone)


def accepted_locale(bed: Bed) -> str:
    """LC_* is accepted (Debian's AcceptEnv): it arrives as data and is never evaluated."""
    root = pin(bed)
    marker = bed.marker("lc-all")
    value = f"$(touch {marker})`touch {marker}`"
    found = session(bed.main, ["-o", "SendEnv=LC_ALL", ALIAS], root, env={"LC_ALL": value})
    return judge(found, root, marker, present={"LC_ALL": value})


def environment_checks() -> Iterator[Check]:
    yield Check(REFUSED, "SendEnv BASH_ENV, PYTHONPATH, PYTHONINSPECT, LD_PRELOAD, ...", send_env)
    yield Check(
        REFUSED, "SetEnv BASH_ENV, PYTHONPATH, PYTHONINSPECT, LD_PRELOAD, ...", set_env, False
    )
    yield Check(REFUSED, "LC_ALL holding $(touch MARKER) (accepted, inert)", accepted_locale, False)


# -- forwarding and session features: refused with restrict, granted without -----------


def pending(listener: socket.socket) -> bool:
    return bool(select.select([listener], [], [], 0)[0])


def listening(port: int) -> Callable[[], bool]:
    def probe() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return True
        return False

    return probe


def forwarding(bed: Bed, args: list[str], granted: Callable[[], bool]) -> bool:
    client = subprocess.Popen(
        ssh_argv(bed.main, *args),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=bed.main.env(),
    )
    try:
        return wait_until(granted, client)
    finally:
        end(client)


def local_forward(bed: Bed) -> bool:
    """-W opens the direct-tcpip channel that -L and -D open for each connection."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        return forwarding(bed, ["-W", f"127.0.0.1:{port}", ALIAS], lambda: pending(listener))


def remote_forward(bed: Bed) -> bool:
    port = free_port()
    args = ["-N", "-oExitOnForwardFailure=yes", "-R", f"127.0.0.1:{port}:127.0.0.1:9", ALIAS]
    return forwarding(bed, args, listening(port))


def remote_socket(bed: Bed) -> bool:
    path = bed.marker("forwarded.sock")
    args = ["-N", "-oExitOnForwardFailure=yes", "-R", f"{path}:127.0.0.1:9", ALIAS]
    try:
        return forwarding(bed, args, path.exists)
    finally:
        path.unlink(missing_ok=True)  # the control's socket: not a finding


@contextlib.contextmanager
def agent(bed: Bed) -> Iterator[dict[str, str]]:
    sock = bed.fresh("agent")
    sock.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until(sock.exists, process)
        yield {"SSH_AUTH_SOCK": str(sock)}
    finally:
        end(process)


def session_feature(bed: Bed, feature: str, root: Path, *, talk: bool) -> Session:
    if feature == "agent":
        with agent(bed) as env:
            return session(bed.main, ["-A", ALIAS], root, env=env, talk=talk)
    if feature == "x11":
        # -Y: with no X server here, ssh sends made-up credentials instead of giving up.
        return session(bed.main, ["-Y", ALIAS], root, env={"DISPLAY": ":99"}, talk=talk)
    # A granted pty would garble the protocol stream: the control does not talk.
    return session(bed.main, ["-tt", ALIAS], root, talk=talk)


def feature_granted(found: Session, feature: str) -> bool:
    environ = found.far.environ if found.far else {}
    if feature == "agent":
        return "SSH_AUTH_SOCK" in environ
    if feature == "x11":
        return "DISPLAY" in environ
    return found.far is not None and found.far.has_tty


FORWARDINGS: dict[str, Callable[[Bed], bool]] = {
    "local port forwarding (-W; the channel of -L and -D)": local_forward,
    "remote port forwarding (-R port)": remote_forward,
    "remote forwarding to a Unix socket (-R path)": remote_socket,
}
FEATURES = {"agent forwarding (-A)": "agent", "X11 forwarding (-Y)": "x11", "a pty (-tt)": "pty"}
NOT_SEEN = "not granted without `restrict` either: the check cannot tell"


def forwarding_check(name: str, attempt: Callable[[Bed], bool], *, restrict: bool) -> Check:
    def run(bed: Bed) -> str:
        pin(bed, restrict=restrict)
        granted = attempt(bed)
        if restrict:
            return "granted" if granted else ""
        return "" if granted else NOT_SEEN

    return Check(REFUSED if restrict else CONTROLS, name, run, quick=restrict)


def feature_check(name: str, feature: str, *, restrict: bool) -> Check:
    def run(bed: Bed) -> str:
        root = pin(bed, restrict=restrict)
        found = session_feature(bed, feature, root, talk=restrict)
        if restrict:
            return judge(found, root)
        return "" if feature_granted(found, feature) else NOT_SEEN

    return Check(REFUSED if restrict else CONTROLS, name, run, quick=restrict)


def forwarding_checks() -> Iterator[Check]:
    for restrict in (True, False):
        for name, attempt in FORWARDINGS.items():
            yield forwarding_check(name, attempt, restrict=restrict)
        for name, feature in FEATURES.items():
            if restrict and feature == "pty":
                continue  # asked for by the command cases
            yield feature_check(name, feature, restrict=restrict)


def checks() -> Iterator[Check]:
    yield from command_checks()
    yield from transfer_checks()
    yield from environment_checks()
    yield from forwarding_checks()


# -- against advice: AcceptEnv * ----------------------------------------------------------


def accept_env_everything(bed: Bed) -> bool:
    """Whether, on an sshd with `AcceptEnv *`, a client's BASH_ENV runs code before serve.

    Not README's setup: this measures why sshd's AcceptEnv must stay narrow. The file
    BASH_ENV names is pushed into R first, through the pinned key, as an attacker would.
    """
    root = bed.fresh("accept-env-root")
    root.mkdir(parents=True)
    marker = bed.fresh("accept-env-marker")  # not in bed.markers: not README's setup
    server = SSHServer.start(bed.fresh("sshd-accept-env"), ["AcceptEnv *"])
    try:
        server.force_command(forced_command(root))
        attack = bed.fresh("attack-env")
        attack.mkdir(parents=True)
        (attack / "env.sh").write_text(f"touch {marker}\n")
        run_push(attack, f"{ALIAS}:{root}", env=server.env())
        env = {**server.env(), "BASH_ENV": str(root / "env.sh")}
        run_client(ssh_argv(server, "-o", "SendEnv=BASH_ENV", ALIAS), env)
    finally:
        server.stop()
    return marker.exists()
