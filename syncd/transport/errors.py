"""Errors raised by transports; all are `SyncdError`s, so the CLI prints them as one line."""

from __future__ import annotations

from syncd.errors import SyncdError


class TransportError(SyncdError):
    """The far side could not be reached, or the byte stream to it broke."""


class ConnectError(TransportError):
    """The far side could not be started or reached (refused, DNS, auth, timeout, ...)."""


class HostKeyError(ConnectError):
    """The SSH server's host key is unknown or changed; nothing was run on the far side."""


class ChannelClosed(TransportError):
    """The stream to the far side broke, or the channel was already closed."""
