"""Sources a push or an export refuses: a typo or an unmounted disk must not wipe a site.

A push (with delete, the default) and an import make the far tree equal to the source,
so a source that is wrong deletes what the far side has:

- an empty source deletes everything. An empty source is far more often a file system
  that did not mount, a wrong path or a wiped disk than a wish to wipe the sites, so it
  is refused before anything is scanned, sent or written (`--allow-empty`); `push
  --no-delete` of it deletes nothing and is let through. The daemon never pushes an
  empty source (syncd/daemon/service.py).
- a folder inside an oc-mirror root (`content/`, `.oc-mirror/`, `working-dir/`) deletes
  the rest of the far root: pushing `/srv/mirror/content` where `/srv/mirror` was meant
  removes the far side's whole cache, and the next upload fails. Refused, naming the
  root that was probably meant (`--allow-subtree` when only that part is to be synced).
"""

from __future__ import annotations

import os
from pathlib import Path

from syncd.errors import UsageError
from syncd.snapshot import Summary
from syncd.state import StateDir
from syncd.targetguard import looks_like_mirror

_ANCESTORS = 4  # how far up an enclosing oc-mirror root is looked for


def refuse_wrong_source(src: Path, state: StateDir, *, empty: bool, subtree: bool) -> None:
    """Raise UsageError for an empty `src` (unless `empty`) or one inside an oc-mirror
    root (unless `subtree`), before anything is written (module docstring)."""
    if not src.is_dir():
        raise UsageError(f"{src}: no such folder (is SRC right?); nothing was done")
    if not empty and not _holds_a_file(src, state):
        raise UsageError(_empty_message(src))
    if not subtree:
        refuse_inside_mirror(src)


def refuse_empty_source(src: Path, summary: Summary, *, allowed: bool) -> None:
    """The same refusal after the scan (a source whose only files it could not read)."""
    if not allowed and not summary.files:
        raise UsageError(_empty_message(src))


def _empty_message(src: Path) -> str:
    return (
        f"{src}: holds no files (a file system not mounted? a wrong path?): syncing it "
        "would delete everything on the far side; nothing was done. Check SRC, or give "
        "--allow-empty if emptying the far side is what you mean"
    )


def _holds_a_file(src: Path, state: StateDir) -> bool:
    """Whether anything but folders (and syncd's state folder) lies under `src`; stops
    at the first such entry. A folder it cannot list counts as holding something: the
    scan reports it, by name."""
    excluded = (src / rel).resolve() if (rel := state.excluded_relpath()) else None
    stack = [src]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if not entry.is_dir(follow_symlinks=False):
                        return True
                    path = Path(entry.path)
                    if excluded is None or path.resolve() != excluded:
                        stack.append(path)
        except OSError:
            return True
    return False


def refuse_inside_mirror(src: Path, *, flag: str = "--allow-subtree") -> None:
    """Raise UsageError when `src` is not itself an oc-mirror root but lies inside one."""
    real = src.resolve()
    if looks_like_mirror(real):
        return
    for ancestor in list(real.parents)[:_ANCESTORS]:
        if looks_like_mirror(ancestor):
            raise UsageError(
                f"{src} lies inside the oc-mirror root {ancestor}: a push or import of it "
                "would make the far root hold only this part and delete the rest (the "
                f"cache, say); nothing was done. Give {ancestor} as SRC, or {flag} if only "
                "this part is to be synced"
            )
