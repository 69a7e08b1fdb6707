"""A bounded buffer for the far side's stderr, and the wording of its exit status."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable

STDERR_LIMIT = 64 * 1024


class TailBuffer:
    """Keeps the last `limit` bytes written to it, and how many earlier bytes it dropped."""

    def __init__(self, limit: int = STDERR_LIMIT) -> None:
        self._limit = limit
        self._buf = bytearray()
        self.dropped = 0

    def add(self, data: bytes) -> None:
        self._buf += data
        excess = len(self._buf) - self._limit
        if excess > 0:
            del self._buf[:excess]
            self.dropped += excess

    def text(self) -> str:
        text = self._buf.decode("utf-8", errors="replace")
        if self.dropped:
            text = f"[... {self.dropped} earlier bytes of stderr omitted]\n{text}"
        return text

    async def pump(self, read: Callable[[int], Awaitable[bytes]]) -> None:
        """Read until EOF (or until the stream breaks) into the buffer."""
        try:
            while data := await read(65536):
                self.add(data)
        except (OSError, EOFError):  # a broken stream simply ends the capture
            return


def describe_exit(returncode: int | None) -> str:
    """`returncode` as asyncio reports it: negative for 'killed by signal'."""
    if returncode is None:
        return "the far side has not exited"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"the far side was killed by {name}"
    return f"the far side exited with status {returncode}"


def format_diagnostics(stderr: TailBuffer, status: str | None) -> str:
    """The status line (if the far side ended) first, then its stderr, trailing space
    trimmed, so that the last line is the last thing the far side said."""
    parts = []
    if status:
        parts.append(f"({status})")
    text = stderr.text().rstrip()
    if text:
        parts.append(text)
    return "\n".join(parts)
