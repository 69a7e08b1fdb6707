"""Helpers shared by the apply tests (this module holds no tests).

Sample trees are real files from `generate_month`; a "transfer" is simulated by reading
each needed piece out of the source's files at its recipe offset and staging it, exactly
as the far side would keep what it received. `registry_problems` reads registry storage
the way distribution serves it, to check that every listed tag resolves.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.tree import DirNode, FileNode
from syncd.apply import BlobIndex, Staging
from syncd.sample import TINY, generate_month
from syncd.sample.ocmirror import CACHE
from syncd.sample.regstore import V2
from syncd.scan.api import scan_root
from syncd.snapshot import SnapshotReader
from syncd.state import STATE_NAME, StateDir


@dataclass(frozen=True)
class Source:
    root: Path
    id: bytes  # snapshot id

    @property
    def snapshot(self) -> Path:
        return StateDir(self.root).snapshot


def make_source(root: Path, months: int, first: int = 1) -> Source:
    """Months `first`..`months` of the TINY sample in `root`, scanned."""
    for month in range(first, months + 1):
        generate_month(root, month, TINY, via_registry=False)
    return Source(root, scan_root(root, StateDir(root)).summary.root)


def copy_tree(source: Path, destination: Path, *, with_state: bool = False) -> None:
    """A copy keeping modes and mtimes (so equal trees scan to equal ids)."""
    ignore = None if with_state else shutil.ignore_patterns(STATE_NAME)
    shutil.copytree(source, destination, symlinks=True, ignore=ignore)


def scan_id(root: Path) -> bytes:
    return scan_root(root, StateDir(root)).summary.root


def source_pieces(source: Source) -> Iterator[tuple[str, bytes, bytes]]:
    """(path, digest, bytes) of every piece of every source file, read at its offset."""
    with SnapshotReader(source.snapshot) as snapshot:
        for path, node in snapshot.walk():
            if not isinstance(node, FileNode):
                continue
            with (source.root / path).open("rb") as stream:
                for digest, length in node.recipe:
                    yield path, digest, stream.read(length)


def far_index(far: Path, weak: Callable[[str], bool] | None = None) -> BlobIndex:
    state = StateDir(far)
    scan_root(far, state)
    with SnapshotReader(state.snapshot) as snapshot:
        return BlobIndex.build(snapshot, weak)


def stage_transfer(
    source: Source, far: Path, *, everything: bool = False, skip: frozenset[bytes] = frozenset()
) -> Staging:
    """Staging as a push leaves it: the source's pieces the far tree lacks, and its trees."""
    have = None if everything else far_index(far)
    staging = Staging.open(StateDir(far))
    for _, digest, data in source_pieces(source):
        if digest not in skip and (have is None or not have.has(digest)):
            staging.add_blob(digest, data)
    with SnapshotReader(source.snapshot) as snapshot:
        for key, record in tree_records(snapshot):
            staging.add_tree(key, record)
    staging.flush()
    return staging


def tree_records(snapshot: SnapshotReader) -> Iterator[tuple[bytes, bytes]]:
    """(id, record) of every tree reachable from the snapshot's root, once each."""
    seen: set[bytes] = set()
    stack = [snapshot.root]
    while stack:
        key = stack.pop()
        record = snapshot.record(key)
        if key in seen or record is None:
            continue
        seen.add(key)
        yield key, bytes(record)
        stack.extend(node.tree for node in snapshot.tree(key) if isinstance(node, DirNode))


@contextmanager
def records_of(source: Source) -> Iterator[SnapshotReader]:
    with SnapshotReader(source.snapshot) as snapshot:
        yield snapshot


@contextmanager
def small_tmpfs(mount: Path, size: int) -> Iterator[Path | None]:
    """A tmpfs of `size` bytes mounted at `mount` (None when this host cannot mount one:
    mounting needs root), unmounted afterwards."""
    mount.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path, leave: int) -> Path:
    """A ballast file leaving about `leave` bytes free on the file system."""
    stats = os.statvfs(mount)
    ballast = mount / "ballast"
    size = stats.f_bavail * stats.f_frsize - leave
    with ballast.open("wb") as stream:
        stream.truncate(0)
        chunk = b"\0" * (1 << 20)
        while size > 0:
            stream.write(chunk[: min(size, len(chunk))])
            size -= len(chunk)
    return ballast


def listing(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry but the state folder: kind, mode, mtime, content hash or link target."""
    found: dict[str, tuple[object, ...]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not (folder == str(root) and d == STATE_NAME)]
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            if path.is_symlink():
                body: object = ("link", os.readlink(path))
            elif path.is_dir():
                body = "dir"
            else:
                body = hashlib.sha256(path.read_bytes()).hexdigest()
            # Snapshots (and so applies) keep file mtimes only.
            mtime = info.st_mtime_ns if isinstance(body, str) and body != "dir" else None
            found[path.relative_to(root).as_posix()] = (body, info.st_mode, mtime)
    return found


class Checker:
    """What must hold at any instant, between month 1 and month 2."""

    def __init__(self, month1: Source, month2: Source) -> None:
        self.sources = (month1.root, month2.root)
        self.entries = (listing(month1.root), listing(month2.root))
        tags1, tags2 = listed_tags(month1.root), listed_tags(month2.root)
        self.always, self.maybe = tags1 & tags2, tags1 | tags2

    def check(self, far: Path, where: str) -> None:
        assert registry_problems(far, *self.sources) == [], where
        tags = listed_tags(far)
        assert self.always <= tags <= self.maybe, where
        for path, entry in listing(far).items():
            if entry[0] == "dir":
                assert any(path in e for e in self.entries), f"{where}: stray directory {path}"
            else:
                assert entry in (e.get(path) for e in self.entries), f"{where}: partial {path}"


# -- reading registry storage as distribution does -------------------------------------


def storage_of(root: Path) -> Path:
    return root / CACHE / V2


def listed_tags(root: Path) -> set[str]:
    """repo:tag for every directory under a repository's `_manifests/tags/`."""
    return {f"{repo}:{tag.name}" for repo, tag in _tag_dirs(storage_of(root))}


def registry_problems(root: Path, *references: Path) -> list[str]:
    """Every listed tag that would not resolve: tag -> revision -> manifest -> blobs.

    Indexes may be sparse (oc-mirror's cache allows it): a child is required when one of
    the `references` trees (default: `root`) has its revision link.
    """
    resolver = _Resolver(storage_of(root), [storage_of(r) for r in references or (root,)])
    problems = []
    for repo, tag_dir in _tag_dirs(resolver.v2):
        problem = resolver.tag(repo, tag_dir)
        if problem:
            problems.append(f"{repo}:{tag_dir.name}: {problem}")
    return problems


def _tag_dirs(v2: Path) -> Iterator[tuple[str, Path]]:
    base = v2 / "repositories"
    for folder, dirs, _ in os.walk(base):
        if "_manifests" in dirs:
            tags = Path(folder) / "_manifests" / "tags"
            repo = Path(folder).relative_to(base).as_posix()
            for tag in sorted(tags.iterdir()) if tags.is_dir() else ():
                yield repo, tag
        dirs[:] = [d for d in dirs if not d.startswith("_")]


@dataclass(frozen=True)
class _Resolver:
    v2: Path
    references: list[Path]

    def tag(self, repo: str, tag_dir: Path) -> str | None:
        current = tag_dir / "current" / "link"
        if not current.is_file():
            return "listed without current/link"
        return self.manifest(repo, current.read_text())

    def manifest(self, repo: str, digest: str) -> str | None:
        if _revision(self.v2, repo, digest) != digest:
            return f"no revision link for {digest}"
        body, problem = _blob(self.v2, digest)
        if problem:
            return f"manifest {problem}"
        manifest: dict[str, Any] = json.loads(body)
        if "manifests" in manifest:
            return self.children(repo, [child["digest"] for child in manifest["manifests"]])
        for blob in [manifest["config"], *manifest["layers"]]:
            link = self.v2 / "repositories" / repo / "_layers" / _digest_dir(blob["digest"])
            if not (link / "link").is_file():
                return f"no _layers link for {blob['digest']}"
            _, problem = _blob(self.v2, blob["digest"])
            if problem:
                return problem
        return None

    def children(self, repo: str, digests: list[str]) -> str | None:
        for digest in digests:
            if not any(_revision(ref, repo, digest) for ref in self.references):
                continue  # absent on purpose: a sparse index
            problem = self.manifest(repo, digest)
            if problem:
                return f"index child: {problem}"
        return None


def _revision(v2: Path, repo: str, digest: str) -> str | None:
    link = v2 / "repositories" / repo / "_manifests" / "revisions" / _digest_dir(digest) / "link"
    return link.read_text() if link.is_file() else None


def _blob(v2: Path, digest: str) -> tuple[bytes, str | None]:
    hexpart = digest.removeprefix("sha256:")
    data = v2 / "blobs" / "sha256" / hexpart[:2] / hexpart / "data"
    if not data.is_file():
        return b"", f"{digest}: data missing"
    body = data.read_bytes()
    if hashlib.sha256(body).hexdigest() != hexpart:
        return b"", f"{digest}: data corrupt"
    return body, None


def _digest_dir(digest: str) -> str:
    return "sha256/" + digest.removeprefix("sha256:")
