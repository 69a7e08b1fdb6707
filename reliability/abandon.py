"""Abandoned sessions and volumes never block the next honest one (the crash campaign's
slice of the far side's one invariant).

Each round starts from the far root at month 1 on a small tmpfs (so that staging also
competes for space) and leaves behind, at random:

- for a push: 1 to 5 sessions of *variant* sources (month 2 plus a few megabytes of
  their own, and changed bulk archives) whose link drops late in the transfer (most of
  their blobs staged, through reliability/linkrelay.py), or whose far side is killed -9
  while staging;
- for an import: volumes of variant exports made against the far side's receipt, a
  random strict subset of each export's volumes imported (the rest never come), some
  imports killed -9 while staging or applying.

Then the honest push of month 2, or the import of every volume of month 2's export (made
last, so the newest), must complete with nothing else done: exit 0, the far tree's scan
equal to month 2, every listed tag resolving, and on some rounds docker-registry serving
it and skopeo pulling every tag.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from reliability.farside import (
    BULK_MEMBER_SIZE,
    SMALL_VOLUMES,
    Months,
    add_bulk,
    copy_far,
    equals,
    month2_volumes,
    oracle_problems,
    problems,
    run_syncd,
    write_tar,
)
from reliability.linkdrop import calibrate, push_through
from syncd.apply.durable import write_atomically
from syncd.faults import ENV
from syncd.media.sites import source_lineage
from syncd.state import StateDir
from tests.test_apply_support import Source, copy_tree, scan_id, small_tmpfs

DISK = 40 << 20  # the far file system of a round
VARIANTS = 5
JUNK = (1 << 20, 5 << 20)  # bytes of new data in a variant, drawn per variant


@dataclass
class Variant:
    source: Source
    forwarded: int = 0  # bytes its whole push sends (calibrated)
    volumes: tuple[Path, ...] = ()


@dataclass
class Tally:
    rounds: dict[str, int] = field(default_factory=dict)
    abandoned: dict[str, int] = field(default_factory=dict)  # how each was left
    oracle_pulls: int = 0
    failures: list[str] = field(default_factory=list)

    def count(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1


def make_variants(
    months: Months, base: Path, scratch: Path, rng: random.Random, count: int = VARIANTS
) -> list[Variant]:
    """Variant sources of month 2, each pushed once whole (to calibrate) and exported
    against the far side's receipt (before month 2's own export: theirs are older)."""
    receipt = scratch / "variant-receipt"
    done = run_syncd("receipt", "--root", base, "--to", receipt)
    assert done.returncode == 0, done.stderr
    variants = []
    for number in range(count):
        root = scratch / f"variant-{number}"
        copy_tree(months.two.root, root)
        # Its own data: an archive of members small enough for the volumes.
        junk = random.Random(f"junk-{number}")
        members = rng.randint(*JUNK) // BULK_MEMBER_SIZE
        data = [junk.randbytes(BULK_MEMBER_SIZE) for _ in range(members)]
        write_tar(root / "junk" / f"data-{number}.tar", data)
        add_bulk(root, 3 + number)
        # The same source as month 2's own export (what a site sees when an export is
        # abandoned and the next month's comes): its lineage, so that the newer export
        # supersedes the abandoned ones (SPEC.md 9.6) rather than being refused.
        lineage = source_lineage(StateDir(months.two.root))
        (root / ".syncd" / "media").mkdir(parents=True, exist_ok=True)
        write_atomically(root / ".syncd" / "media" / "lineage", lineage)
        variant = Variant(Source(root, scan_id(root)))
        far = copy_far(base, scratch / "calibrate")
        variant.forwarded, _ = calibrate_variant(variant, far, scratch)
        shutil.rmtree(far)
        media = scratch / f"variant-media-{number}"
        done = run_syncd("export", root, "--to", media, "--receipt", receipt, *SMALL_VOLUMES)
        assert done.returncode == 0, done.stderr
        variant.volumes = tuple(sorted(media.glob("*/vol-*")))
        variants.append(variant)
    return variants


def calibrate_variant(variant: Variant, far: Path, scratch: Path) -> tuple[int, int]:
    return calibrate(variant.source.root, str(far), scratch / "record.json", {})


def abandon_push(variant: Variant, far: Path, scratch: Path, rng: random.Random) -> str:
    """Push the variant and leave the session half-way; how it was left."""
    if rng.random() < 0.25:
        run_syncd("push", variant.source.root, far, env={ENV: f"blob:{rng.randint(2, 60)}"})
        return "push: far side killed -9 while staging"
    drop_at = int(variant.forwarded * rng.uniform(0.5, 0.97))
    mode = rng.choice(("eof", "hup"))
    push_through(variant.source.root, str(far), scratch / "record.json", drop_at, mode, {})
    return f"push: link dropped late in the transfer ({mode})"


def abandon_import(variant: Variant, far: Path, rng: random.Random) -> str:
    """Import a strict subset of the variant's volumes (maybe killed); how it was left."""
    count = rng.randint(1, max(1, len(variant.volumes) - 1))
    chosen = rng.sample(variant.volumes, count)
    if rng.random() < 0.3:
        point = rng.choice(("blob:5", "volume:1", "flush:1"))
        run_syncd("import", *chosen, "--root", far, env={ENV: point})
        return f"import: some volumes, killed -9 at {point}"
    run_syncd("import", *chosen, "--root", far)
    return "import: some volumes, the rest never came"


def honest_end(months: Months, far: Path, where: str, tally: Tally, *, oracle: bool) -> None:
    tally.failures += equals(far, months.two, f"{where}: the honest run")
    tally.failures += problems(months, far, where)
    if oracle:
        tally.oracle_pulls += 1
        tally.failures += oracle_problems(far, where)


def one_round(
    months: Months,
    base: Path,
    volumes: tuple[Path, ...],
    variants: list[Variant],
    way: str,
    mount: Path,
    scratch: Path,
    rng: random.Random,
    tally: Tally,
    *,
    oracle: bool,
) -> None:
    far = mount / "far"
    if far.exists():
        shutil.rmtree(far)
    copy_far(base, far)
    left = rng.sample(variants, rng.randint(1, len(variants)))
    hows = []
    for variant in left:
        how = (
            abandon_push(variant, far, scratch, rng)
            if way == "push"
            else abandon_import(variant, far, rng)
        )
        tally.count(tally.abandoned, how)
        hows.append(how.split(": ", 1)[1])
    where = f"{way} after {len(left)} abandoned ({'; '.join(hows)})"
    if way == "push":
        done = run_syncd("push", months.two.root, far, "--json")
    else:
        done = run_syncd("import", *volumes, "--root", far, "--json")
    if done.returncode != 0:
        tally.failures.append(f"{where}: the honest {way} failed: {done.stderr.strip()}")
    else:
        status = json.loads(done.stdout).get("status")
        if status != "applied":
            tally.failures.append(f"{where}: the honest {way} ended {status!r}")
    honest_end(months, far, where, tally, oracle=oracle)
    tally.count(tally.rounds, way)
    print(f"crash: {where}: {len(tally.failures)} failures so far", file=sys.stderr)


def run_rounds(
    months: Months,
    base: Path,
    scratch: Path,
    rng: random.Random,
    *,
    rounds: int,
    variants: int = VARIANTS,
) -> Tally:
    tally = Tally()
    work = scratch / "abandon"
    work.mkdir(parents=True, exist_ok=True)
    left = make_variants(months, base, work, rng, variants)
    volumes = month2_volumes(months, base, work / "honest")  # made last: the newest
    with small_tmpfs(work / "mnt", DISK) as mount:
        if mount is None:
            raise SystemExit("crash: cannot mount a tmpfs (the campaign must run as root)")
        for number in range(rounds):
            for way in ("push", "import"):
                one_round(
                    months,
                    base,
                    volumes,
                    left,
                    way,
                    mount,
                    work,
                    rng,
                    tally,
                    oracle=number == rounds - 1,
                )
    return tally
