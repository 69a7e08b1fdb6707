"""Host keys: every known_hosts state a real `syncd push` over SSH may meet.

Each case writes the client's known_hosts, then runs the real CLI against the campaign's
sshd through the `far` alias (an unrestricted key: only the host key check stands in the
way) into a far root that does not exist yet.

A refusal must be: exit 2, one line on stderr naming the host and port and saying why
(`words`), no traceback, the far root never created, known_hosts unchanged, and sshd's
log showing no login at all: the connection ended during key exchange, before any byte
of payload. A control (an entry that does trust the offered key) must push and land.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

from reliability.sshbed import Bed, Check, LogMark, syncd_program
from tests.pushutil import run_push, snapshot_id
from tests.sshd import SSH_KEYGEN, make_key

REFUSED = "host keys: refused"
TRUSTED = "host keys: controls (trusted entries) accepted"

# Bed -> the known_hosts text (None: no file at all)
KnownHosts = Callable[[Bed], str | None]
QUICK = (
    "empty known_hosts",
    "another ed25519 key known (--accept-new-host-key)",
    "a key of another type (ecdsa) known (--accept-new-host-key)",
    "@cert-authority line, plain key offered (--accept-new-host-key)",
    "@revoked key, no other entry (--accept-new-host-key)",
    "[127.0.0.1]:PORT entry",
    "unknown, --accept-new-host-key: recorded, then trusted",
)


def other_key(bed: Bed, kind: str = "ed25519") -> str:
    """'TYPE BASE64' of a fresh key that is not the server's."""
    path = bed.scratch / "keys" / f"impostor-{kind}"
    if kind == "ed25519":
        public = make_key(path, "impostor")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            subprocess.run([SSH_KEYGEN, "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
        public = path.with_name(path.name + ".pub").read_text()
    return " ".join(public.split()[:2])


def hashed(text: str, bed: Bed) -> str:
    """`text` with its host names hashed, as `ssh-keygen -H` writes them."""
    path = bed.scratch / "keys" / "to-hash"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    subprocess.run([SSH_KEYGEN, "-q", "-H", "-f", str(path)], check=True, capture_output=True)
    return path.read_text()


def attempt(
    bed: Bed, known: str | None, *flags: str
) -> tuple[subprocess.CompletedProcess[str], Path, LogMark]:
    server = bed.main
    if known is None:
        server.known_hosts.unlink(missing_ok=True)
    else:
        server.known_hosts.write_text(known)
    far = bed.fresh("hostkey-far")
    mark = LogMark(server)
    target = f"ssh://far{far}"
    done = run_push(bed.source, target, "--remote-syncd", syncd_program(), *flags, env=server.env())
    return done, far, mark


def judge_refusal(bed: Bed, known: str | None, words: tuple[str, ...], *flags: str) -> str:
    done, far, mark = attempt(bed, known, *flags)
    lines = done.stderr.strip().splitlines()
    text = done.stderr.strip()
    port = str(bed.main.port)
    after = bed.main.known_hosts.read_text() if bed.main.known_hosts.exists() else None
    problems = [
        (done.returncode != 2, f"exit {done.returncode}, expected 2"),
        ("Traceback" in done.stderr, "a traceback"),
        (len(lines) != 1, f"{len(lines)} lines on stderr, expected 1"),
        ("127.0.0.1" not in text or port not in text, "the error does not name host and port"),
        (not any(w.lower() in text.lower() for w in words), f"the error does not say {words}"),
        (far.exists(), "the far root was created"),
        (after != known, "known_hosts was changed"),
        (mark.logged_in(), "sshd logged a login: the client authenticated"),
    ]
    found = [what for failed, what in problems if failed]
    return "; ".join(found) + (f": {text[-300:]}" if found else "")


def judge_trusted(bed: Bed, known: str | None, *flags: str) -> str:
    done, far, _ = attempt(bed, known, *flags)
    if done.returncode != 0:
        return f"exit {done.returncode}: {done.stderr.strip()[-300:]}"
    if snapshot_id(far) != snapshot_id(bed.source):
        return "the far root does not equal the source"
    return ""


def refused(name: str, known: KnownHosts, words: tuple[str, ...], *flags: str) -> Check:
    def run(bed: Bed) -> str:
        return judge_refusal(bed, known(bed), words, *flags)

    return Check(REFUSED, name, run, name in QUICK)


def trusted(name: str, known: KnownHosts, *flags: str) -> Check:
    def run(bed: Bed) -> str:
        return judge_trusted(bed, known(bed), *flags)

    return Check(TRUSTED, name, run, name in QUICK)


def accepted_then_remembered(bed: Bed) -> str:
    """--accept-new-host-key records the key; the next push needs no flag."""
    problem = judge_trusted(bed, "", "--accept-new-host-key")
    recorded = bed.main.known_hosts.read_text()
    if not problem and recorded != f"{bed.main.host_label} {bed.main.host_key}\n":
        problem = f"known_hosts holds {recorded!r}"
    return problem or judge_trusted(bed, recorded)


def label(bed: Bed) -> str:
    return bed.main.host_label


def checks() -> Iterator[Check]:
    not_known = ("not known",)
    changed = ("CHANGED",)
    yield refused("no known_hosts file", lambda bed: None, not_known)
    yield refused("empty known_hosts", lambda bed: "", not_known)
    for flags in ((), ("--accept-new-host-key",)):
        with_flag = " (--accept-new-host-key)" if flags else ""

        def another(bed: Bed) -> str:
            return f"{label(bed)} {other_key(bed)}\n"

        def ecdsa(bed: Bed) -> str:
            return f"{label(bed)} {other_key(bed, 'ecdsa')}\n"

        def ca(bed: Bed) -> str:
            return f"@cert-authority {label(bed)} {bed.main.host_key}\n"

        def revoked_only(bed: Bed) -> str:
            return f"@revoked {label(bed)} {bed.main.host_key}\n"

        yield refused(f"another ed25519 key known{with_flag}", another, changed, *flags)
        yield refused(f"a key of another type (ecdsa) known{with_flag}", ecdsa, changed, *flags)
        yield refused(
            f"hashed entry holding another key{with_flag}",
            lambda bed: hashed(another(bed), bed),
            changed,
            *flags,
        )
        yield refused(
            f"@cert-authority line, plain key offered{with_flag}", ca, ("certificate",), *flags
        )
        yield refused(
            f"@revoked key, no other entry{with_flag}", revoked_only, ("revoked",), *flags
        )
    yield refused(
        "@revoked key also listed as trusted",
        lambda bed: (
            f"{label(bed)} {bed.main.host_key}\n@revoked {label(bed)} {bed.main.host_key}\n"
        ),
        ("revoked",),
        "--accept-new-host-key",
    )
    yield refused(
        "negated pattern (*,!127.0.0.1)",
        lambda bed: f"*,!127.0.0.1 {bed.main.host_key}\n",
        not_known,
    )
    yield refused(
        "key trusted for another name ([localhost]:PORT)",
        lambda bed: f"[localhost]:{bed.main.port} {bed.main.host_key}\n",
        not_known,
    )
    yield refused(
        "key trusted for another port",
        lambda bed: f"[127.0.0.1]:{bed.main.port + 1} {bed.main.host_key}\n",
        not_known,
    )
    yield trusted("[127.0.0.1]:PORT entry", lambda bed: f"{label(bed)} {bed.main.host_key}\n")
    yield trusted(
        "hashed [127.0.0.1]:PORT entry",
        lambda bed: hashed(f"{label(bed)} {bed.main.host_key}\n", bed),
    )
    yield trusted(
        "bare 127.0.0.1 entry (OpenSSH also trusts it on any port)",
        lambda bed: f"127.0.0.1 {bed.main.host_key}\n",
    )
    yield Check(
        TRUSTED, "unknown, --accept-new-host-key: recorded, then trusted", accepted_then_remembered
    )
