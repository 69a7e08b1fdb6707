"""Open a channel to any parsed target: the one entry point `push` needs."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from syncd.transport.channel import Channel
from syncd.transport.local import DEFAULT_LOCAL_SYNCD, open_local
from syncd.transport.ssh import open_ssh
from syncd.transport.target import Target


async def open_channel(
    target: Target,
    *,
    remote_syncd: str | None = None,
    accept_new_host_key: bool = False,
    bwlimit: float | None = None,
    serve_flags: Sequence[str] = (),
    force: bool = False,
) -> Channel:
    """`open_local` or `open_ssh` by `target.kind`.

    `remote_syncd` is a command string (split with shell rules for a local target); the
    default is "syncd" over SSH and this Python's `-m syncd` locally. `serve_flags` are
    given to a local `serve` (over SSH, the far side's operator sets its own); `force`
    adds `--force` to serve's arguments either way (a forced command ignores it).
    """
    if target.kind == "local":
        argv = shlex.split(remote_syncd) if remote_syncd else DEFAULT_LOCAL_SYNCD
        flags = [*serve_flags, *(["--force"] if force else [])]
        return await open_local(
            Path(target.path), remote_syncd=argv, bwlimit=bwlimit, serve_flags=flags
        )
    return await open_ssh(
        target,
        remote_syncd=remote_syncd or "syncd",
        accept_new_host_key=accept_new_host_key,
        bwlimit=bwlimit,
        serve_flags=["--force"] if force else [],
    )
