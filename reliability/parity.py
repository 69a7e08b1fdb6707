"""Parity campaign: lost and damaged volumes of exports made with `syncd export --parity N`.

Sets of 4 to 12 volumes (K data + N parity, N = 1..3) of month 1 of the TINY sample. For
each set, every combination of up to N absent volumes is imported into an empty far
root (in-process through the CLI's main), each with random damaged regions (runs of
bytes overwritten in pack or parity files) placed where the set can still repair them;
then trials beyond repair: N + 1 absent, and damage that leaves a stripe short.

A model of the stripes predicts each trial from the parity index alone (which blocks of
which volume are absent or damaged; a stripe decodes while K of its K + N blocks are
sound, a short stream's blocks past its end counting as zeros), and the import must
agree:
- repairable: applied, and the far tree's snapshot id is exactly the source's; the
  registry oracle (docker-registry + skopeo) pulls every tag from the first such far
  root of each set;
- beyond repair: nothing applied (the far root holds nothing but its state folder), and
  the loss named (the volumes still missing, or the byte ranges that could not be
  rebuilt).
"""

from __future__ import annotations

import itertools
import multiprocessing
import random
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from protocol.parity import ParityIndex, blocks_of, decode_parity
from reliability.campaign import Context, Figure, Outcome
from reliability.media_damage import link_copy
from syncd.sample import TINY, Registry, generate_month, list_images, pull_all
from tests.mediautil import syncd
from tests.pushutil import snapshot_id

SIZES = range(4, 13)  # volumes per set, data and parity
PARITIES = (1, 2, 3)
BEYOND_PER_SET = 6  # N + 1 absent, and damage leaving a stripe short
QUICK_SETS = ((3, 2),)  # (K, N)
QUICK_TRIALS = 8
WORKERS = 2
COUNTS = ("repairable", "beyond", "sets", "oracle", "damaged regions")


@dataclass(frozen=True, slots=True)
class ParitySet:
    k: int
    n: int
    folder: Path  # DIR/<export-id>
    index: ParityIndex

    @property
    def volumes(self) -> list[int]:
        return list(range(1, self.k + self.n + 1))

    def size(self, volume: int) -> int:
        """Bytes of a volume's stream (a parity volume's spans every stripe)."""
        if volume > self.k:
            return self.index.header.stripes * self.index.header.block_size
        return self.index.members[volume - 1].stream_size

    def blocks(self, volume: int) -> int:
        """Blocks of a volume's stream (a parity volume spans every stripe)."""
        if volume > self.k:
            return self.index.header.stripes
        return blocks_of(self.index.members[volume - 1].stream_size, self.index.header.block_size)


@dataclass(slots=True)
class Trial:
    absent: tuple[int, ...]
    damage: dict[int, set[int]] = field(default_factory=dict)  # volume -> damaged stripes

    def describe(self) -> str:
        damaged = {v: sorted(s) for v, s in self.damage.items()}
        return f"absent {list(self.absent)}, damaged stripes {damaged}"


def repairable(s: ParitySet, trial: Trial) -> bool:
    """Whether every lost block of a data volume lies in a stripe with K sound blocks."""
    for stripe in range(s.index.header.stripes):
        sound = [v for v in s.volumes if _sound(s, trial, v, stripe)]
        lost = [v for v in range(1, s.k + 1) if not _sound(s, trial, v, stripe)]
        if lost and len(sound) < s.k:
            return False
    return True


def _sound(s: ParitySet, trial: Trial, volume: int, stripe: int) -> bool:
    if stripe >= s.blocks(volume):
        return True  # zeros past the end of a short stream
    return volume not in trial.absent and stripe not in trial.damage.get(volume, set())


# -- made once ---------------------------------------------------------------------------------


def make_set(src: Path, base: Path, k: int, n: int) -> ParitySet | None:
    """An export of `src` with exactly K data volumes and N parity, if a volume size gives
    it: found by bisection, else (the count can jump where blobs are lumpy) by a scan."""
    found = _bisect(src, base, k, n)
    for size in range(150_000, 600_000, 1_000) if found is None else ():
        found = _try(src, base, k, n, size)[0]
        if found is not None:
            break
    return found


def _bisect(src: Path, base: Path, k: int, n: int) -> ParitySet | None:
    low, high = 150_000, 2_000_000
    while low < high:
        size = (low + high) // 2
        found, got = _try(src, base, k, n, size)
        if found is not None:
            return found
        if 0 < got < k:
            high = size  # too few volumes: smaller ones
        else:
            low = size + 1  # too many, or too small to hold a volume's index
    return None


def _try(src: Path, base: Path, k: int, n: int, size: int) -> tuple[ParitySet | None, int]:
    """The set made with volumes of `size` if it has K data volumes; the count it had."""
    folder = base / f"try-{k}-{n}-{size}"
    ran = syncd("export", src, "--to", folder, "--full", "--json", "--parity", str(n),
                "--volume-size", str(size), "--max-file-size", str(size),
                "--state", base / "src-state")  # fmt: skip
    got = len([v for v in ran.json["volumes"] if v["kind"] == "data"]) if ran.code == 0 else 0
    if got != k:
        shutil.rmtree(folder, ignore_errors=True)
        return None, got
    export = next(folder.iterdir())
    final = base / f"set-{k}-{n}"
    export.rename(final)
    shutil.rmtree(folder)
    index = decode_parity((final / f"vol-{k + 1:04d}" / "index").read_bytes())
    return ParitySet(k, n, final, index), got


# -- one trial ---------------------------------------------------------------------------------


def damaged_copy(s: ParitySet, trial: Trial, to: Path, rng: random.Random) -> list[Path]:
    """The present volumes of the set, with the trial's damage written into copies."""
    link_copy(s.folder, to)
    block = s.index.header.block_size
    for volume, stripes in trial.damage.items():
        path = to / f"vol-{volume:04d}"
        for stripe in stripes:
            # Inside the stream: the last block of a volume is often partly past its end.
            start = stripe * block + rng.randrange(min(block, s.size(volume) - stripe * block))
            _overwrite(path, start, min(rng.randint(1, 64), (stripe + 1) * block - start))
    for volume in trial.absent:
        shutil.rmtree(to / f"vol-{volume:04d}")
    return sorted(to.iterdir())


def _overwrite(volume: Path, offset: int, length: int) -> None:
    """Flip `length` bytes at `offset` of the volume's stream (its files in order); the
    caller keeps the run inside one block, as the model assumes."""
    files = sorted(p for p in volume.iterdir() if p.name != "index")
    for path in files:
        size = path.stat().st_size
        if offset < size:
            data = bytearray(path.read_bytes())
            for i in range(offset, min(size, offset + length)):
                data[i] ^= 0xFF
            path.unlink()  # a hard link to the pristine set: replace, never write into
            path.write_bytes(bytes(data))
            return
        offset -= size


@dataclass(frozen=True, slots=True)
class Result:
    ok: bool
    applied: bool
    failure: str = ""


def run_trial(s: ParitySet, trial: Trial, scratch: Path, rng: random.Random, source: str) -> Result:
    media, far = scratch / "media", scratch / "far"
    try:
        volumes = damaged_copy(s, trial, media, rng)
        ran = syncd("import", *volumes, "--root", far, "--json") if volumes else None
        expected = repairable(s, trial)
        if ran is None:
            return Result(not expected, False, "" if not expected else "no volume left")
        outcome = ran.json
        applied = outcome["status"] == "applied"
        if "Traceback" in ran.err:
            return Result(False, applied, f"traceback: {ran.err[-300:]}")
        if expected:
            if not applied or snapshot_id(far) != source:
                return Result(
                    False, applied, f"not repaired: {outcome['status']}: {ran.err[-300:]}"
                )
            return Result(True, True)
        content = [p.name for p in far.iterdir() if p.name != ".syncd"]
        named = outcome.get("missing") and outcome["missing"]["missing_volumes"]
        if applied or content or not (named or "cannot be rebuilt" in ran.out + str(outcome)):
            return Result(False, applied, f"beyond repair, yet {outcome['status']}, {content}")
        return Result(True, False)
    finally:
        shutil.rmtree(media, ignore_errors=True)
        shutil.rmtree(far, ignore_errors=True)


def oracle(s: ParitySet, trial: Trial, scratch: Path, rng: random.Random) -> str:
    """Import the trial's volumes, then pull every tag from the far cache; "" if all pull."""
    media, far = scratch / "oracle-media", scratch / "oracle-far"
    try:
        volumes = damaged_copy(s, trial, media, rng)
        syncd("import", *volumes, "--root", far)
        with Registry(far / ".oc-mirror/.cache", read_only=True) as registry:
            images = list_images(registry)
            failed = [r.image for r in pull_all(registry, images).values() if not r.ok]
        return f"{len(failed)} of {len(images)} tags failed to pull: {failed[:3]}" if failed else ""
    finally:
        shutil.rmtree(media, ignore_errors=True)
        shutil.rmtree(far, ignore_errors=True)


# -- the trials of one set ---------------------------------------------------------------------


def trials(s: ParitySet, rng: random.Random, quick: bool) -> Iterator[Trial]:
    combos = [c for j in range(s.n + 1) for c in itertools.combinations(s.volumes, j)]
    if quick:
        combos = [(), (1,), (2, s.k + 1), tuple(range(1, s.n + 1))][: QUICK_TRIALS // 2]
    for number, absent in enumerate(combos):
        # Every combination, with damaged regions where it can still be repaired (in the
        # quick slice, every other one without, so that plain losses are tried too).
        if quick and number % 2:
            yield Trial(tuple(absent))
        yield _with_damage(s, Trial(tuple(absent)), rng, repair=True)
    for _ in range(1 if quick else BEYOND_PER_SET // 2):
        lost = rng.randint(1, s.k)
        others = rng.sample([v for v in s.volumes if v != lost], s.n)
        yield Trial(tuple(sorted([lost, *others])))
        yield _with_damage(s, Trial(tuple(rng.sample(s.volumes, s.n))), rng, repair=False)


def _with_damage(s: ParitySet, trial: Trial, rng: random.Random, *, repair: bool) -> Trial:
    """Damage 1..3 random regions of present volumes: where the set can still repair them
    (`repair`), or so that a data volume's stripe is left short."""
    present = [v for v in s.volumes if v not in trial.absent and s.blocks(v)]
    for _ in range(200 if repair else 0):
        if not present:
            break
        volume = rng.choice(present)
        stripe = rng.randrange(s.blocks(volume))
        trial.damage.setdefault(volume, set()).add(stripe)
        if not repairable(s, trial):
            trial.damage[volume].discard(stripe)
        if sum(len(v) for v in trial.damage.values()) >= rng.randint(1, 3):
            break
    if not repair:
        for _ in range(200):
            volume = rng.choice(present)
            trial.damage.setdefault(volume, set()).add(rng.randrange(s.blocks(volume)))
            if not repairable(s, trial):
                break
    trial.damage = {v: d for v, d in trial.damage.items() if d}
    return trial


@dataclass(frozen=True, slots=True)
class _Job:
    seed: int
    quick: bool
    sources: tuple[tuple[Path, str], ...]  # (tree, its snapshot id): month 1, then 2
    scratch: Path
    k: int
    n: int


def _first_set(job: _Job, scratch: Path) -> tuple[ParitySet, str] | None:
    """The set of K + N made from the first tree that gives it: blobs are lumpy, so where
    no volume size splits month 1 into exactly K volumes, month 2 may."""
    for src, source in job.sources:
        made = make_set(src, scratch, job.k, job.n)
        if made is not None:
            return made, source
    return None


def _one_set(job: _Job) -> tuple[dict[str, int], list[str]]:
    """Every trial of one set (a worker process runs it; each set draws from its own
    seeded generator, so the order the workers take them in changes nothing)."""
    counts = dict.fromkeys(COUNTS, 0)
    failures: list[str] = []
    k, n = job.k, job.n
    scratch = job.scratch / f"set-{k}-{n}"
    scratch.mkdir()
    made = _first_set(job, scratch)
    if made is None:
        return counts, [f"no volume size gives {k} data volumes"]
    s, source = made
    counts["sets"] = 1
    rng = Context(job.seed, scratch, job.quick).rng(f"set-{k}-{n}")
    checked = False
    for number, trial in enumerate(trials(s, rng, job.quick)):
        expected = repairable(s, trial)
        result = run_trial(s, trial, scratch, rng, source)
        counts["repairable" if expected else "beyond"] += 1
        counts["damaged regions"] += sum(len(d) for d in trial.damage.values())
        if not result.ok:
            failures.append(f"K={k} N={n} #{number} {trial.describe()}: {result.failure}")
        if expected and result.ok and not checked:
            checked = True
            counts["oracle"] += 1
            problem = oracle(s, trial, scratch, rng)
            if problem:
                failures.append(f"K={k} N={n} oracle: {problem}")
    shutil.rmtree(scratch, ignore_errors=True)
    return counts, failures


def run(ctx: Context) -> Outcome:
    outcome = Outcome("parity")
    src, src2 = ctx.scratch / "src", ctx.scratch / "src2"
    generate_month(src, 1, TINY, via_registry=False)
    shutil.copytree(src, src2, symlinks=True, ignore=shutil.ignore_patterns(".syncd"))
    generate_month(src2, 2, TINY, via_registry=False)
    sources = ((src, snapshot_id(src)), (src2, snapshot_id(src2)))
    configs = list(QUICK_SETS)
    if not ctx.quick:
        configs = [(t - n, n) for t in SIZES for n in PARITIES if t - n >= 1]
    counts = dict.fromkeys(COUNTS, 0)
    # Each trial's far root is written with the apply's fsyncs: in memory where there is a
    # tmpfs, so that the campaign measures the import, not the disk.
    shm = Path("/dev/shm")
    scratch = Path(tempfile.mkdtemp(prefix="syncd-parity-", dir=shm if shm.is_dir() else None))
    jobs = [_Job(ctx.seed, ctx.quick, sources, scratch, k, n) for k, n in configs]
    try:
        with multiprocessing.get_context("spawn").Pool(1 if ctx.quick else WORKERS) as pool:
            for found, failures in pool.imap_unordered(_one_set, jobs):
                for key, value in found.items():
                    counts[key] += value
                outcome.failures += failures
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    outcome.figures += [
        Figure("parity sets (K data + N parity volumes)", str(counts["sets"])),
        Figure("trials repairable, imported byte-exact", str(counts["repairable"])),
        Figure("trials beyond repair, nothing applied, loss named", str(counts["beyond"])),
        Figure("damaged regions written", str(counts["damaged regions"])),
        Figure("sets pulled by the registry oracle", str(counts["oracle"])),
        Figure("failures", str(len(outcome.failures)), "0", not outcome.failures),
    ]
    return outcome
