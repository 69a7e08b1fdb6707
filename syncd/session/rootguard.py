"""Roots `syncd serve` refuses: those holding what decides what runs on the far host.

A push makes the root equal to the source: it writes, replaces and deletes anything
below it. The key that pushes is usually pinned to `syncd serve --root R` by a forced
command, so that a stolen key can change one tree and nothing else. That holds only
while nothing below R decides what runs here:

- the login's home directory ($HOME, and the password database's, which sshd uses):
  OpenSSH reads ~/.ssh/authorized_keys, ~/.ssh/rc and ~/.ssh/environment there, the
  shell its start-up files, Python the user site-packages. The ssh campaign
  (reliability/ssh_paths.py) pushed `.ssh/authorized_keys` into a root that was the
  login's home - a `mirror` user whose home is the mirror - and the pinned key then ran
  any command it liked;
- syncd's own installation: its package folder and the Python prefix it runs from.

So serve refuses a root that is, or holds, any of these, before it creates anything.
A root below the home directory (~/mirror) is fine.
"""

from __future__ import annotations

import os
import pwd
import sys
from collections.abc import Iterator
from pathlib import Path

import syncd
from syncd.errors import UsageError

_LOGIN = (
    "sshd reads the login's authorized_keys there, and the shell and Python their start-up "
    "files: a push could let the pushing key run commands on this host"
)
_PROGRAM = "a push could replace the program that serves it"


def protected() -> Iterator[tuple[str, Path, str]]:
    """(what, path, why) for every folder a served root must not hold."""
    home = os.environ.get("HOME", "")
    if home.startswith("/"):
        yield "the home directory $HOME", Path(home), _LOGIN
    try:
        entry = pwd.getpwuid(os.getuid())
    except KeyError:  # a uid the password database does not know: no login to protect
        pass
    else:
        yield f"the home directory of {entry.pw_name}", Path(entry.pw_dir), _LOGIN
    yield "syncd's installation", Path(syncd.__file__).parent, _PROGRAM
    for prefix in {sys.prefix, sys.base_prefix}:
        yield "the Python installation syncd runs from", Path(prefix), _PROGRAM


def refuse_unsafe_root(root: Path) -> None:
    """Raise UsageError if `root` is, or holds, a protected folder."""
    real = root.resolve()
    for what, path, why in protected():
        if path.resolve().is_relative_to(real):
            raise UsageError(
                f"refusing to serve {root}: it holds {what} ({path}), and {why}; "
                f"serve a folder outside it (such as /srv/mirror)"
            )
