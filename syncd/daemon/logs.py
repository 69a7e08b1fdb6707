"""The daemon's log: one event per line on stderr, with structured fields.

`logfmt` (the default) gives `event=push-done site=dc1 snapshot=ab12... bytes=1234`;
`json` gives one JSON object per line. Values with spaces, quotes or `=` are quoted, and
every control character (newlines included) is escaped (syncd/safetext.py), so that one
event is always one line and nothing the far side wrote acts on a terminal or a viewer.

Under systemd, stderr is a journal stream (JOURNAL_STREAM names its device and inode):
then lines carry no timestamp (the journal adds its own) and start with the syslog
priority in angle brackets (`<3>` error, `<4>` warning, `<6>` info), which journald
turns into the entry's priority. Elsewhere each line starts with a UTC timestamp.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import IO

from syncd.safetext import escape

_PRIORITY = {"error": 3, "warning": 4, "info": 6, "debug": 7}
_PLAIN = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:@+,")


class EventLog:
    def __init__(
        self, stream: IO[str] | None = None, fmt: str = "logfmt", journal: bool | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.fmt = fmt
        self.journal = on_journal(self.stream) if journal is None else journal

    def info(self, event: str, **fields: object) -> None:
        self.write("info", event, fields)

    def warn(self, event: str, **fields: object) -> None:
        self.write("warning", event, fields)

    def err(self, event: str, **fields: object) -> None:
        self.write("error", event, fields)

    def write(self, level: str, event: str, fields: dict[str, object]) -> None:
        shown = {key: value for key, value in fields.items() if value is not None}
        line = (
            self._json(level, event, shown)
            if self.fmt == "json"
            else self._logfmt(level, event, shown)
        )
        if self.journal:
            line = f"<{_PRIORITY[level]}>{line}"
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed stderr must not take the daemon down

    def _logfmt(self, level: str, event: str, fields: dict[str, object]) -> str:
        head = [] if self.journal else [f"ts={_timestamp()}"]
        head += [f"level={level}", f"event={event}"]
        return " ".join(head + [f"{key}={_logfmt_value(value)}" for key, value in fields.items()])

    def _json(self, level: str, event: str, fields: dict[str, object]) -> str:
        record: dict[str, object] = {} if self.journal else {"ts": _timestamp()}
        record.update(level=level, event=event)
        record.update((key, _json_value(value)) for key, value in fields.items())
        return json.dumps(record, separators=(",", ":"))


def on_journal(stream: IO[str]) -> bool:
    """True when `stream` is the journal stream systemd connected us to."""
    spec = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = spec.partition(":")
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return bool(spec) and f"{info.st_dev}" == device and f"{info.st_ino}" == inode


def _timestamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def _logfmt_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = f"{value:.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    if text and all(char in _PLAIN for char in text):
        return text
    # Backslashes and quotes first; then every control character (newlines too) becomes
    # a visible escape: texts from the far side or from media reach the journal here.
    return '"' + escape(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def _json_value(value: object) -> object:
    if value is None or isinstance(value, bool | int | float):
        return value
    return escape(value)
