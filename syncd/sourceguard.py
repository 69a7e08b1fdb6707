"""An empty source is refused: syncing it would empty every far site.

A push (with delete, the default) and an import make the far tree equal to the source,
so a source that holds no file deletes everything the far side has. An empty source is
far more often a file system that did not mount, a wrong path or a wiped disk than a
wish to wipe the sites, so `syncd push` and `syncd export` stop before anything is sent
or written, unless the operator says so (`--allow-empty`). `push --no-delete` of an
empty source deletes nothing and is let through. The daemon never pushes an empty
source (syncd/daemon/service.py).
"""

from __future__ import annotations

from pathlib import Path

from syncd.errors import UsageError
from syncd.snapshot import Summary


def refuse_empty_source(src: Path, summary: Summary, *, what: str, allowed: bool) -> None:
    """Raise UsageError when `summary` (of `src`'s fresh scan) holds no file.

    `what` names the consequence for the message ("a push would delete")."""
    if allowed or summary.files:
        return
    raise UsageError(
        f"{src}: holds no files (a file system not mounted? a wrong path?): {what} everything "
        "on the far side; nothing was done. Check SRC, or give --allow-empty if emptying "
        "the far side is what you mean"
    )
