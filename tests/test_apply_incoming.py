"""Large files assembled while their pieces arrive (syncd/apply/incoming.py)."""

from __future__ import annotations

import os
from pathlib import Path

import blake3
import pytest

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


def test_take_copies_until_the_last_use_then_links(tmp_path: Path) -> None:
    """The last use is a hard link, not a move: until staging is cleared after the
    apply, a crash or a full disk before the rename into the tree must not lose the only
    copy of the file's pieces (regression: a full disk while building stranded the root
    with 'pieces neither staged nor in the live tree')."""
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
        assert incoming.take(recipe, fd, "linked", last=True)
    finally:
        os.close(fd)
    assert (out / "copy").read_bytes() == (out / "linked").read_bytes() == A + B
    work = tmp_path / "incoming" / content_key(recipe).hex()
    assert (out / "linked").stat().st_ino == work.stat().st_ino != (out / "copy").stat().st_ino
    incoming.close()
    assert Incoming.open(tmp_path / "incoming").has(recipe[1][0])  # still a source
    incoming.clear()
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
    assert not again.has(blake3.blake3(B).digest())
    assert not again.needs(blake3.blake3(B).digest())  # no session needs the file yet
    assert again.prepare(recipe) == len(B) + len(C)  # this one does: B and C to write
    assert again.needs(blake3.blake3(B).digest()) and again.needs(blake3.blake3(C).digest())
    assert not (folder / "orphan").exists()


def test_clear_removes_everything(tmp_path: Path) -> None:
    incoming = Incoming.open(tmp_path / "incoming")
    incoming.prepare(recipe_of(A))
    incoming.clear()
    assert list((tmp_path / "incoming").iterdir()) == []
    assert not incoming.needs(recipe_of(A)[0][0])


def test_a_declared_size_is_never_allocated_nor_hashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (issue 13): a 20 KB tree record declaring an 8 GiB file made an 8 GiB
    sparse work file, and every later session hashed all of it at start (21.7 s each)."""
    big = 1 << 33  # 8 GiB, declared in 512 pieces of 16 MiB
    filler = blake3.blake3(b"never sent").digest()
    recipe = ((blake3.blake3(A).digest(), len(A)),) + ((filler, 1 << 24),) * 512
    folder = tmp_path / "incoming"
    incoming = Incoming.open(folder)
    assert incoming.prepare(recipe) == len(A) + big
    work = folder / content_key(recipe).hex()
    assert work.stat().st_size == 0 and work.stat().st_blocks == 0
    incoming.put(recipe[0][0], A)
    incoming.flush()
    incoming.close()
    read: list[int] = []
    real_pread = os.pread

    def counting(fd: int, length: int, offset: int) -> bytes:
        read.append(length)
        return real_pread(fd, length, offset)

    monkeypatch.setattr(os, "pread", counting)
    again = Incoming.open(folder)
    assert again.has(recipe[0][0]) and sum(read) == len(A)  # only what arrived is read


def test_abandoned_work_files_are_sources_not_obligations(tmp_path: Path) -> None:
    """Regression (issue 13): holes of an abandoned session's work file made every later
    session fail ('pieces are neither received nor on the far side'). Only the files the
    current target needs are filled; the others still lend their finished pieces."""
    folder = tmp_path / "incoming"
    old, new = recipe_of(A, B), recipe_of(A, C)
    first = Incoming.open(folder)
    first.prepare(old)
    first.put(old[0][0], A)  # B never came: the session was interrupted
    first.flush()
    first.close()
    second = Incoming.open(folder)
    second.prepare(new)
    assert second.fill(lambda digest, _: C if digest == new[1][0] else None) == []
    assert second.complete(new) and not second.complete(old)
    assert [key for key, _ in second.files()].count(content_key(old)) == 1
    unused = [work for work in second.work_files() if not work.needed]
    assert [work.key for work in unused] == [content_key(old)]
    second.drop(content_key(old))
    assert not (folder / content_key(old).hex()).exists()
    assert second.has(new[0][0])  # the new file still holds A


@pytest.mark.parametrize("kernel_copy", ["works", "unsupported", "short"])
def test_a_piece_in_several_files_lands_in_each_however_the_kernel_copies(
    kernel_copy: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first region is written from the verified bytes, the others copied from it in
    the kernel; where the file system cannot (EXDEV, EOPNOTSUPP) or the copy comes up
    short, the verified bytes are written instead."""
    real = os.copy_file_range

    def copy_file_range(src: int, dst: int, count: int, offset_src: int, offset_dst: int) -> int:
        if kernel_copy == "unsupported":
            raise OSError(18, "Invalid cross-device link")
        if kernel_copy == "short":
            return 0
        return real(src, dst, count, offset_src, offset_dst)

    monkeypatch.setattr(os, "copy_file_range", copy_file_range)
    incoming = Incoming.open(tmp_path / "incoming")
    first, second = recipe_of(B, A, C), recipe_of(A, C, A)
    incoming.prepare(first)
    incoming.prepare(second)
    for data in (A, B, C):
        incoming.put(blake3.blake3(data).digest(), data)
    assert incoming.complete(first) and incoming.complete(second)
    folder = tmp_path / "incoming"
    assert (folder / content_key(first).hex()).read_bytes() == B + A + C
    assert (folder / content_key(second).hex()).read_bytes() == A + C + A
