"""What `--json` prints: one object per run, each with `"format": 1` (docs/JSON.md).

`document(command, fields)` is a command's summary; `error_object` the object printed,
also on stdout, when a command fails, so that a script reading stdout always gets one
object and can tell a failure by `"error"` without parsing stderr. The exit status is
the same as without --json.
"""

from __future__ import annotations

import json

FORMAT = 1


def document(command: str, fields: dict[str, object]) -> dict[str, object]:
    """`fields` with the format version and the command's name first."""
    return {"format": FORMAT, "command": command, **fields}


def error_json(command: str, message: str, exit_code: int) -> str:
    return dumps(command, {"error": message, "exit_code": exit_code})


def dumps(command: str, fields: dict[str, object], *, indent: int | None = None) -> str:
    return json.dumps(document(command, fields), indent=indent)
