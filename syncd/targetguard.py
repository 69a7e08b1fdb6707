"""Targets a push or an import refuses: a typo must never delete someone's data.

A push or an import makes its target equal the source, and deleting what the source
lacks is the default. Pointed at the wrong folder (`syncd push msrc /tmp/victim`,
`syncd import EXPORT --root /srv/mirror/content`), it would delete whatever lived
there. So, before anything is created or changed, the side that writes (`serve`, for a
push; `import`) looks at what its root holds and goes on only when it is:

- absent or empty (a first sync; `lost+found` alone, a fresh file system, is empty);
- a syncd root: its state folder holds a snapshot (syncd has scanned or synced it);
- an oc-mirror root: `.oc-mirror/` (the cache's base), or `content/` holding
  `mirror_NNNNNN.tar` archives or `working-dir/`;
- registry storage: `docker/registry/v2/`, or a `v2` folder itself (`blobs/` and
  `repositories/`).

Anything else is refused, naming what was found, unless the operator says `--force`.
The check is made where the writing happens: a far side cannot trust a client to have
made it. A content folder on its own is no target (it is what the second example above
would have replaced).

`refuse_nested` is the other half, for a push to a local path: a target inside the
source (the source would copy itself into itself) or a source inside the target (the
apply would delete the source as it goes) is refused, comparing real paths.
"""

from __future__ import annotations

from pathlib import Path

from syncd.errors import UsageError
from syncd.state import StateDir

_SHOWN = 4  # entries named in a refusal


def refuse_unknown_target(root: Path, state: StateDir, *, force: bool, flag: str) -> None:
    """Raise UsageError unless `root` may be made equal to a source (module docstring).

    `flag` is how the user says --force where this runs (serve's own option, or push's
    and import's), for the message."""
    if force:
        return
    names = _entries(root, state)
    if names is None or not names or _is_syncd_root(state) or _looks_like(root, names):
        return
    shown = ", ".join(sorted(names)[:_SHOWN]) + (", ..." if len(names) > _SHOWN else "")
    hint = ""
    if _is_content(root):
        hint = (
            f" (it is an oc-mirror content folder: the root is probably its parent, {root.parent})"
        )
    raise UsageError(
        f"refusing to make {root} equal the source: it holds {len(names)} entr"
        f"{'y' if len(names) == 1 else 'ies'} ({shown}){hint} but no syncd state, no "
        ".oc-mirror/ or content/ of an oc-mirror root and no registry storage "
        "(docker/registry/v2/); what the source lacks would be deleted. Check the path, "
        f"or give {flag} if this folder is really to be replaced; nothing was changed"
    )


def _entries(root: Path, state: StateDir) -> set[str] | None:
    """The names in `root` but the state folder; None when there is no such folder."""
    try:
        names = {entry.name for entry in root.iterdir()}
    except (FileNotFoundError, NotADirectoryError):
        return None  # created (or refused as no folder) further on
    except OSError as exc:
        raise UsageError(f"{root}: cannot list it: {exc.strerror}") from exc
    rel = state.excluded_relpath()
    if rel is not None:
        names.discard(rel.split("/")[0])
    names.discard("lost+found")  # a fresh file system's root: mkfs made it, not a person
    return names


def _is_syncd_root(state: StateDir) -> bool:
    return state.snapshot.is_file()


def looks_like_mirror(root: Path) -> bool:
    """Whether `root` is an oc-mirror root or registry storage (module docstring)."""
    try:
        names = {entry.name for entry in root.iterdir()}
    except OSError:
        return False
    return _looks_like(root, names)


def _looks_like(root: Path, names: set[str]) -> bool:
    if ".oc-mirror" in names and (root / ".oc-mirror").is_dir():
        return True
    content = root / "content"
    if "content" in names and content.is_dir() and _is_content(content):
        return True
    if (root / "docker" / "registry" / "v2").is_dir():
        return True
    return {"blobs", "repositories"} <= names and (root / "blobs" / "sha256").is_dir()


def _is_content(folder: Path) -> bool:
    try:
        names = [entry.name for entry in folder.iterdir()]
    except OSError:
        return False
    return "working-dir" in names or any(
        name.startswith("mirror_") and name.endswith(".tar") for name in names
    )


def refuse_nested(source: Path, target: Path, *, what: str = "target") -> None:
    """Raise UsageError when one of the two folders is, or lies inside, the other."""
    src, dst = source.resolve(), target.resolve()
    if dst == src:
        raise UsageError(f"the {what} {target} is the source {source} itself; nothing was changed")
    if dst.is_relative_to(src):
        raise UsageError(
            f"the {what} {target} lies inside the source {source}: the source would be "
            "copied into itself; nothing was changed"
        )
    if src.is_relative_to(dst):
        raise UsageError(
            f"the source {source} lies inside the {what} {target}: making the {what} equal "
            "the source would delete the source; nothing was changed"
        )
