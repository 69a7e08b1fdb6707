"""Text from elsewhere, made safe to show a person: control characters escaped.

Much of what syncd shows comes from the other side or from media: the far side's error
texts, its post-apply command's output, its REPORT summary, names of the tree and of
volumes, export ids. A terminal acts on some of those bytes (ESC starts a control
sequence: colours, a window title set by OSC `ESC ] 0 ; ... BEL`, cursor moves that
rewrite earlier lines), and so do some log viewers; bidi overrides reorder what is
shown; a lone surrogate (a name that is not UTF-8, decoded with surrogateescape) makes
printing raise. So every sink that shows such text passes it through here:

- `escape(text)`: one line, every control character (C0, DEL, C1, line and paragraph
  separators), bidi control and invisible format character, and every lone surrogate
  written as a visible escape (`\\x1b`, `\\n`, `\\u202e`); the rest is left as it is,
  backslashes included (a literal `\\x1b` typed by someone is harmless text);
- `escape_lines(text)`: the same, newlines (and tabs) kept, for multi-line output;
- `SafeStream`: a text stream that escapes everything written to it but newlines and
  tabs. The CLI puts it in front of stdout and stderr (`guard_std_streams`), so no
  message, however it was built, reaches the terminal raw.

The log formatter (syncd/daemon/logs.py), the CLI's error printer, `syncd status`, and
the progress bar's label use `escape` on their fields; the stream guard is the backstop.
"""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import IO, Any

# C0 controls, DEL and C1; U+2028/2029; bidi marks, embeddings, overrides and isolates
# (U+061C, 200E-200F, 202A-202E, 2066-2069); zero-width and invisible format characters
# (U+200B-200D, 2060-2064, FEFF); lone surrogates (U+D800-DFFF).
_UNSAFE = (
    "\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e"
    "\u2060-\u2064\u2066-\u2069\ufeff\ud800-\udfff"
)
_ALL = re.compile(f"[{_UNSAFE}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _shown(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def escape(text: object) -> str:
    """`text` as one line, every unsafe character shown as an escape."""
    return _ALL.sub(_shown, str(text))


def _shown_but_lines(match: re.Match[str]) -> str:
    char = match.group()
    return char if char in "\n\t" else _shown(match)


def escape_lines(text: object) -> str:
    """`text` with every unsafe character escaped but newlines and tabs."""
    return _ALL.sub(_shown_but_lines, str(text))


class SafeStream(io.TextIOBase):
    """A text stream in front of another: what is written is `escape_lines`d first.

    Everything else (fileno, isatty, encoding, flush) is the inner stream's, so that
    a caller testing for a terminal or a journal stream sees the real one.
    """

    def __init__(self, inner: IO[str]) -> None:
        super().__init__()
        self.inner = inner

    def write(self, text: str) -> int:
        self.inner.write(escape_lines(text))
        return len(text)

    def flush(self) -> None:
        self.inner.flush()

    def fileno(self) -> int:
        return self.inner.fileno()

    def isatty(self) -> bool:
        return self.inner.isatty()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self.inner, "encoding", "utf-8"))

    @property
    def buffer(self) -> Any:
        """The binary stream beneath (for protocol bytes, never for text to show)."""
        return self.inner.buffer  # type: ignore[attr-defined]


class EscapingFormatter(logging.Formatter):
    """A log formatter whose every record is one line, escaped (serve's stderr log,
    which the far operator reads in the journal or a terminal)."""

    def format(self, record: logging.LogRecord) -> str:
        return escape(super().format(record))


def raw(stream: IO[str]) -> IO[str]:
    """The stream behind a SafeStream (the progress bar draws with `\\r` on it itself)."""
    return stream.inner if isinstance(stream, SafeStream) else stream


@contextmanager
def guard_std_streams() -> Iterator[None]:
    """Put a SafeStream in front of sys.stdout and sys.stderr for the duration."""
    saved = sys.stdout, sys.stderr
    sys.stdout = SafeStream(saved[0])
    sys.stderr = SafeStream(saved[1])
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with suppress(OSError, ValueError):
                stream.flush()
        sys.stdout, sys.stderr = saved
