"""Hostile campaign, part two: targets a far side must refuse, or write as it can hold
them, and the handshake's root (issue 13, items 1, 3, 4, 6, 8 and 9).

- targets (a real `syncd serve`, run as root and again as a second, unprivileged user
  that owns the far root and nothing else): symlinks that leave the root must be refused
  at planning with ERROR BAD_PATH naming the link, the tree and its state untouched;
  setuid/setgid/sticky and group/other-writable modes, a file cut otherwise than this
  side cuts, times out of the file system's range, and a read-only directory that gains
  a file must be applied, checked and found up to date by the next session, with no
  journal left; a mode change of a far file hard-linked to a file outside the root must
  leave that file's mode, time and bytes alone;
- media: the same symlinks in a volume's tree records, given to a real `syncd import`;
- HELLO roots: `~user`, a symlink loop, NUL, another path: ERROR BAD_PATH, one sentence;
- a large unsigned index under `--require-signed-by`: refused by name, its memory and
  time measured (the index is never decoded).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from protocol.errors import ErrorCode
from protocol.messages import Result
from reliability import hostile_cases as hc
from reliability.campaign import Context
from reliability.otheruser import as_other_user, other_user_available, other_user_env
from reliability.serve_driver import Reply, Script, Talk, converse
from tests.pushutil import snapshot_id, syncd_env
from tests.targetutil import D, F, L, Spec, Target, build

TAGS = ".oc-mirror/.cache/docker/registry/v2/repositories/ns/app/_manifests/tags"
BLOBS = ".oc-mirror/.cache/docker/registry/v2/blobs/sha256/ab"

# name -> (the target's entries besides keep/file, what the refusal must name)
OUTSIDE_LINKS: dict[str, tuple[Spec, str]] = {
    "tag link to /etc/shadow": ({f"{TAGS}/t/current/link": L("/etc/shadow")}, "/etc/shadow"),
    "blob data to an outside file": (
        # Nine levels up is the far root; the tenth leaves it.
        {f"{BLOBS}/{'ab' * 32}/data": L("../" * 10 + "outside/sentinel")},
        "outside/sentinel",
    ),
    "absolute target": ({"content/passwd": L("/etc/passwd")}, "'content/passwd'"),
    "'..' past the root": ({"a/b/up": L("../../../outside/sentinel")}, "'a/b/up'"),
    "'..' after a name": ({"a/l": L("b/../../../x"), "a/b/f": F()}, "after a name"),
    "'..' alone at the top": ({"up": L("..")}, "'up' -> '..'"),
}

# name -> (first target, second target or None, the modes the far tree must show)
WRITTEN: dict[str, tuple[Spec, Spec | None, dict[str, int]]] = {
    "setuid, setgid, sticky, world-writable": (
        {"suid": F(mode=0o6755), "world": F(mode=0o666), "tmp": D(0o1777), "tmp/f": F()},
        None,
        {"suid": 0o755, "world": 0o644, "tmp": 0o755},
    ),
    "unreadable file and directory": (
        {"secret": F(mode=0o000), "closed": D(0o000), "closed/f": F()},
        None,
        {"secret": 0o400, "closed": 0o500},
    ),
    "21-byte file in two pieces": ({"f21": F(b"0123456789abcdefghijk", cuts=(10, 11))}, None, {}),
    "mtime -2^63 and 2^63-1": (
        {"old": F(mtime_ns=-(2**63)), "new": F(mtime_ns=2**63 - 1)},
        None,
        {},
    ),
    "read-only directory gains a file": (
        {"ro": D(0o555), "ro/a": F(), f"{TAGS}/t": D(0o555), f"{TAGS}/t/current/link": F()},
        {
            "ro": D(0o555),
            "ro/a": F(),
            "ro/b": F(b"second"),
            f"{TAGS}/t": D(0o555),
            f"{TAGS}/t/current/link": F(),
            f"{TAGS}/u": D(0o555),
            f"{TAGS}/u/current/link": F(),
        },
        {"ro": 0o555, f"{TAGS}/t": 0o555, f"{TAGS}/u": 0o555},
    ),
    "read-only directory removed": (
        {"ro": D(0o555), "ro/sub": D(0o555), "ro/sub/f": F()},
        {"other": F()},
        {},
    ),
}


@dataclass(frozen=True, slots=True)
class TargetCase:
    """A Case for reliability/hostile.py; `other_user` runs serve as the second user."""

    category: str
    name: str
    run: Callable[[Path, Path], str]
    setup: Callable[[Path, Path], None] | None = None
    other_user: bool = False


def users() -> list[bool]:
    """Root, and the second user when this host can switch to it."""
    return [False, True] if other_user_available() else [False]


def _serve(far: Path, other_user: bool) -> tuple[list[str], dict[str, str]]:
    command = [sys.executable, "-m", "syncd", "serve", "--stdio", "--root", str(far)]
    if other_user:
        return as_other_user(command), other_user_env(syncd_env())
    return command, syncd_env()


def offer(far: Path, target: Target, other_user: bool) -> Reply:
    command, env = _serve(far, other_user)
    return converse(far, Script(target.root, target.trees, target.blobs), command=command, env=env)


def _applied(reply: Reply, status: str) -> str:
    if "Traceback" in reply.stderr:
        return f"traceback: {reply.stderr[-400:]}"
    if reply.error is not None:
        return f"ERROR {ErrorCode(reply.error.code).name}: {reply.error.message}"
    results = [e for e in reply.events if isinstance(e, Result)]
    if not results or results[0].status != status:
        return f"expected {status}, got {results[0].status if results else reply.events[:3]}"
    return ""


def link_case(name: str, other_user: bool, talk: Talk | None = None) -> TargetCase:
    """`talk` carries the offer another way (the SSH campaign's forced-command login)."""
    extra, named = OUTSIDE_LINKS[name]
    spec: Spec = {"keep/file": F(b"existing"), **extra}

    def run(far: Path, outside: Path) -> str:
        before = snapshot_id(far)
        target = build(spec)
        if talk is None:
            reply = offer(far, target, other_user)
        else:
            reply = talk(far, Script(target.root, target.trees, target.blobs))
        if reply.error is None or reply.error.code != ErrorCode.BAD_PATH:
            return f"not refused as BAD_PATH: {reply.error or reply.events[:3]}"
        if named not in reply.error.message or "Traceback" in reply.stderr:
            return f"the refusal does not name {named!r}: {reply.error.message}"
        if snapshot_id(far) != before or (far / ".syncd" / "journal").exists():
            return "the live tree or its journal changed"
        return ""

    return TargetCase(
        "targets: symlinks out of the root", _label(name, other_user), run, None, other_user
    )


def written_case(name: str, other_user: bool) -> TargetCase:
    first, second, modes = WRITTEN[name]

    def run(far: Path, outside: Path) -> str:
        for spec in (first, second) if second else (first,):
            problem = _applied(offer(far, build(spec), other_user), "applied")
            if problem:
                return problem
        final = build(second or first)
        problem = _applied(offer(far, final, other_user), "up-to-date")
        if problem:
            return f"second session: {problem}"
        if (far / ".syncd" / "journal").exists():
            return "a journal was left"
        found = {p: stat.S_IMODE(os.lstat(far / p).st_mode) for p in modes}
        if found != modes:
            return f"modes {_octal(found)}, expected {_octal(modes)}"
        return ""

    return TargetCase(
        "targets: written as the far side holds them",
        _label(name, other_user),
        run,
        None,
        other_user,
    )


def hard_link_case(other_user: bool) -> TargetCase:
    """A far file hard-linked to a file outside the root gets a new mode and time."""

    def setup(far: Path, outside: Path) -> None:
        shared = outside / "shared"
        shared.write_bytes(hc.DATA)
        shared.chmod(0o600)
        os.utime(shared, ns=(0, 0))
        os.link(shared, far / "linked")

    def run(far: Path, outside: Path) -> str:
        spec: Spec = {"keep/file": F(b"existing"), "linked": F(hc.DATA, 0o755, 10**18)}
        problem = _applied(offer(far, build(spec), other_user), "applied")
        st = (outside / "shared").stat()
        if not problem and (stat.S_IMODE(st.st_mode), st.st_mtime_ns) != (0o600, 0):
            problem = f"the outside file is now {oct(st.st_mode)}, mtime {st.st_mtime_ns}"
        return problem

    name = _label("mode and time change of a file hard-linked outside", other_user)
    return TargetCase("targets: hard links", name, run, setup, other_user)


def media_link_case(name: str) -> TargetCase:
    extra, named = OUTSIDE_LINKS[name]
    blob = hc.media_blob()
    spec: Spec = {p: replace(e, data=blob) if isinstance(e, F) else e for p, e in extra.items()}
    target = build({"keep/file": F(blob), **spec})
    index = hc.index_with_trees(target.root, target.trees)

    def setup(far: Path, outside: Path) -> None:
        volume = _volume(far)
        volume.mkdir(parents=True)
        (volume / "index").write_bytes(index)
        (volume / "pack-0001").write_bytes(hc.sound_pack())

    def run(far: Path, outside: Path) -> str:
        before = snapshot_id(far)
        done = _import(far, _volume(far).parent)
        if done.returncode != 2 or "Traceback" in done.stderr or named not in done.stderr:
            return f"exit {done.returncode}: {done.stderr[-300:]}"
        return "the live tree changed" if snapshot_id(far) != before else ""

    return TargetCase("media: symlinks out of the root", name, run, setup)


def hello_root_case(asked: str) -> TargetCase:
    def run(far: Path, outside: Path) -> str:
        text = str(far.parent / "loop") if asked == "a symlink loop" else asked
        (far.parent / "loop").unlink(missing_ok=True)
        (far.parent / "loop").symlink_to(far.parent / "loop")
        script = Script(b"\x00" * 32, params={"root": text})
        reply = converse(far, script)
        (far.parent / "loop").unlink()
        expected = f"this far side serves {far}, not {text!r}; nothing was changed"
        if "Traceback" in reply.stderr or reply.error is None:
            return f"no ERROR: {reply.stderr[-300:]}"
        if reply.error.code != ErrorCode.BAD_PATH or reply.error.message != expected:
            return f"ERROR {reply.error.code}: {reply.error.message!r}, expected {expected!r}"
        return ""

    return TargetCase("wire: HELLO roots", repr(asked), run)


@dataclass(slots=True)
class Measured:
    """The big index's refusal: its size, the import's time and peak memory."""

    index_bytes: int = 0
    seconds: float = 0.0
    max_rss_kib: int = 0


def big_index_case(ctx: Context, measured: Measured) -> TargetCase:
    """An unsigned index under --require-signed-by: a real, decodable one of 320 MiB in
    a full run, 64 MiB of zeros with an honest END in the quick slice."""
    size = (64 if ctx.quick else 320) << 20

    def setup(far: Path, outside: Path) -> None:
        volume = _volume(far)
        volume.mkdir(parents=True)
        index = volume / "index"
        if ctx.quick:
            hc.write_junk_index(index, size)
        else:
            index.write_bytes(hc.big_index(size))
        (volume / "pack-0001").write_bytes(hc.sound_pack())
        hc.write_public_key(far.parent / "key.pub")

    def run(far: Path, outside: Path) -> str:
        measured.index_bytes = (_volume(far) / "index").stat().st_size
        required = ("--require-signed-by", str(far.parent / "key.pub"))
        done, measured.seconds, measured.max_rss_kib = _measured_import(far, required)
        if done.returncode != 2 or "unsigned, but a signature is required" not in done.stderr:
            return f"exit {done.returncode}: {done.stderr[-300:]}"
        return ""

    name = f"unsigned index of {size >> 20} MiB under --require-signed-by"
    return TargetCase("media: index bombs", name, run, setup)


def cases(ctx: Context, measured: Measured) -> Iterator[TargetCase]:
    """Every case as root and as the second user. CI's quick slice (tests/ has a
    regression test for each) runs a few refusals as root, and what is written as the
    second user, whom modes stop (as root where there is no second user)."""
    links, written = list(OUTSIDE_LINKS), list(WRITTEN)
    roots = ["~nosuchuser123", "~root", "a\x00b", "a symlink loop", "/etc", "relative/x"]
    if ctx.quick:
        links, written, roots = links[:2], [written[0], written[4]], roots[:2]
    for other_user in users():
        if not ctx.quick or not other_user:
            yield from (link_case(name, other_user) for name in links)
            yield hard_link_case(other_user)
        if not ctx.quick or other_user == users()[-1]:
            yield from (written_case(name, other_user) for name in written)
    yield from (media_link_case(name) for name in (links[:1] if ctx.quick else links))
    yield from (hello_root_case(asked) for asked in roots)
    yield big_index_case(ctx, measured)


def _label(name: str, other_user: bool) -> str:
    return f"{name} (second user)" if other_user else name


def _octal(modes: dict[str, int]) -> str:
    return ", ".join(f"{p}: {m:o}" for p, m in sorted(modes.items()))


def _volume(far: Path) -> Path:
    return far.parent / "media" / "20260101T000000Z-0a1b2c3d" / "vol-0001"


def _import(far: Path, media: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "syncd", "import", str(media), "--root", str(far), *args]
    return subprocess.run(
        command, capture_output=True, text=True, env=syncd_env(), timeout=300, check=False
    )


def _measured_import(
    far: Path, args: tuple[str, ...]
) -> tuple[subprocess.CompletedProcess[str], float, int]:
    """The import, its wall time, and its peak RSS (KiB). A small launcher forks it: a
    child forked from this process would count this process's pages as its own."""
    command = [sys.executable, "-m", "syncd", "import", str(_volume(far).parent)]
    command += ["--root", str(far), *args]
    with tempfile.NamedTemporaryFile("r") as usage:  # outside the fingerprinted folder
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, usage.name, *command],
            capture_output=True,
            text=True,
            env=syncd_env(),
            timeout=600,
            check=False,
        )
        seconds = time.monotonic() - started
        return done, seconds, int(usage.read() or 0)


# Runs argv[2:] as its child and writes the child's peak RSS (KiB) to argv[1].
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""
