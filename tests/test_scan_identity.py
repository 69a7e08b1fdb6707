"""Snapshot identity: equal trees give equal ids anywhere; any change gives a new id."""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.scanutil import scan, set_mtimes

Mutation = Callable[[Path], None]


def build_tree(root: Path, order_seed: int) -> None:
    """The same content, created in a different order for each seed."""
    items: list[tuple[str, bytes | None]] = [
        ("a/b/c.txt", b"hello"),
        ("a/b/d.bin", bytes(range(256)) * 100),
        ("a/empty", None),
        ("z.txt", b"z" * 70_000),
        ("a.b", b"dot sorts before slash"),
        ("\u00e9t\u00e9/caf\u00e9", b"utf-8 names"),
    ]
    random.Random(order_seed).shuffle(items)
    for rel, data in items:
        path = root / rel
        if data is None:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            path.chmod(0o640 if rel.endswith(".bin") else 0o644)
    (root / "a" / "link").symlink_to("b/c.txt")
    set_mtimes(root)


def test_same_tree_same_id_whatever_the_order_and_file_system(tmp_path: Path) -> None:
    ids = set()
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else tmp_path
    for i, base in enumerate(
        [tmp_path / "one", tmp_path / "two", shm / f"syncd-test-{os.getpid()}"]
    ):
        try:
            build_tree(base, order_seed=i)
            ids.add(scan(base).summary.root)
        finally:
            if base.parent == shm:
                shutil.rmtree(base)
    assert len(ids) == 1


def test_same_id_whatever_readdir_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_tree(tmp_path / "t", order_seed=0)
    first = scan(tmp_path / "t").summary.root
    shutil.rmtree(tmp_path / "t" / ".syncd")
    real_scandir = os.scandir

    class Shuffled:
        def __init__(self, fd: int) -> None:
            with real_scandir(fd) as it:
                self.entries = list(it)
            random.Random(7).shuffle(self.entries)

        def __enter__(self) -> list[os.DirEntry[str]]:
            return self.entries

        def __exit__(self, *exc: object) -> None:
            pass

    monkeypatch.setattr(os, "scandir", Shuffled)
    assert scan(tmp_path / "t").summary.root == first


def _write(rel: str, data: bytes) -> Mutation:
    def mutate(root: Path) -> None:
        (root / rel).write_bytes(data)

    return mutate


def _flip_byte(root: Path) -> None:
    path = root / "a/b/d.bin"
    data = bytearray(path.read_bytes())
    data[12_345] ^= 1
    path.write_bytes(bytes(data))


def _relink(root: Path) -> None:
    (root / "a/link").unlink()
    (root / "a/link").symlink_to("b/d.bin")


def _file_to_dir(root: Path) -> None:
    (root / "z.txt").unlink()
    (root / "z.txt").mkdir()


MUTATIONS: dict[str, Callable[[Path], object]] = {
    "flip one byte": _flip_byte,
    "append a byte": lambda root: (root / "z.txt").write_bytes(b"z" * 70_001),
    "rename a file": lambda root: (root / "z.txt").rename(root / "y.txt"),
    "rename a directory": lambda root: (root / "a/b").rename(root / "a/B"),
    "change a mode": lambda root: (root / "z.txt").chmod(0o600),
    "change a directory mode": lambda root: (root / "a/b").chmod(0o700),
    "change a symlink target": _relink,
    "remove an empty directory": lambda root: (root / "a/empty").rmdir(),
    "add an empty directory": lambda root: (root / "a/new").mkdir(),
    "add an empty file": _write("a/empty/f", b""),
    "replace a file by a directory": _file_to_dir,
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_any_change_changes_the_id(tmp_path: Path, name: str) -> None:
    root = tmp_path / "t"
    build_tree(root, order_seed=0)
    before = scan(root).summary.root
    MUTATIONS[name](root)
    set_mtimes(root)  # only the mutation itself may differ, not its timestamps
    assert scan(root).summary.root != before
    shutil.rmtree(root / ".syncd")
    assert scan(root).summary.root != before  # and a cold scan agrees with the rescan


def test_mtime_is_part_of_the_id(tmp_path: Path) -> None:
    root = tmp_path / "t"
    build_tree(root, order_seed=0)
    before = scan(root).summary.root
    os.utime(root / "z.txt", ns=(1, 1))
    assert scan(root).summary.root != before
