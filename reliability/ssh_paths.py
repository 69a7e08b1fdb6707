"""Paths outside the root, asked for through the forced-command login.

- pushes: the real `syncd push` through the pinned key (`far-forced:PATH`) naming
  another absolute path, R/../other, ~, a relative path: refused (exit 2, "serves R"),
  the other path never created, R's live tree unchanged; a push naming R, or a symlink
  to R, or carrying a `--remote-syncd` that would run something else, lands in R and
  runs nothing else;
- wire: the hostile campaign's wire cases (reliability/hostile.py: names and paths,
  msgpack bombs, limits, messages out of order), each carried by an OpenSSH client
  logged in with the pinned key to `syncd serve --root` the case's far root, judged as
  there (the expected ERROR code and words, non-zero exit, the live tree unchanged, not
  a byte changed beside it, no absolute name it sent - /etc/cron.d/evil - on the host);
  plus HELLO naming another root, a tree with an entry at `.syncd`, and a post-apply
  command proposed by the client (README's serve runs none: REPORT says "refused");
- home: a root that holds the login's home directory (sshd's AuthorizedKeysFile and
  $HOME inside R, as for a `mirror` user whose home is the mirror): a push carrying
  `.ssh/authorized_keys` must not turn the pinned key into a shell.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from protocol.messages import Report
from reliability import hostile, hostile_targets
from reliability import hostile_cases as hc
from reliability.serve_driver import Reply, Script, Talk, converse
from reliability.ssh_forced import ALIAS, pin
from reliability.sshbed import Bed, Check, forced_command, run_client, ssh_argv
from tests.pushutil import run_push, snapshot_id
from tests.sshd import SSHServer, authorized_line, forced_options

PUSHES = "forced command: pushes naming another root refused or landing in R"
WIRE = "paths: hostile wire input through the forced command refused"
HOME = "forced command: a root holding the login's home refused"
QUICK_WIRE = (
    "name '..'",
    "absolute name",
    "path of 4,400 bytes",
    "array32 declaring 4 Gi items",
    "frame of 4 GiB - 1",
    "OFFER before HELLO",
)


# -- pushes naming another root -------------------------------------------------------


def refused_push(name: str, path: Callable[[Path, Path], str], quick: bool = False) -> Check:
    """`path(R, other)`: the path the push names."""

    def run(bed: Bed) -> str:
        root, other = pin(bed), bed.fresh("elsewhere")
        before = snapshot_id(root)
        done = run_push(bed.source, f"{ALIAS}:{path(root, other)}", env=bed.main.env())
        problems = [
            (done.returncode != 2, f"exit {done.returncode}, expected 2"),
            (f"serves {root}" not in done.stderr, "the error does not say which root is served"),
            ("Traceback" in done.stderr, "a traceback"),
            (other.exists() and not other.is_symlink(), f"{other} was created"),
            (snapshot_id(root) != before, "R's live tree changed"),
        ]
        found = [what for failed, what in problems if failed]
        return "; ".join(found) + (f": {done.stderr.strip()[-300:]}" if found else "")

    return Check(PUSHES, name, run, quick)


def landing_push(
    name: str, path: Callable[[Bed, Path], str], *flags: str, quick: bool = False
) -> Check:
    """A push that must land in R (and run nothing else)."""

    def run(bed: Bed) -> str:
        root = pin(bed)
        marker = bed.marker("remote-syncd")
        extra = [flag.replace("MARKER", str(marker)) for flag in flags]
        done = run_push(bed.source, f"{ALIAS}:{path(bed, root)}", *extra, env=bed.main.env())
        if done.returncode != 0:
            return f"exit {done.returncode}: {done.stderr.strip()[-300:]}"
        if snapshot_id(root) != snapshot_id(bed.source):
            return "R does not equal the source"
        return f"{marker.name} exists" if marker.exists() else ""

    return Check(PUSHES, name, run, quick)


def link_to(root: Path, other: Path) -> str:
    other.parent.mkdir(parents=True, exist_ok=True)
    other.symlink_to(root)
    return str(other)


def push_checks() -> Iterator[Check]:
    yield refused_push("another absolute path", lambda root, other: str(other), quick=True)
    yield refused_push(
        "R/../OTHER", lambda root, other: f"{root}/../{other.relative_to(root.parent)}"
    )
    yield refused_push("~ (the login's home)", lambda root, other: "~")
    yield refused_push("a relative path", lambda root, other: other.name)
    yield landing_push("R itself", lambda bed, root: str(root), quick=True)
    # The far side looks up nothing a client names: a symlink to R is another root.
    yield refused_push("a symlink to R (not resolved)", link_to)
    yield landing_push(
        "R, with --remote-syncd 'touch MARKER; syncd'",
        lambda bed, root: str(root),
        "--remote-syncd",
        "touch MARKER; syncd",
    )


# -- hostile wire input through SSH ----------------------------------------------------


def ssh_talk(bed: Bed) -> Talk:
    """Each case's far root becomes the pinned key's root, then OpenSSH carries the script."""

    def talk(far: Path, script: Script) -> Reply:
        bed.main.reset()
        bed.main.force_command(forced_command(far))
        return converse(far, script, command=ssh_argv(bed.main, ALIAS), env=bed.main.env())

    return talk


def hello_root_case(name: str, asked: Callable[[Path, Path], str], talk: Talk) -> hostile.Case:
    """HELLO names another root: BAD_PATH, "serves"."""
    key, data = hc.record(hc.file_item("f"))

    def run(far: Path, outside: Path) -> str:
        script = Script(key, {key: data}, {hc.PIECE: hc.DATA}, params={"root": asked(far, outside)})
        before = snapshot_id(far)
        problem = hostile.expect_error(talk(far, script), ("BAD_PATH",), "serves")
        return problem or ("the live tree changed" if snapshot_id(far) != before else "")

    return hostile.Case("paths", name, run)


def post_apply_case(talk: Talk, sample: Path, marker: Callable[[], Path]) -> hostile.Case:
    """A client-proposed post-apply command is refused by README's serve (no
    --allow-post-apply): REPORT says "refused" and nothing ran."""
    made: list[Path] = []

    def setup(far: Path, outside: Path) -> None:
        shutil.rmtree(far)
        shutil.copytree(sample, far, symlinks=True)  # an oc-mirror tree: the check passes

    def run(far: Path, outside: Path) -> str:
        made.append(marker())
        script = Script(bytes.fromhex(snapshot_id(far)), params={"post_apply": f"touch {made[-1]}"})
        reply = talk(far, script)
        report = next((e for e in reply.events if isinstance(e, Report)), None)
        if report is None:
            return f"no REPORT; events {reply.events[:4]}, stderr {reply.stderr[-200:]}"
        if report.post_apply != "refused" or made[-1].exists():
            return f"post_apply {report.post_apply!r}, {made[-1].name} exists: {made[-1].exists()}"
        return ""

    return hostile.Case("paths", "post-apply command proposed by the client", run, setup)


def extra_cases(bed: Bed, talk: Talk) -> Iterator[hostile.Case]:
    yield hello_root_case("HELLO root naming another path", lambda far, out: str(out), talk)
    yield hello_root_case(
        "HELLO root naming R/../outside", lambda far, out: f"{far}/../{out.name}", talk
    )
    syncd_entry = hostile.evil_tree_script(hc.file_item(".syncd"))
    yield hostile.Case(
        "paths", "tree entry at .syncd", hostile.wire_case(syncd_entry, ("REMOTE",), ".syncd", talk)
    )
    yield post_apply_case(talk, bed.source, lambda: bed.marker("post-apply"))
    for name in list(hostile_targets.OUTSIDE_LINKS)[:2]:  # a tag link, a blob data link
        case = hostile_targets.link_case(name, False, talk)
        yield hostile.Case("paths", f"target: {name}", case.run)


# Absolute names the wire cases send ("/etc/cron.d/evil"): written as named, they would
# land outside the case folder the fingerprints cover, so they are looked for themselves.
ABSOLUTE = tuple(
    Path(str(item[0])) for item, _, _ in hc.EVIL_NAMES.values() if str(item[0]).startswith("/")
)


def wire_check(number: int, case: hostile.Case, quick: bool) -> Check:
    def run(bed: Bed) -> str:
        present = {path for path in ABSOLUTE if path.exists()}
        verdict = hostile.run_case(bed.scratch / "wire", number, case)
        bed.bytes_outside += verdict.bytes_outside
        appeared = [str(p) for p in ABSOLUTE if p.exists() and p not in present]
        return verdict.problem or (f"{', '.join(appeared)} appeared" if appeared else "")

    return Check(WIRE, f"{case.category}: {case.name}", run, quick)


def wire_checks(bed: Bed) -> Iterator[Check]:
    talk = ssh_talk(bed)
    cases = [*hostile.wire_cases(talk), *extra_cases(bed, talk)]
    for number, case in enumerate(cases):
        quick = case.name in QUICK_WIRE or case.category == "paths"
        yield wire_check(number, case, quick)


# -- a root holding the login's home ----------------------------------------------------


def home_in_root(bed: Bed) -> str:
    """sshd reads the key's authorized_keys below R and the session's $HOME is R."""
    root = bed.fresh("home-root")
    keys = root / ".ssh" / "authorized_keys"
    keys.parent.mkdir(parents=True)
    config = [f"AuthorizedKeysFile {keys}", f"SetEnv HOME={root}"]
    server = SSHServer.start(bed.fresh("sshd-home"), config)
    try:
        pinned = forced_options(forced_command(root))
        keys.write_text(f"{authorized_line(server.forced_key, pinned)}\n")
        before = keys.read_bytes()
        attack = bed.fresh("attack-home")
        (attack / ".ssh").mkdir(parents=True)
        (attack / ".ssh" / "authorized_keys").write_text(server.forced_key + "\n")
        pushed = run_push(attack, f"{ALIAS}:{root}", env=server.env())
        marker = bed.marker("home-shell")
        run_client(ssh_argv(server, ALIAS, f"touch {marker}"), server.env())
    finally:
        server.stop()
    problems = [
        (pushed.returncode != 2, f"push exit {pushed.returncode}, expected 2"),
        ("home" not in pushed.stderr, "the refusal does not name the home directory"),
        (keys.read_bytes() != before, "authorized_keys was replaced"),
        (marker.exists(), "the pinned key ran a command: a shell"),
    ]
    found = [what for failed, what in problems if failed]
    return "; ".join(found) + (f": {pushed.stderr.strip()[-300:]}" if found else "")


def checks(bed: Bed) -> Iterator[Check]:
    yield from push_checks()
    yield Check(HOME, "push of .ssh/authorized_keys into R = $HOME", home_in_root)
    yield from wire_checks(bed)
