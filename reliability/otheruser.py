"""A far side run by a second, unprivileged user, as a site runs it (the shipped `syncd`
user): `setpriv` to a throwaway uid that owns the far root and nothing else.

Root is never stopped by a mode, so a far side tried only as root hides what stops its
own user (a 0555 directory that gains a file, a directory moved to another parent).
Tests and campaigns put `as_other_user(...)` in front of a `syncd` command line; the
roots they give it come from `other_user_folder`, world-searchable and owned by the uid.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

OTHER_UID = 61234  # a uid no account has (checked): it owns nothing but what we give it


def other_user_available() -> bool:
    """Whether this process can run commands as OTHER_UID (root with setpriv)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    try:
        pwd.getpwuid(OTHER_UID)
    except KeyError:
        return True
    return False  # the uid belongs to someone: do not borrow it


def as_other_user(argv: list[str]) -> list[str]:
    return [
        "setpriv",
        f"--reuid={OTHER_UID}",
        f"--regid={OTHER_UID}",
        "--clear-groups",
        "--inh-caps=-all",
        *argv,
    ]


def other_user_env(env: dict[str, str]) -> dict[str, str]:
    """`env` for the other user: a HOME of its own (none), no root's."""
    return {**env, "HOME": "/nonexistent"}


def other_user_folder(name: str) -> Path:
    """A new folder outside any private tmp folder, searchable by everyone, holding
    `name` owned by OTHER_UID; remove it with `remove_other_user_folder`."""
    base = Path(tempfile.mkdtemp(prefix="syncd-other-user-"))
    base.chmod(0o755)
    folder = base / name
    folder.mkdir()
    os.chown(folder, OTHER_UID, OTHER_UID)
    return folder


def give_to_other_user(folder: Path) -> None:
    """`folder` and everything below it now belong to the other user."""
    os.chown(folder, OTHER_UID, OTHER_UID)
    for top, dirs, files in os.walk(folder):
        for name in dirs + files:
            os.chown(Path(top, name), OTHER_UID, OTHER_UID, follow_symlinks=False)


def remove_other_user_folder(folder: Path) -> None:
    for top, dirs, _ in os.walk(folder.parent):
        for name in dirs:  # the other user may have left 0555 directories
            Path(top, name).chmod(0o755)
    shutil.rmtree(folder.parent, ignore_errors=True)
