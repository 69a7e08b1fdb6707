"""Fuzz campaign: the frame decoder, the sans-IO connection and the media decoders.

Four targets, each fed inputs mutated (reliability/mutate.py) from the golden vectors in
protocol/vectors/:
- `frames`: FrameDecoder + decode_message over a mutated wire stream, fed in random pieces;
- `connection`: a Connection (client or server) replaying a golden conversation in which
  one peer frame is mutated, the peer's bytes fed byte by byte or in random pieces;
- `index`: decode_index and peek_header of a mutated volume index (re-checksummed);
- `receipt`: decode_receipt of a mutated receipt.

Invariant: every input decodes or raises protocol.errors.ProtocolError (with an ErrorCode);
any other exception is a crash, reported with the input's hex. Memory is bounded by an
address-space limit on each worker (a MemoryError is a crash) and the slowest input is
reported. The full run spreads >= 1,000,000 inputs over two worker processes.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from protocol.codec import unpack
from protocol.connection import NEED_DATA, Closed, Connection, Role
from protocol.errors import ErrorCode, ProtocolError
from protocol.framing import FrameDecoder
from protocol.limits import DEFAULT_LIMITS
from protocol.media import decode_index, decode_receipt, peek_header
from protocol.messages import Message, decode_message
from reliability import mutate
from reliability.campaign import Context, Figure, Outcome

VECTORS = Path(__file__).resolve().parent.parent / "protocol" / "vectors"
TARGETS = ("frames", "connection", "index", "receipt")
FULL_PER_TARGET = 300_000
QUICK_PER_TARGET = 5_000
WORKERS = 2
MEMORY_LIMIT = 2 << 30  # per worker: a decoder that allocates what a header declares dies
MAX_CRASHES_KEPT = 20


@dataclass(frozen=True, slots=True)
class Step:
    side: str  # "client" or "server"
    frame: bytes

    def message(self) -> Message:
        return decode_message(unpack(self.frame[4:]), DEFAULT_LIMITS)


@dataclass(slots=True)
class Tally:
    """What one worker found for one target."""

    target: str
    inputs: int = 0
    refused: int = 0  # ProtocolError (the expected outcome for most inputs)
    crashes: dict[str, str] = field(default_factory=dict)  # kind of crash -> input hex
    crash_count: int = 0
    seconds: float = 0.0
    slowest: float = 0.0


# -- the golden seeds ----------------------------------------------------------------------


@cache
def conversations() -> tuple[tuple[Step, ...], ...]:
    vectors = json.loads((VECTORS / "frames.json").read_text())
    return tuple(
        tuple(Step(e["from"], bytes.fromhex(e["frame"])) for e in vectors[name])
        for name in ("conversation", "report_conversation")
    )


@cache
def wire_seeds() -> tuple[bytes, ...]:
    """Each side's stream of every golden conversation, and the hostile frames."""
    vectors = json.loads((VECTORS / "frames.json").read_text())
    streams = [
        b"".join(s.frame for s in talk if s.side == side)
        for talk in conversations()
        for side in ("client", "server")
    ]
    hostile = [bytes.fromhex(h["frame"]) for h in vectors["hostile_after_hello"]]
    return (*streams, *(streams[0][:51] + h for h in hostile))


@cache
def media_seeds(kind: str) -> tuple[bytes, ...]:
    vectors = json.loads((VECTORS / "media.json").read_text())
    if kind == "receipt":
        return (bytes.fromhex(vectors["receipt"]["hex"]),)
    names = ("index", "signed_index")
    sound = [bytes.fromhex(vectors[name]["hex"]) for name in names]
    return (*sound, *(bytes.fromhex(h["hex"]) for h in vectors["hostile_indexes"]))


# -- the targets ---------------------------------------------------------------------------


def pieces(rng: random.Random, data: bytes) -> list[bytes]:
    """`data` cut byte by byte (often) or in random pieces."""
    if rng.random() < 0.4:
        return [data[i : i + 1] for i in range(len(data))]
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, 4))) if len(data) > 1 else []
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def run_frames(rng: random.Random, data: bytes) -> None:
    decoder = FrameDecoder(DEFAULT_LIMITS)
    for piece in pieces(rng, data):
        decoder.feed(piece)
        while (payload := decoder.next_payload()) is not None:
            decode_message(payload, DEFAULT_LIMITS)


def drain(conn: Connection) -> bool:
    """Take events until more data is needed; False once the conversation is closed."""
    while (event := conn.next_event()) is not NEED_DATA:
        if isinstance(event, Closed):
            return False
    return True


def run_connection(
    rng: random.Random, talk: tuple[Step, ...], side: str, at: int, data: bytes
) -> None:
    """Replay `talk` as `side`, the peer's frame at step `at` replaced by `data`."""
    conn = Connection(Role.CLIENT if side == "client" else Role.SERVER)
    for i, step in enumerate(talk):
        if step.side == side:
            conn.send(step.message())
            continue
        for piece in pieces(rng, data if i == at else step.frame):
            conn.receive_data(piece)
            if not drain(conn):
                return
    conn.receive_data(b"")
    drain(conn)


def run_index(data: bytes) -> None:
    peek_header(data)
    decode_index(data)


# -- one worker ----------------------------------------------------------------------------


def one_input(target: str, rng: random.Random) -> tuple[bytes, Callable[[], None]]:
    """The next input for `target` and the call that feeds it to the decoder."""
    if target == "frames":
        seeds = wire_seeds()
        data = havoc(rng, seeds, mutate.mutate_frames)
        return data, lambda: run_frames(rng, data)
    if target == "connection":
        talk = rng.choice(conversations())
        side = rng.choice(("client", "server"))
        # The replacement is made from any peer frame: out-of-order messages come free.
        frames = tuple(s.frame for s in talk if s.side != side)
        at = rng.choice([i for i, s in enumerate(talk) if s.side != side])
        data = havoc(rng, frames, mutate.mutate_frames)
        return data, lambda: run_connection(rng, talk, side, at, data)
    seeds = media_seeds(target)
    data = havoc(rng, seeds, mutate.mutate_media)
    call = (lambda: run_index(data)) if target == "index" else (lambda: _receipt(data))
    return data, call


def _receipt(data: bytes) -> None:
    decode_receipt(data)


def havoc(
    rng: random.Random, seeds: tuple[bytes, ...], edit: Callable[[random.Random, bytes], bytes]
) -> bytes:
    """One to three stacked edits of a seed, sometimes spliced with another seed."""
    data = rng.choice(seeds)
    if rng.random() < 0.05:
        data = mutate.splice(rng, data, rng.choice(seeds))
    for _ in range(rng.choice((1, 1, 2, 3))):
        data = edit(rng, data)
    return data


def fuzz(target: str, seed: str, count: int) -> Tally:
    """Feed `count` inputs to `target`; every outcome but ProtocolError is a crash."""
    rng = random.Random(seed)
    tally = Tally(target)
    started = time.perf_counter()
    for _ in range(count):
        data, call = one_input(target, rng)
        began = time.perf_counter()
        try:
            call()
        except ProtocolError as exc:
            tally.refused += 1
            if not isinstance(exc.code, ErrorCode):
                note_crash(tally, f"ProtocolError without an ErrorCode: {exc.code!r}", data)
        except Exception as exc:  # the finding itself: anything but ProtocolError
            note_crash(tally, f"{type(exc).__name__}: {str(exc)[:120]}", data)
        tally.slowest = max(tally.slowest, time.perf_counter() - began)
        tally.inputs += 1
    tally.seconds = time.perf_counter() - started
    return tally


def note_crash(tally: Tally, kind: str, data: bytes) -> None:
    tally.crash_count += 1
    if kind not in tally.crashes and len(tally.crashes) < MAX_CRASHES_KEPT:
        tally.crashes[kind] = data.hex()


def worker(job: tuple[str, str, int]) -> Tally:
    """A worker process: bounded address space, then one target's share of the inputs."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = MEMORY_LIMIT if hard == resource.RLIM_INFINITY else min(MEMORY_LIMIT, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return fuzz(*job)


# -- the campaign --------------------------------------------------------------------------


def jobs(ctx: Context) -> list[tuple[str, str, int]]:
    per_target = QUICK_PER_TARGET if ctx.quick else FULL_PER_TARGET
    share = per_target // WORKERS
    return [
        (target, f"{ctx.seed}:fuzz:{target}:{n}", share)
        for target in TARGETS
        for n in range(WORKERS)
    ]


def run(ctx: Context) -> Outcome:
    started = time.perf_counter()
    if ctx.quick:  # CI: in-process, no address-space limit on the test runner
        tallies = [fuzz(*job) for job in jobs(ctx)]
    else:
        with multiprocessing.get_context("fork").Pool(WORKERS) as pool:
            tallies = pool.map(worker, jobs(ctx), chunksize=1)
    return outcome(ctx, tallies, time.perf_counter() - started)


def outcome(ctx: Context, tallies: list[Tally], wall: float) -> Outcome:
    result = Outcome("fuzz")
    total = sum(t.inputs for t in tallies)
    for target in TARGETS:
        mine = [t for t in tallies if t.target == target]
        inputs = sum(t.inputs for t in mine)
        refused = sum(t.refused for t in mine)
        crashes = sum(t.crash_count for t in mine)
        slowest = max(t.slowest for t in mine)
        result.figures += [
            Figure(f"{target}: inputs", f"{inputs:,}"),
            Figure(f"{target}: refused with ProtocolError", f"{refused:,}"),
            Figure(f"{target}: crashes", str(crashes), "0", crashes == 0),
            Figure(f"{target}: slowest input", f"{slowest * 1000:.1f} ms"),
        ]
        for t in mine:
            found = t.crashes.items()
            result.failures += [f"{target}: {kind} (input {hex_})" for kind, hex_ in found]
    wanted = 4 * QUICK_PER_TARGET if ctx.quick else 1_000_000
    rate = "inputs/s (one process)" if ctx.quick else f"inputs/s ({WORKERS} workers)"
    result.figures += [
        Figure("inputs, all targets", f"{total:,}", f">= {wanted:,}", total >= wanted),
        Figure(rate, f"{total / wall:,.0f}"),
    ]
    return result
