"""Corruption campaign: >= 1,000 random mutations of removable-media volumes.

Made once: a far root holding month 1 of the TINY sample, and month 2 exported from it
with `syncd export --full --sign-key` on small volumes (plus foreign exports to mix in).
Each mutation (reliability/media_damage.py) damages a hard-linked copy of the volumes,
then `syncd import --require-signed-by` runs (in-process through the CLI's main; every
SUBPROCESS_EVERY-th one as a real `python -m syncd` process) into a fresh copy of the far
root, and the result is judged:
- the far tree's snapshot id is the previous one or exactly the source's, and every
  registry blob in it hashes to its name (a bad byte applied is the one unforgivable
  outcome);
- damage is detected: refused with a message naming the volume, or the volume named as
  missing; harmless damage (a volume given twice, folders swapped) imports exactly;
- no traceback, and the exit code agrees with the outcome;
- after damage, the pristine volumes still complete the import (nothing poisoned).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from reliability.campaign import Context, Figure, Outcome
from reliability.media_damage import KINDS, Expect, Exports, Media, link_copy
from syncd.sample import TINY, generate_month
from tests.mediautil import Ran, copy_tree, export, keypair, syncd
from tests.pushutil import snapshot_id, syncd_env

FULL_MUTATIONS = 1_020  # 60 of each of the 17 kinds
VOLUME_ARGS = ("--full", "--volume-size", "400k", "--max-file-size", "200k")
SUBPROCESS_EVERY = 50
FOLLOW_UP_EVERY = 3  # in the full run; the quick slice follows up every mutation
BLOBS = Path(".oc-mirror/.cache/docker/registry/v2/blobs/sha256")
WORKERS = 2


@dataclass(frozen=True, slots=True)
class Setup:
    exports: Exports
    far: Path  # the pristine far root (month 1)
    public_key: Path
    before: str  # its snapshot id
    target: str  # the source's (month 2)


@dataclass(frozen=True, slots=True)
class Verdict:
    number: int
    kind: str
    result: str  # "detected", "harmless" or "failed"
    failure: str = ""
    bad_bytes: bool = False
    via_cli: bool = False
    followed: bool = False  # the pristine volumes then completed the import


# -- made once -----------------------------------------------------------------------------


def prepare(base: Path) -> Setup:
    one, two = base / "month-1", base / "month-2"
    generate_month(one, 1, TINY, via_registry=False)
    shutil.copytree(one, two, symlinks=True)
    generate_month(two, 2, TINY, via_registry=False)
    keys = base / "keys"
    keys.mkdir()
    ours, theirs = keypair(keys, "ours"), keypair(keys, "theirs")
    sign = ("--sign-key", str(ours[0]))

    def made(src: Path, name: str, *args: str) -> Path:
        return Path(export(src, base / name, *VOLUME_ARGS, *args)["volumes"][0]["path"]).parent

    # Created in this order: the foreign exports' creation times fall either side of ours.
    older = made(one, "older", *sign)
    mine = made(two, "ours", *sign)
    newer = made(one, "newer", *sign)
    other_key = made(two, "theirs", "--sign-key", str(theirs[0]))
    exports = Exports(mine, older, newer, other_key, ours[0])
    far = copy_tree(one, base / "far-pristine")
    return Setup(exports, far, ours[1], snapshot_id(far), snapshot_id(two))


# -- one mutation --------------------------------------------------------------------------


@contextmanager
def workspace(base: Path, number: int) -> Iterator[Path]:
    folder = base / f"m{number}"
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def import_args(setup: Setup, far: Path, folders: list[Path]) -> list[str]:
    return [
        "import",
        *map(str, folders),
        "--root",
        str(far),
        "--json",
        "--require-signed-by",
        str(setup.public_key),
    ]


def run_import(setup: Setup, far: Path, folders: list[Path], via_cli: bool, *extra: str) -> Ran:
    args = [*import_args(setup, far, folders), *extra]
    if not via_cli:
        try:
            return syncd(*args)
        except Exception as exc:  # the finding: an exception escaped the CLI
            return Ran(-1, "", f"Traceback (in-process): {type(exc).__name__}: {exc}")
    command = [sys.executable, "-m", "syncd", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=syncd_env(), check=False)
    return Ran(done.returncode, done.stdout, done.stderr)


def mutate_and_import(ctx: Context, setup: Setup, base: Path, number: int) -> Verdict:
    kind = list(KINDS)[number % len(KINDS)]
    mutation, expect = KINDS[kind]
    via_cli = number % SUBPROCESS_EVERY == 0
    with workspace(base, number) as folder:
        media = Media(folder / "media", setup.exports)
        link_copy(setup.exports.ours, media.export)
        mutation(ctx.rng(f"corruption:{number}"), media)
        far = copy_tree(setup.far, folder / "far")
        ran = run_import(setup, far, media.folders(), via_cli)
        verdict = judge(setup, far, ran, expect)
        follow = ctx.quick or number % FOLLOW_UP_EVERY == 0
        if not verdict.failure and follow and verdict.result == "detected":
            verdict = follow_up(setup, far, verdict, media)
    problem = f"#{number} {kind} ({media.note}): {verdict.failure}" if verdict.failure else ""
    return Verdict(
        number, kind, verdict.result, problem, verdict.bad_bytes, via_cli, verdict.followed
    )


def judge(setup: Setup, far: Path, ran: Ran, expect: Expect) -> Verdict:
    """What the import did to the far tree and what it said; a failure names the breach."""
    tree = snapshot_id(far)
    bad = bad_blobs(far)
    if tree not in (setup.before, setup.target) or bad:
        detail = f"blobs not matching their names: {bad[:3]}" if bad else "a tree in between"
        return Verdict(0, "", "failed", f"far tree is neither before nor target: {detail}", True)
    if "Traceback" in ran.err or ran.code not in (0, 1, 2):
        return Verdict(0, "", "failed", f"exit {ran.code}, stderr: {ran.err[-600:]}")
    summary = json.loads(ran.out)
    named = unnamed_refusals(summary)
    if named:
        return Verdict(0, "", "failed", f"refusal not naming its volume: {named[0]}")
    detected = bool(refusals(summary) or missing_volumes(summary))
    exact = ran.code == 0 and tree == setup.target
    if expect is Expect.HARMLESS and not exact:
        return Verdict(0, "", "failed", f"harmless damage not imported exactly: {ran.err[-400:]}")
    if expect is Expect.DETECT and not detected:
        return Verdict(0, "", "failed", f"damage not detected (exit {ran.code}, tree {tree})")
    if ran.code == 0 and tree != setup.target:
        return Verdict(0, "", "failed", "exit 0 but the far tree is not the source")
    return Verdict(0, "", "detected" if detected else "harmless")


def refusals(summary: dict[str, object]) -> list[dict[str, object]]:
    volumes = summary.get("volumes", [])
    assert isinstance(volumes, list)
    return [v for v in volumes if v["status"] == "refused"]


def unnamed_refusals(summary: dict[str, object]) -> list[str]:
    problems = [(Path(str(v["path"])).name, str(v["problem"])) for v in refusals(summary)]
    return [problem for name, problem in problems if name not in problem]


def missing_volumes(summary: dict[str, object]) -> list[int]:
    missing = summary.get("missing")
    return list(missing.get("missing_volumes", [])) if isinstance(missing, dict) else []


def bad_blobs(far: Path) -> list[str]:
    """Registry blobs whose bytes do not hash to their name (should never exist)."""
    bad = []
    for data in (far / BLOBS).glob("*/*/data"):
        if hashlib.sha256(data.read_bytes()).hexdigest() != data.parent.name:
            bad.append(data.parent.name)
    return bad


def follow_up(setup: Setup, far: Path, verdict: Verdict, media: Media) -> Verdict:
    """The pristine volumes must still complete the import after the damaged ones."""
    if media.supersedes:
        return verdict  # the damaged volume's export is now the one in progress (SPEC.md 9.6)
    # After a validly re-signed index that disagrees, the operator names the genuine
    # volumes with --supersede (the importer cannot tell which header is genuine).
    extra = ("--supersede",) if media.forked else ()
    ran = run_import(setup, far, [setup.exports.ours], False, *extra)
    if ran.code != 0 or snapshot_id(far) != setup.target or bad_blobs(far):
        problem = f"pristine volumes did not complete it afterwards: exit {ran.code} {ran.err}"
        return Verdict(0, "", "failed", problem[-800:], bool(bad_blobs(far)))
    return replace(verdict, followed=True)


# -- the campaign --------------------------------------------------------------------------


def numbers(ctx: Context) -> list[int]:
    return list(range(len(KINDS) if ctx.quick else FULL_MUTATIONS))


def work(args: tuple[Context, Setup, Path, list[int]]) -> list[Verdict]:
    ctx, setup, base, chosen = args
    return [mutate_and_import(ctx, setup, base, n) for n in chosen]


@contextmanager
def fast_scratch(ctx: Context) -> Iterator[Path]:
    """A folder on /dev/shm when there is one (many small copies), else the scratch."""
    shm = Path("/dev/shm")
    parent = shm if shm.is_dir() and not ctx.quick else ctx.scratch
    folder = Path(tempfile.mkdtemp(prefix="syncd-corruption-", dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(ctx: Context) -> Outcome:
    with fast_scratch(ctx) as base:
        setup = prepare(base / "setup")
        chosen = numbers(ctx)
        if ctx.quick:
            verdicts = work((ctx, setup, base, chosen))
        else:
            shares = [(ctx, setup, base, chosen[i::WORKERS]) for i in range(WORKERS)]
            # Not fork: the export and scans above leave worker threads whose locks a
            # forked child would inherit held (the first import then waits forever).
            with multiprocessing.get_context("spawn").Pool(WORKERS) as pool:
                verdicts = [v for share in pool.map(work, shares) for v in share]
    return outcome(verdicts)


def outcome(verdicts: list[Verdict]) -> Outcome:
    result = Outcome("corruption")
    tried = Counter(v.kind for v in verdicts)
    for kind in KINDS:
        mine = [v for v in verdicts if v.kind == kind]
        counts = Counter(v.result for v in mine)
        text = f"{tried[kind]} tried: {counts['detected']} detected, {counts['harmless']} harmless"
        result.figures.append(Figure(f"{kind}", text, "no failure", not counts["failed"]))
    results = Counter(v.result for v in verdicts)
    bad = sum(v.bad_bytes for v in verdicts)
    result.figures += [
        Figure("mutations tried", str(len(verdicts))),
        Figure("detected (refused or named missing)", str(results["detected"])),
        Figure("harmless and exact", str(results["harmless"])),
        Figure("bad bytes applied", str(bad), "0", bad == 0),
        Figure("failures", str(results["failed"]), "0", results["failed"] == 0),
        Figure("imports run as a real process", str(sum(v.via_cli for v in verdicts))),
        Figure(
            "pristine volumes completed the import after the damage",
            str(sum(v.followed for v in verdicts)),
        ),
    ]
    result.failures = [v.failure for v in verdicts if v.failure]
    return result
