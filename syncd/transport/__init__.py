"""Transports: adapters that move protocol bytes between the two sides, and nothing else.

- `Channel` (channel.py): what a session driver reads from and writes to;
- `open_local` (local.py): the far side as a local child process;
- `open_ssh` (ssh.py): the far side over SSH, with strict host key checking;
- `open_stdio` (stdio.py): the far side's own end, for `syncd serve --stdio`;
- `RateLimited`, `parse_rate` (ratelimit.py): --bwlimit;
- `parse_target`, `Target` (target.py): what `push` was told to sync to;
- `open_channel` (connect.py): local or ssh by target kind.

Transports contain no sync logic: no framing, no messages, no tree.

The SSH modules (and asyncssh, ~0.25 s to import) load on first use of `open_ssh`,
`remote_command` or `open_channel`, so that `serve --stdio` starts quickly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from syncd.transport.channel import Channel
from syncd.transport.errors import ChannelClosed, ConnectError, HostKeyError, TransportError
from syncd.transport.local import DEFAULT_LOCAL_SYNCD, open_local
from syncd.transport.ratelimit import RateLimited, parse_rate
from syncd.transport.stdio import open_stdio
from syncd.transport.target import Target, parse_target

if TYPE_CHECKING:
    from syncd.transport.connect import open_channel
    from syncd.transport.ssh import open_ssh, remote_command

_LAZY = {
    "open_channel": "syncd.transport.connect",
    "open_ssh": "syncd.transport.ssh",
    "remote_command": "syncd.transport.ssh",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "DEFAULT_LOCAL_SYNCD",
    "Channel",
    "ChannelClosed",
    "ConnectError",
    "HostKeyError",
    "RateLimited",
    "Target",
    "TransportError",
    "open_channel",
    "open_local",
    "open_ssh",
    "open_stdio",
    "parse_rate",
    "parse_target",
    "remote_command",
]
