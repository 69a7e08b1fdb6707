"""An interrupted apply finished by a later session is audited like any apply.

The apply's change was described, and kept in STATE/pending.json, before it began
(gated.py); the session that finishes it (a push's `serve`, an import, a receipt) appends
the audit entry from that description, marked `"resumed": true`, so that a tree which
changed is never missing from the log, whichever session completed the change.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from syncd.apply.engine import ApplyResult
from syncd.apply.resume import Resumed, resume_or_abandon
from syncd.gate import audit
from syncd.gate.gated import clear_pending, pending_path
from syncd.state import StateDir

log = logging.getLogger("syncd.gate")
_ORIGIN = ("source", "export", "signer", "key", "client")
_MAX_PENDING = 64 << 20  # bytes of pending.json read (the far side's own file)


def resume_audited(root: Path, state: StateDir) -> Resumed:
    """resume_or_abandon, and an audit entry for the apply it finished."""
    resumed = resume_or_abandon(root, state)
    if resumed.result is not None:
        try:
            audit.append_json(state, _entry(state, resumed.result))
        except audit.AuditError as exc:
            log.warning("%s (the finished apply is not in the audit log)", exc)
        clear_pending(state)
    return resumed


def _entry(state: StateDir, result: ApplyResult) -> dict[str, object]:
    pending = _pending(state)
    counts = pending.get("counts")
    files = counts if isinstance(counts, dict) else {}
    images = pending.get("images")
    return {
        **{key: pending.get(key) for key in _ORIGIN},
        "status": "applied",
        "resumed": True,
        "problem": None if pending else "the change was not described (no pending.json)",
        "before": pending.get("before"),
        "target": pending.get("target") or result.target.hex(),
        "after": result.root.hex(),
        "files": {k[6:]: v for k, v in files.items() if str(k).startswith("files_")},
        "images": [
            {
                "change": i.get("change"),
                "registry": i.get("registry"),
                "image": f"{i.get('repository')}:{i.get('tag')}",
                "digest": i.get("digest"),
                "previous": i.get("previous"),
                "platforms": i.get("platforms"),
            }
            for i in (images if isinstance(images, list) else [])
            if isinstance(i, dict)
        ],
        "inspection": None,
    }


def _pending(state: StateDir) -> dict[str, object]:
    try:
        with pending_path(state).open("rb") as stream:
            value = json.loads(stream.read(_MAX_PENDING))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
