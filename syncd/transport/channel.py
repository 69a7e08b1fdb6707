"""The byte channel a session driver talks through.

A channel is one reliable, ordered byte stream in each direction between this process and
a far process that runs `syncd serve --stdio --root PATH` (protocol/SPEC.md section 1).
Channels move bytes only: framing and everything above it belong to `protocol/` and the
session drivers.

Contract shared by every implementation (tests/test_transport_contract.py checks it):

- `read(max_bytes)` returns between 1 and `max_bytes` bytes, or `b""` once the far side
  has closed its output (or exited), and `b""` again on every later call; it also returns
  `b""` after `close()`. A stream that breaks abnormally (connection lost) raises
  `TransportError`.
- `write(data)` returns when the channel has accepted the bytes within its buffer limits
  (backpressure); it raises `ChannelClosed` when the far side is gone or after `close()`.
  Writes are not interleaved: call it from one task at a time.
- `close()` ends our sending side (the far side reads EOF), discards anything the far side
  still sends, waits for the far process to finish (killing it after a timeout) and
  releases every resource. It is idempotent and safe to call concurrently.
- `describe()` names the far side for messages, e.g. `ssh://user@host:2222/srv/mirror`.
- `diagnostics()` is, once the far side has ended, a status line such as
  "(the far side exited with status 3)", then its stderr so far (the last 64 KiB); so
  the last line is the last thing the far side said. It is meant for error messages and
  may be "".
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

DEFAULT_READ = 1 << 20


@runtime_checkable
class Channel(Protocol):
    async def read(self, max_bytes: int = DEFAULT_READ) -> bytes:
        """Up to `max_bytes` bytes; b"" at EOF."""
        ...

    async def write(self, data: bytes) -> None:
        """Send all of `data`, waiting for the channel to drain (backpressure)."""
        ...

    async def close(self) -> None:
        """Close our sending side, release resources, wait for the far process."""
        ...

    def describe(self) -> str:
        """The far side, for messages: e.g. "ssh://user@host:2222/srv/mirror"."""
        ...

    def diagnostics(self) -> str:
        """The far side's stderr so far (last 64 KiB) and its exit status if it ended."""
        ...
