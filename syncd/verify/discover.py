"""Find what to verify under a root: registry storage trees and oc-mirror content folders.

A registry tree is any `docker/registry/v2` folder (the walk does not enter it). A
content folder is any folder holding `mirror_*.tar` files or a `working-dir/`. The walk
never follows symlinks and skips syncd's own state folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from syncd.state import STATE_NAME
from syncd.verify.beneath import Beneath, open_beneath

_V2 = ("docker", "registry", "v2")
CACHE = Path(".oc-mirror/.cache")


@dataclass(slots=True)
class Found:
    registries: list[Path] = field(default_factory=list)  # the v2 folders
    contents: list[Path] = field(default_factory=list)


def discover(root: Path) -> Found:
    found = Found()
    stack = [root]
    while stack:
        folder = stack.pop()
        if folder.parts[-3:] == _V2:
            found.registries.append(folder)
            continue
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # an unreadable folder holds nothing verify could use
        names = {entry.name for entry in entries}
        if "working-dir" in names or any(_is_archive(n) for n in names):
            found.contents.append(folder)
        stack += [
            Path(entry.path)
            for entry in entries
            if entry.is_dir(follow_symlinks=False) and entry.name not in (STATE_NAME, "working-dir")
        ]
    found.registries.sort()
    found.contents.sort()
    return found


def is_oc_mirror_cache(v2: Path) -> bool:
    """Inside `.oc-mirror/.cache`: oc-mirror's registry, which allows sparse indexes."""
    parts = v2.parts
    return any(parts[i : i + 2] == CACHE.parts for i in range(len(parts) - 1))


def cache_for(folder: Path, root: Path, base: Path | None) -> Path | None:
    """The cache disk-to-mirror extracts into: `base`'s, else the nearest found beside.

    Looked for in the content folder and its parents up to the root, and next to the
    root when the root is the content folder itself.
    """
    rel = (CACHE / Path(*_V2)).as_posix()
    if base is not None:
        return base / rel if _is_dir_beneath(base, rel) else None
    candidates = [folder, *folder.parents]
    stop = root.parent if folder == root else root
    for candidate in candidates:
        if _is_dir_beneath(candidate, rel):
            return candidate / rel
        if candidate == stop:
            break
    return None


def _is_dir_beneath(base: Path, rel: str) -> bool:
    """`base/rel` is a directory reached without following a symlink below `base`."""
    try:
        with Beneath.open(base) as opened:
            os.close(open_beneath(opened.fd, rel, os.O_RDONLY | os.O_DIRECTORY))
    except OSError:
        return False
    return True


def _is_archive(name: str) -> bool:
    return name.startswith("mirror_") and name.endswith(".tar")
