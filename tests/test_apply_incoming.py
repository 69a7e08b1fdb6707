"""Large files assembled while their pieces arrive (syncd/apply/incoming.py)."""

from __future__ import annotations

import os
from pathlib import Path

import blake3

from protocol.tree import Recipe
from syncd.apply.incoming import Incoming, content_key


def recipe_of(*pieces: bytes) -> Recipe:
    return tuple((blake3.blake3(p).digest(), len(p)) for p in pieces)


A, B, C = b"a" * 3000, b"b" * 5000, b"c" * 700


def test_pieces_land_at_their_offsets_and_repeats_fill_every_region(tmp_path: Path) -> None:
    incoming = Incoming.open(tmp_path / "incoming")
    recipe = recipe_of(A, B, A, C)
    incoming.prepare(recipe)
    incoming.prepare(recipe)  # the same content twice is one work file
    assert incoming.needs(recipe[0][0]) and not incoming.complete(recipe)
    for data in (A, B, C):
        incoming.put(blake3.blake3(data).digest(), data)
    assert incoming.complete(recipe)
    assert not incoming.needs(recipe[0][0])
    assert (tmp_path / "incoming" / content_key(recipe).hex()).read_bytes() == A + B + A + C


def test_holes_are_filled_from_finished_regions_and_local_sources(tmp_path: Path) -> None:
    incoming = Incoming.open(tmp_path / "incoming")
    first, second = recipe_of(A, B), recipe_of(B, C)
    incoming.prepare(first)
    incoming.prepare(second)
    incoming.put(blake3.blake3(A).digest(), A)
    incoming.put(blake3.blake3(B).digest(), B)
    local = {blake3.blake3(C).digest(): C}
    assert incoming.fill(lambda digest, _: local.get(digest)) == []
    assert incoming.complete(first) and incoming.complete(second)


def test_unfound_pieces_are_reported(tmp_path: Path) -> None:
    incoming = Incoming.open(tmp_path / "incoming")
    recipe = recipe_of(A, B)
    incoming.prepare(recipe)
    assert incoming.fill(lambda digest, _: None) == list(recipe)
    assert not incoming.complete(recipe)


def test_take_copies_until_the_last_use_then_moves(tmp_path: Path) -> None:
    incoming = Incoming.open(tmp_path / "incoming")
    recipe = recipe_of(A, B)
    incoming.prepare(recipe)
    for data in (A, B):
        incoming.put(blake3.blake3(data).digest(), data)
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert incoming.take(recipe, fd, "copy", last=False)
        assert incoming.take(recipe, fd, "moved", last=True)
        assert not incoming.take(recipe, fd, "again", last=True)
    finally:
        os.close(fd)
    assert (out / "copy").read_bytes() == (out / "moved").read_bytes() == A + B
    assert list((tmp_path / "incoming").iterdir()) == []


def test_recovery_keeps_only_regions_that_still_prove_themselves(tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    incoming = Incoming.open(folder)
    recipe = recipe_of(A, B, C)
    incoming.prepare(recipe)
    incoming.put(blake3.blake3(A).digest(), A)
    incoming.put(blake3.blake3(B).digest(), B)
    incoming.flush()
    incoming.close()
    work = folder / content_key(recipe).hex()
    with work.open("r+b") as damaged:  # a torn write inside B's region
        damaged.seek(len(A) + 10)
        damaged.write(b"x")
    (folder / "orphan").write_bytes(b"a work file whose sidecar never made it")
    again = Incoming.open(folder)
    assert again.has(blake3.blake3(A).digest())
    assert not again.has(blake3.blake3(B).digest()) and again.needs(blake3.blake3(B).digest())
    assert again.needs(blake3.blake3(C).digest())
    assert not (folder / "orphan").exists()


def test_clear_removes_everything(tmp_path: Path) -> None:
    incoming = Incoming.open(tmp_path / "incoming")
    incoming.prepare(recipe_of(A))
    incoming.clear()
    assert list((tmp_path / "incoming").iterdir()) == []
    assert not incoming.needs(recipe_of(A)[0][0])
