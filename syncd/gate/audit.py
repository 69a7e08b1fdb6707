"""The far side's audit log: `STATE/audit.jsonl` (ROOT/.syncd/audit.jsonl by default).

One JSON object per line, one line per apply or refused apply (an import or a push):
when, where from (export id and signer, or the pushing key and address), the snapshot
before and after, the outcome, what the inspection command said, and what changed (the
counts of files and the image changes: repository:tag, digest before and after).

Append-only: each entry is one write(2) of one whole line to a file opened with
O_APPEND, then fsynced (the folder too when the file is new); nothing ever rewrites or
truncates it. A line cut short by a crash is the last line, and the reader reports it
instead of failing.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from protocol.manifest import ImageChange, TransferManifest
from syncd.apply.durable import fsync_dir
from syncd.errors import SyncdError
from syncd.gate.origin import Origin
from syncd.state import StateDir

LOG_NAME = "audit.jsonl"
FORMAT = 1
MAX_LINE = 64 << 20  # a reader's bound on one entry


class AuditError(SyncdError):
    """The audit log cannot be written or read."""


def log_path(state: StateDir) -> Path:
    return state.path / LOG_NAME


@dataclass(frozen=True, slots=True)
class Entry:
    origin: Origin
    status: str  # "applied", "refused" (inspection), "failed" (the apply raised)
    before: bytes
    after: bytes | None
    target: bytes
    files: dict[str, int]  # files added, changed, removed (TransferManifest.counts)
    images: tuple[ImageChange, ...]
    inspection: dict[str, object] | None = None
    problem: str = ""

    @classmethod
    def of(cls, origin: Origin, before: bytes, target: bytes, change: TransferManifest) -> Entry:
        """An "applied" entry for `change` (`after` to come), keeping its counts and
        images, not its paths."""
        files = {k[6:]: v for k, v in change.counts().items() if k.startswith("files_")}
        return cls(origin, "applied", before, None, target, files, change.images)

    def as_json(self) -> dict[str, object]:
        return {
            **self.origin.as_json(),
            "status": self.status,
            "problem": self.problem or None,
            "before": self.before.hex(),
            "target": self.target.hex(),
            "after": self.after.hex() if self.after is not None else None,
            "files": dict(self.files),
            "images": [
                {
                    "change": i.change.word,
                    "registry": i.registry,
                    "image": i.reference,
                    "digest": i.digest or None,
                    "previous": i.previous or None,
                    "platforms": list(i.platforms),
                }
                for i in self.images
            ],
            "inspection": self.inspection,
        }


def append(state: StateDir, entry: Entry) -> None:
    """Append one entry, durably."""
    append_json(state, entry.as_json())


def append_json(state: StateDir, fields: dict[str, object]) -> None:
    """Append one entry given as its JSON fields (`format` and `time` are set here)."""
    path = log_path(state)
    stamped = {"format": FORMAT, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    line = (json.dumps({**stamped, **fields}, separators=(",", ":")) + "\n").encode()
    try:
        created = not path.exists()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(path, flags, 0o640)
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(28, "short write to the audit log")
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(path.parent)
    except OSError as exc:
        raise AuditError(f"{path}: cannot append to the audit log: {exc.strerror}") from exc


def read_entries(state: StateDir) -> Iterator[tuple[int, dict[str, object] | None, str]]:
    """(line number, entry or None, problem) for each line of the log."""
    path = log_path(state)
    try:
        stream = path.open("rb")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise AuditError(f"{path}: cannot read the audit log: {exc.strerror}") from exc
    with stream:
        for number, raw in enumerate(_lines(stream), 1):
            try:
                value = json.loads(raw)
            except ValueError:
                yield number, None, "not a JSON object (cut short by a crash?)"
                continue
            if isinstance(value, dict) and value.get("format") == FORMAT:
                yield number, value, ""
            else:
                yield number, None, "not an audit entry of format 1"


def _lines(stream: BinaryIO) -> Iterator[bytes]:
    read = stream.readline
    while True:
        line: bytes = read(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE:
            yield b""  # reported as not JSON; skip the rest of it
            while line and not line.endswith(b"\n"):
                line = read(MAX_LINE + 1)
            continue
        yield line
