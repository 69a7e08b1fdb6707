"""A torn or damaged stat cache is never trusted: the next scan reads and hashes again."""

from __future__ import annotations

import os
from pathlib import Path

import blake3

from syncd.state import StateDir
from tests.scanutil import files, scan, set_mtimes


def make_tree(root: Path) -> dict[str, bytes]:
    contents = {f"d{i % 3}/f{i}": os.urandom(2000 + i) for i in range(12)}
    for rel, data in contents.items():
        (root / rel).parent.mkdir(exist_ok=True)
        (root / rel).write_bytes(data)
    set_mtimes(root)
    return contents


def test_a_damaged_digest_in_the_stat_cache_is_not_reused(tmp_path: Path) -> None:
    """The damage a decode cannot see: a recipe digest of a file whose stat still matches."""
    contents = make_tree(tmp_path)
    first = scan(tmp_path)
    cache = StateDir(tmp_path).statcache
    raw = bytearray(cache.read_bytes())
    digest = blake3.blake3(contents["d1/f4"]).digest()
    at = raw.find(digest)
    assert at > 0
    raw[at] ^= 0x01
    cache.write_bytes(raw)

    second = scan(tmp_path)
    assert second.hashed_bytes == first.summary.bytes  # the cache was not used at all
    assert second.summary == first.summary
    assert files(tmp_path)["d1/f4"].recipe[0][0] == digest
    assert scan(tmp_path).hashed_bytes == 0  # the cache written again is trusted again


def test_a_torn_stat_cache_is_read_as_none(tmp_path: Path) -> None:
    make_tree(tmp_path)
    first = scan(tmp_path)
    cache = StateDir(tmp_path).statcache
    raw = cache.read_bytes()
    for torn in (raw[: len(raw) // 2], raw[:-1], raw[:8]):
        cache.write_bytes(torn)
        again = scan(tmp_path)
        assert again.hashed_bytes == first.summary.bytes
        assert again.summary == first.summary
        assert not again.problems
