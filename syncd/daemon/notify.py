"""systemd's notification protocol (sd_notify), written out: one datagram per message.

`NOTIFY_SOCKET` names an AF_UNIX datagram socket, a path or, with a leading '@', one in
the abstract namespace. Each message is newline-separated KEY=VALUE lines (READY=1,
STATUS=..., WATCHDOG=1, RELOADING=1, STOPPING=1). Outside systemd there is no socket and
every call does nothing. A library would add a dependency for these few lines.

The watchdog: systemd sets WATCHDOG_USEC (and WATCHDOG_PID, the process meant) when the
unit has WatchdogSec=; the daemon pings at half that interval from its event loop, so a
loop that stops turning stops the pings and systemd restarts the service.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping


class Notifier:
    def __init__(self, address: str | None) -> None:
        self._address = address
        self._sock: socket.socket | None = None
        self.failed: str | None = None  # why the last send failed, for one log line

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """The socket systemd gave us (None outside systemd). Call `forget_environment`
        afterwards so that child processes do not talk to systemd in our name."""
        text = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
        if not text or text[0] not in "/@":
            return cls(None)
        return cls("\0" + text[1:] if text.startswith("@") else text)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, **fields: str) -> bool:
        """Send KEY=VALUE lines in one datagram; False (and `failed` set) if it could not."""
        if self._address is None:
            return False
        message = "\n".join(f"{key}={_one_line(value)}" for key, value in fields.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode(), self._address)
        except OSError as exc:
            self.failed = f"cannot notify systemd at {self._address!r}: {exc.strerror or exc}"
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY="1", STATUS=status)

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG="1")

    def reloading(self) -> bool:
        return self.send(RELOADING="1", STATUS="reloading the configuration")

    def stopping(self) -> bool:
        return self.send(STOPPING="1", STATUS="stopping")

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between the watchdog's deadlines, if systemd asked this process for pings."""
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 1e6


def forget_environment() -> None:
    """What sd_notify's unset_environment does: children must not inherit these."""
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        os.environ.pop(name, None)


def _one_line(value: str) -> str:
    return " ".join(value.split())
