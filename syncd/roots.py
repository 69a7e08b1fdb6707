"""A root named on the command line or in a configuration, resolved once.

Many hosts put their data behind a symlink (`/srv/mirror -> /data/mirror`). syncd opens
everything below a root without following symlinks, the root's own components included
(that is what keeps a symlink planted inside the tree from redirecting a write), so a
root must be the real directory: each entry point resolves it here, once, and works on
that path from then on. Symlinks inside the tree keep their own rules.
"""

from __future__ import annotations

import os
from pathlib import Path


def real_root(path: Path) -> Path:
    """`path` made absolute with every symlink in it resolved (as far as it exists: a
    root that is still to be created keeps its missing tail)."""
    return Path(os.path.realpath(path))
