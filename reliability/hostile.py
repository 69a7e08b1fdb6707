"""Hostile campaign: hostile input over the wire, on media, and symlinks in the far tree.

Each case runs against a fresh far root (`far/`, holding `keep/file`) next to a sentinel
folder (`outside/`) whose every byte, and the listing of the folder holding both, is
fingerprinted before and after:
- wire (paths, bombs, limits, order): crafted frames to a real `syncd serve --stdio`
  (reliability/serve_driver.py): the server must answer ERROR with the expected code and
  a message naming the problem, exit non-zero, and leave the live tree as it was;
- media: hostile indexes (the golden hostile vectors, and self-consistent indexes whose
  tree records name '..', absolute paths, NUL, long names and paths, non-UTF-8) and a
  pack that is a symlink out of the medium, given to a real `syncd import` process:
  exit 2, the volume refused by name, nothing applied;
- symlinks: a far directory that is a symlink to outside before a push, and the race: at
  a step of the apply, a directory the next steps write into is swapped for a symlink to
  a copy of itself outside the root (ApplyHooks, the real apply engine); the apply must
  refuse or finish without a byte landing outside.
Figures: cases by category, all refused (or, for symlinks, handled safely), bytes
written outside the root (must be 0).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from protocol.codec import pack
from protocol.connection import MIN_PEER_FRAME, Connection
from protocol.errors import ErrorCode
from protocol.framing import HEADER
from protocol.messages import GetTrees, MsgType
from reliability import hostile_cases as hc
from reliability import hostile_targets, hostile_text, symlink_race
from reliability.campaign import Context, Figure, Outcome
from reliability.otheruser import give_to_other_user, other_user_folder, remove_other_user_folder
from reliability.serve_driver import Reply, Script, Talk, converse
from syncd.scan.api import scan_root
from syncd.state import StateDir
from tests.pushutil import snapshot_id, syncd_env


@dataclass(frozen=True, slots=True)
class Case:
    category: str
    name: str
    run: Callable[[Path, Path], str]  # (far, outside) -> "" as expected, else the problem
    setup: Callable[[Path, Path], None] | None = None  # before the fingerprints are taken
    other_user: bool = False  # the far root belongs to the second user (otheruser.py)


@dataclass(frozen=True, slots=True)
class Verdict:
    category: str
    name: str
    problem: str
    bytes_outside: int


# -- fingerprints --------------------------------------------------------------------------


def fingerprint(folder: Path, skip: Path) -> dict[str, tuple[int, str]]:
    """Every entry below `folder` but `skip`: (size, sha256 of its bytes or link target)."""
    found: dict[str, tuple[int, str]] = {}
    for top, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if Path(top, d) != skip]
        for name in dirs + files:
            path = Path(top, name)
            found[str(path.relative_to(folder))] = _entry(path)
    return found


def _entry(path: Path) -> tuple[int, str]:
    if path.is_symlink():
        return 0, "link:" + str(path.readlink())
    if path.is_dir():
        return 0, "dir"
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()


def bytes_changed(before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]) -> int:
    """Bytes of entries added or changed (at least 1 per changed entry) and removed."""
    changed = [k for k in before.keys() | after.keys() if before.get(k) != after.get(k)]
    return sum(max(1, after.get(k, before.get(k, (0, "")))[0]) for k in changed)


# -- wire cases ----------------------------------------------------------------------------


def expect_error(reply: Reply, codes: tuple[str, ...], word: str) -> str:
    if "Traceback" in reply.stderr:
        return f"traceback on the server's stderr: {reply.stderr[-400:]}"
    if reply.error is None:
        return f"no ERROR from the server; events: {reply.events[:4]}"
    code = ErrorCode(reply.error.code).name
    if code not in codes:
        return f"ERROR {code} ({reply.error.message}), expected {'/'.join(codes)}"
    if word.lower() not in reply.error.message.lower():
        return f"ERROR message {reply.error.message!r} does not say {word!r}"
    if reply.exit_code == 0:
        return "the server exited 0 after refusing"
    return ""


def wire_case(
    script: Script, codes: tuple[str, ...], word: str = "", talk: Talk = converse
) -> Callable[[Path, Path], str]:
    """`talk` carries the script to a server for `far`: a local `syncd serve` by default,
    the SSH campaign's forced-command login otherwise."""

    def run(far: Path, outside: Path) -> str:
        before = snapshot_id(far)
        problem = expect_error(talk(far, script), codes, word)
        if not problem and snapshot_id(far) != before:
            problem = "the live tree changed"
        return problem

    return run


def answer_with(raw: bytes) -> Callable[[Connection, object], bytes | None]:
    """Send `raw` instead of the first TREES answer."""

    def inject(conn: Connection, event: object) -> bytes | None:
        return raw if isinstance(event, GetTrees) else None

    return inject


def evil_tree_script(children: list[object]) -> Script:
    key, data = hc.record(children)
    return Script(key, {key: data}, {hc.PIECE: hc.DATA})


def path_cases(talk: Talk = converse) -> Iterator[Case]:
    category = "wire: names and paths"
    for name, (children, codes, word) in hc.EVIL_NAMES.items():
        yield Case(category, name, wire_case(evil_tree_script(children), codes, word, talk))
    key, data = hc.not_utf8_record()
    script = Script(key, {key: data}, {hc.PIECE: hc.DATA})
    yield Case(category, "name not UTF-8", wire_case(script, ("MALFORMED",), "UTF-8", talk))
    chain = hc.deep_chain(17)
    root = next(iter(chain))
    script = Script(root, chain, {hc.PIECE: hc.DATA})
    yield Case(category, "path of 4,400 bytes", wire_case(script, ("LIMIT",), "4096", talk))


def bomb_cases(talk: Talk = converse) -> Iterator[Case]:
    root = hc.record(hc.file_item("f"))[0]
    for name, (payload, codes) in hc.BOMBS.items():
        script = Script(root, inject=answer_with(hc.frame(payload)))
        yield Case("wire: msgpack bombs", name, wire_case(script, codes, talk=talk))


def limit_cases(talk: Talk = converse) -> Iterator[Case]:
    root = hc.record(hc.file_item("f"))[0]
    over = Script(root, inject=answer_with(HEADER.pack(MIN_PEER_FRAME + 10 * 65536)))
    huge = Script(root, inject=answer_with(HEADER.pack(2**32 - 1)))
    small = Script(root, opening=hc.hello(max_frame=1024) + hc.offer(root))
    agent = hc.frame(pack([int(MsgType.HELLO), [1, 1], "a" * 70_000, [], {}]))
    long_agent = Script(root, opening=agent + hc.offer(root))
    cases: dict[str, tuple[Script, tuple[str, ...], str]] = {
        "frame over the limit": (over, ("LIMIT",), "exceeds"),
        "frame of 4 GiB - 1": (huge, ("LIMIT",), "exceeds"),
        "peer max_frame of 1 KiB": (small, ("LIMIT",), "max_frame"),
        "HELLO agent of 70,000 bytes": (long_agent, ("LIMIT",), ""),
    }
    for name, (script, codes, word) in cases.items():
        yield Case("wire: limits", name, wire_case(script, codes, word, talk))


def order_cases(talk: Talk = converse) -> Iterator[Case]:
    root = hc.record(hc.file_item("f"))[0]
    cases: dict[str, tuple[Script, tuple[str, ...], str]] = {
        "BYE during the descent": (
            Script(root, inject=answer_with(hc.raw_message(MsgType.BYE))),
            ("UNEXPECTED",),
            "BYE",
        ),
        "BLOBS never asked for": (
            Script(root, inject=answer_with(hc.raw_message(MsgType.BLOBS, [[hc.PIECE, hc.DATA]]))),
            ("UNEXPECTED",),
            "",
        ),
        "TREES of another id": (
            Script(root, inject=answer_with(hc.raw_message(MsgType.TREES, [list(hc.record())]))),
            ("UNEXPECTED",),
            "not asked",
        ),
        "OFFER before HELLO": (Script(root, opening=hc.offer(root)), ("UNEXPECTED",), "OFFER"),
        "HELLO twice": (
            Script(root, opening=hc.hello() + hc.hello() + hc.offer(root)),
            ("UNEXPECTED",),
            "HELLO",
        ),
        "unknown message type 99": (
            Script(root, opening=hc.hello() + hc.raw_message(99)),  # type: ignore[arg-type]
            ("MALFORMED",),
            "99",
        ),
        "stream ends inside a frame": (
            Script(root, opening=hc.hello() + hc.offer(root)[:7]),
            ("TRUNCATED",),
            "",
        ),
    }
    for name, (script, codes, word) in cases.items():
        yield Case("wire: messages out of order", name, wire_case(script, codes, word, talk))


def wire_cases(talk: Talk = converse) -> list[Case]:
    """Every wire case, carried by `talk`."""
    return [*path_cases(talk), *bomb_cases(talk), *limit_cases(talk), *order_cases(talk)]


# -- media cases ---------------------------------------------------------------------------


def run_import(far: Path, media: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "syncd", "import", str(media), "--root", str(far), "--json"]
    return subprocess.run(
        command, capture_output=True, text=True, env=syncd_env(), timeout=120, check=False
    )


def media_case(
    index: bytes, word: str = "", *, pack_link: bool = False, names_volume: bool = True
) -> Case:
    """A volume holding `index` and the golden pack (or a symlink to it, outside)."""

    def setup(far: Path, outside: Path) -> None:
        volume = volume_folder(far)
        volume.mkdir(parents=True)
        (volume / "index").write_bytes(index)
        if pack_link:
            (outside / "pack").write_bytes(hc.sound_pack())
            (volume / "pack-0001").symlink_to(outside / "pack")
        else:
            (volume / "pack-0001").write_bytes(hc.sound_pack())

    def run(far: Path, outside: Path) -> str:
        before = snapshot_id(far)
        done = run_import(far, volume_folder(far).parent)
        problem = judge_import(done, word, "vol-0001" if names_volume else "")
        if not problem and snapshot_id(far) != before:
            problem = "the live tree changed"
        return problem

    return Case("media: crafted indexes", "", run, setup)


def volume_folder(far: Path) -> Path:
    return far.parent / "media" / "20260101T000000Z-0a1b2c3d" / "vol-0001"


def judge_import(done: subprocess.CompletedProcess[str], word: str, volume: str) -> str:
    if "Traceback" in done.stderr:
        return f"traceback: {done.stderr[-400:]}"
    if done.returncode != 2:
        return f"exit {done.returncode}, expected 2: {done.stderr[-300:]}"
    if volume not in done.stderr:
        return f"the refusal does not name the volume: {done.stderr[-300:]}"
    if word.lower() not in done.stderr.lower():
        return f"the refusal does not say {word!r}: {done.stderr[-300:]}"
    return ""


def media_cases() -> Iterator[Case]:
    for name, index in hc.hostile_index_vectors().items():
        yield named(media_case(index), name)
    blob = hc.media_blob()
    for name, (children, _, word) in hc.EVIL_NAMES.items():
        item = list(children)
        if item[1] == 0:
            item = hc.file_item(str(item[0]), blob)
        key, data = hc.record(item)
        index = hc.index_with_trees(key, {key: data})
        yield named(media_case(index, word), f"tree record: {name}")
    key, data = hc.not_utf8_record()
    not_utf8 = media_case(hc.index_with_trees(key, {key: data}), "UTF-8")
    yield named(not_utf8, "tree record: name not UTF-8")
    chain = hc.deep_chain(17, blob)
    # Refused when the apply is planned, once every volume is in: no one volume is to blame.
    deep = media_case(hc.index_with_trees(next(iter(chain)), chain), "4096", names_volume=False)
    yield named(deep, "tree records: path of 4,400 bytes")
    linked = media_case(hc.sound_index(), "not a regular file", pack_link=True)
    yield named(linked, "pack is a symlink out of the medium")


def named(case: Case, name: str) -> Case:
    return Case(case.category, name, case.run, case.setup)


# -- symlink cases -------------------------------------------------------------------------


def symlink_cases(ctx: Context) -> Iterator[Case]:
    planted = symlink_race.planted_link
    yield Case("symlinks", "far directory is a symlink to outside", planted.run, planted.setup)
    for step in symlink_race.race_steps(ctx):
        race = symlink_race.Race(step)
        yield Case("symlinks", f"race: {race.describe()}", race.run, race.setup)


# -- the campaign --------------------------------------------------------------------------


def text_cases() -> Iterator[Case]:
    """Texts from the far side or a medium, as a person sees them (hostile_text.py)."""
    for build in hostile_text.CASES:
        name, setup, run = build()
        yield Case("texts shown to people", name, run, setup)


def cases(ctx: Context, measured: hostile_targets.Measured) -> list[Case]:
    targets = [
        Case(t.category, t.name, t.run, t.setup, t.other_user)
        for t in hostile_targets.cases(ctx, measured)
    ]
    return [
        *wire_cases(),
        *media_cases(),
        *symlink_cases(ctx),
        *targets,
        *text_cases(),
    ]


def run_case(base: Path, number: int, case: Case) -> Verdict:
    name = f"case-{number}"
    folder = other_user_folder(name) if case.other_user else base / name
    far, outside = folder / "far", folder / "outside"
    (far / "keep").mkdir(parents=True)
    (far / "keep" / "file").write_bytes(b"existing")
    scan_root(far, StateDir(far))  # a far root syncd knows: serve and import refuse others
    outside.mkdir()
    (outside / "sentinel").write_bytes(b"must stay as it is")
    if case.setup is not None:
        case.setup(far, outside)
    if case.other_user:
        give_to_other_user(far)
    before = fingerprint(folder, skip=far)
    try:
        problem = case.run(far, outside)
    except Exception as exc:  # the campaign's finding: name it, run the other cases
        problem = f"{type(exc).__name__}: {exc}"
    after = fingerprint(folder, skip=far)
    outside_bytes = bytes_changed(before, after)
    if outside_bytes and not problem:
        problem = f"{outside_bytes} bytes changed outside the root"
    if case.other_user:
        remove_other_user_folder(folder)
    else:
        shutil.rmtree(folder, ignore_errors=True)
    return Verdict(case.category, case.name, problem, outside_bytes)


def run(ctx: Context) -> Outcome:
    base = ctx.scratch / "hostile"
    base.mkdir()
    symlink_race.prepare(base / "months")
    measured = hostile_targets.Measured()
    verdicts = [run_case(base, n, case) for n, case in enumerate(cases(ctx, measured))]
    shutil.rmtree(base, ignore_errors=True)
    result = outcome(verdicts)
    result.figures += big_index_figures(measured)
    return result


def big_index_figures(measured: hostile_targets.Measured) -> list[Figure]:
    """Item 6: what refusing an unsigned index of hundreds of MiB cost (bounded memory)."""
    mib = measured.index_bytes / (1 << 20)
    rss = measured.max_rss_kib / 1024
    return [
        Figure(f"unsigned index of {mib:.0f} MiB refused: seconds", f"{measured.seconds:.2f}"),
        Figure(
            f"unsigned index of {mib:.0f} MiB refused: peak RSS of the import (MiB)",
            f"{rss:.0f}",
            "< 64",
            0 < rss < 64,
        ),
    ]


def outcome(verdicts: list[Verdict]) -> Outcome:
    result = Outcome("hostile")
    by_category = Counter(v.category for v in verdicts)
    for category, count in by_category.items():
        held = sum(1 for v in verdicts if v.category == category and not v.problem)
        result.figures.append(
            Figure(f"{category}: refused or safe", f"{held} of {count}", "all", held == count)
        )
    outside = sum(v.bytes_outside for v in verdicts)
    result.figures += [
        Figure("cases", str(len(verdicts))),
        Figure("bytes written outside the root", str(outside), "0", outside == 0),
    ]
    result.failures = [f"{v.category}: {v.name}: {v.problem}" for v in verdicts if v.problem]
    return result
