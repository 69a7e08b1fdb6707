"""The sample trees the benchmarks share, and what is truly new between two months.

The oc-mirror month trees come from `syncd.sample.generate_month` (direct mode), cached
under WORKDIR/trees by `common.cached_tree`: scan_bench and verify_bench use month 1,
push_bench, media_bench and daemon_bench months 1 and 2. `truly_new` is the yardstick of
the bytes figures (push's wire bytes, media's export bytes).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bench.common import SYNCD_STATE, cached_tree
from syncd.sample import LARGE, SMALL, SampleSpec, generate_month

# -- the trees --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sizes:
    """The trees of a run: an oc-mirror sample spec and a link-tree size."""

    label: str
    ocmirror: SampleSpec
    ocmirror_name: str  # month N is cached as f"{ocmirror_name}-mN"
    links: int
    runs: int


FULL = Sizes("full", LARGE, "ocmirror-large", 200_000, 5)
QUICK = Sizes("quick", SMALL, "ocmirror-small", 20_000, 3)


def sizes_for(quick: bool, runs: int | None) -> Sizes:
    """FULL or QUICK, with `runs` timed runs (at least 3) if given."""
    base = QUICK if quick else FULL
    return replace(base, runs=max(3, runs or base.runs))


def month_one(workdir: Path, spec: SampleSpec, name: str, log: Callable[[str], None]) -> Path:
    """Month 1 of the oc-mirror sample, cached as `name`-m1."""
    params = {"generator": "syncd.sample.generate_month", "month": 1, "spec": asdict(spec)}
    return cached_tree(workdir, f"{name}-m1", params, lambda r: _month(r, spec, 1), log=log)


def month_trees(
    workdir: Path, spec: SampleSpec, name: str, log: Callable[[str], None]
) -> tuple[Path, Path]:
    """Months 1 and 2 of the oc-mirror sample (month 2 is month 1 plus its changes)."""
    one = month_one(workdir, spec, name, log)
    params = {"generator": "syncd.sample.generate_month", "month": 2, "spec": asdict(spec)}
    two = cached_tree(workdir, f"{name}-m2", params, lambda r: _month_two(one, r, spec), log=log)
    return one, two


def _month(root: Path, spec: SampleSpec, month: int) -> None:
    generate_month(root, month, spec, via_registry=False)


def _month_two(one: Path, root: Path, spec: SampleSpec) -> None:
    shutil.copytree(one, root, symlinks=True, ignore=shutil.ignore_patterns(SYNCD_STATE))
    generate_month(root, 2, spec, via_registry=False)


# -- what is truly new ------------------------------------------------------------------


def _is_archive(path: Path) -> bool:
    return (
        path.parent.name == "content" and re.fullmatch(r"mirror_\d{6}\.tar", path.name) is not None
    )


def _files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and SYNCD_STATE not in path.relative_to(root).parts:
            yield path


def _data(root: Path) -> Iterator[tuple[str, int]]:
    """(sha256, size) of every file's bytes and every archive member's data."""
    for path in _files(root):
        if _is_archive(path):
            yield from ((digest, size) for digest, size, _, _ in _members(path))
        else:
            data = path.read_bytes()
            yield hashlib.sha256(data).hexdigest(), len(data)


def _members(archive: Path) -> Iterator[tuple[str, int, str, int]]:
    """(data sha256, data size, member identity, header bytes) of every member."""
    with tarfile.open(archive) as tar:
        for member in tar:
            reader = tar.extractfile(member)
            data = reader.read() if reader else b""
            digest = hashlib.sha256(data).hexdigest()
            identity = f"{member.name}\0{member.mtime}\0{digest}"
            yield digest, len(data), identity, member.offset_data - member.offset


def truly_new(one: Path, two: Path) -> dict[str, int]:
    """Distinct new bytes (counted once wherever they appear) plus new members' headers."""
    before = {digest for digest, _ in _data(one)}
    new: dict[str, int] = {d: size for d, size in _data(two) if d not in before}
    old_members = {
        identity
        for path in _files(one)
        if _is_archive(path)
        for _, _, identity, _ in _members(path)
    }
    headers = sum(
        header
        for path in _files(two)
        if _is_archive(path)
        for _, _, identity, header in _members(path)
        if identity not in old_members
    )
    content = sum(new.values())
    return {"content_bytes": content, "header_bytes": headers, "total": content + headers}


def cumulative_archive_bytes(two: Path) -> int:
    """What a non-differential month-2 archive set would hold: the whole cache (all
    blobs and the repositories tree) and the working-dir."""
    total = 0
    for folder in (two / ".oc-mirror" / ".cache", two / "content" / "working-dir"):
        for path in folder.rglob("*"):
            if path.is_file():
                total += 512 + -(-path.stat().st_size // 512) * 512
    return total
