"""The file read last, kept open: a large file's pieces are asked for one after another.

Only one: readers run several at once, and a batch of hundreds of small files each kept
open would take thousands of descriptors (a million-file push ran out of them).
"""

from __future__ import annotations

import os
from collections.abc import Callable


class LastOpened:
    """Descriptors by path through `open_file`, keeping only the last one open."""

    def __init__(self, open_file: Callable[[str], int]) -> None:
        self._open_file = open_file
        self._open: tuple[str, int] | None = None

    def fd(self, path: str) -> int:
        if self._open is not None and self._open[0] == path:
            return self._open[1]
        self.close()
        fd = self._open_file(path)
        self._open = (path, fd)
        return fd

    def close(self) -> None:
        if self._open is not None:
            os.close(self._open[1])
            self._open = None
