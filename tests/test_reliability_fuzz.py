"""CI's slice of the fuzz campaign (reliability/fuzz.py), plus hypothesis-driven inputs for
the same targets: every input decodes or raises ProtocolError, nothing else."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.errors import ProtocolError
from reliability import fuzz, mutate
from reliability.campaign import Context

SEEDED = settings(
    derandomize=True,
    deadline=None,
    database=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_quick_slice(tmp_path: Path) -> None:
    outcome = fuzz.run(Context(20261125, tmp_path, quick=True))
    assert outcome.ok, outcome.failures


def test_the_seeds_themselves_decode() -> None:
    # The mutations start from sound inputs: a broken seed would make every input a refusal.
    rng = random.Random(0)
    for talk in fuzz.conversations():
        for at, step in enumerate(talk):
            peer = "server" if step.side == "client" else "client"
            fuzz.run_connection(rng, talk, peer, at, step.frame)
    fuzz.run_index(fuzz.media_seeds("index")[0])
    fuzz.run_index(fuzz.media_seeds("index")[1])


def refused_or_decoded(call: object) -> None:
    assert callable(call)
    with contextlib.suppress(ProtocolError):
        call()


@SEEDED
@given(st.binary(max_size=300), st.integers(0, 2**32))
def test_frames_from_arbitrary_bytes(data: bytes, seed: int) -> None:
    refused_or_decoded(lambda: fuzz.run_frames(random.Random(seed), data))


@SEEDED
@given(st.integers(0, 1), st.sampled_from(["client", "server"]), st.binary(max_size=200))
def test_connection_with_one_arbitrary_peer_frame(talk: int, side: str, body: bytes) -> None:
    frame = mutate.LENGTH.pack(len(body)) + body
    steps = fuzz.conversations()[talk]
    at = next(i for i, s in enumerate(steps) if s.side != side)
    rng = random.Random(len(body))
    refused_or_decoded(lambda: fuzz.run_connection(rng, steps, side, at, frame))


@SEEDED
@given(st.integers(0, 2**32), st.sampled_from(["index", "receipt"]))
def test_media_mutated_by_hypothesis_seeds(seed: int, kind: str) -> None:
    rng = random.Random(seed)
    data = fuzz.havoc(rng, fuzz.media_seeds(kind), mutate.mutate_media)
    call = (lambda: fuzz.run_index(data)) if kind == "index" else (lambda: fuzz._receipt(data))
    refused_or_decoded(call)
