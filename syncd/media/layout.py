"""Names on media, and finding volumes in the folders given to `syncd import`.

An export is `DIR/<export-id>/vol-NNNN/` (one folder per medium) holding `index` and
`pack-NNNN`. Every name is ASCII without ':' (FAT and NTFS refuse it); the export id
begins with the UTC time it was made, so folders sort by age.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterable
from pathlib import Path

from syncd.errors import UsageError

INDEX_NAME = "index"
PARTIAL_SUFFIX = ".partial"
_VOLUME = re.compile(r"vol-(\d{4})")


def volume_name(number: int) -> str:
    return f"vol-{number:04d}"


def pack_name(number: int) -> str:
    return f"pack-{number:04d}"


def new_export_id(now_ns: int) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_ns // 1_000_000_000))
    return f"{stamp}-{secrets.token_hex(4)}"


def describe(volume: Path) -> str:
    """How messages name a volume folder: its export folder and its own name."""
    return f"{volume.parent.name}/{volume.name}" if volume.parent.name else str(volume)


def find_volumes(folders: Iterable[Path]) -> list[Path]:
    """Volume folders in `folders`: each is a volume (holds `index`), an export folder
    (holds vol-NNNN/), or a folder of exports (e.g. a medium's root)."""
    found: list[Path] = []
    for folder in folders:
        volumes = _volumes_in(folder)
        if not volumes:
            raise UsageError(
                f"{folder}: no syncd volume here (looked for {INDEX_NAME}, "
                f"vol-NNNN/{INDEX_NAME} and */vol-NNNN/{INDEX_NAME})"
            )
        found.extend(v for v in volumes if v not in found)
    return found


def _volumes_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder")
    if (folder / INDEX_NAME).is_file():
        return [folder]
    direct = _volume_children(folder)
    if direct:
        return direct
    nested: list[Path] = []
    for child in sorted(folder.iterdir()):
        if child.is_dir() and not child.name.endswith(PARTIAL_SUFFIX):
            nested.extend(_volume_children(child))
    return nested


def _volume_children(folder: Path) -> list[Path]:
    return [
        child
        for child in sorted(folder.iterdir())
        if _VOLUME.fullmatch(child.name) and (child / INDEX_NAME).is_file()
    ]


def refuse_inside(path: Path, root: Path, what: str) -> None:
    """Media must lie outside the tree: inside, a scan would take them for part of it and
    an apply (which deletes what the target lacks) would remove them."""
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return
    raise UsageError(f"{what} {path} is inside {root}: put it outside the tree")


def index_magic(volume: Path) -> bytes:
    """The first 8 bytes of a volume's index (its kind: data or parity), b"" if unreadable."""
    try:
        fd = os.open(volume / INDEX_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        return os.pread(fd, 8, 0)
    except OSError:
        return b""
    finally:
        os.close(fd)
