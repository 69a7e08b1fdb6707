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

The root a client names in its HELLO is only compared with the served one, as text
(check_asked_root): nothing the client sends is looked up on this host.
"""

from __future__ import annotations

import os
import pwd
import sys
from collections.abc import Iterator
from pathlib import Path

import syncd
from protocol.errors import ErrorCode, ProtocolError
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


def root_names(root: Path) -> frozenset[str]:
    """The paths a client may name the served root by in its HELLO: as the operator wrote
    it (made absolute) and its real path (a root reached through a symlink)."""
    return frozenset({_lexical(str(root.absolute())), os.path.realpath(root)})


def check_asked_root(asked: str, served: Path, names: frozenset[str]) -> None:
    """Refuse (BAD_PATH) a HELLO `root` that names another tree than the served one.

    The comparison is textual and touches nothing the client names: no `~user` lookup
    (which told a client which local users exist), no resolving of symlinks (a loop or a
    NUL ended serve with a traceback). `~` and `~/x` mean the login directory, where
    OpenSSH starts serve, as the client's own command line sends them
    (syncd/transport/ssh.py); a relative path is taken from there too. Every mismatch,
    whatever the text, is answered by the same sentence."""
    if not asked:
        return
    path = asked[2:] if asked == "~" or asked.startswith("~/") else asked
    if not path.startswith("/"):
        path = f"{Path.cwd()}/{path}"
    if _lexical(path) not in names:
        # As its operator wrote it first (the forced command's --root), then its real path.
        shown = " = ".join(sorted(names, key=lambda name: (name == str(served), name)))
        raise ProtocolError(
            ErrorCode.BAD_PATH, f"this far side serves {shown}, not {asked!r}; nothing was changed"
        )


def _lexical(path: str) -> str:
    """`path` without empty and `.` components; `..` is kept (it is not resolved)."""
    return "/" + "/".join(part for part in path.split("/") if part not in ("", "."))
