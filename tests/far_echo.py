"""A stand-in for the far side's `syncd`, for transport tests: it moves bytes, nothing else.

Invoked as `far_echo.py serve --stdio --root PATH` (locally, over SSH, or as a forced
command). It:

1. records its argv (without the program), $SSH_ORIGINAL_COMMAND and its pid as JSON in
   `PATH/far_echo.argv.json`;
2. reads `PATH/far_echo.mode.json` if present: {"stderr": text written to stderr first,
   "stderr_bytes": that many more bytes of stderr ("0123456789" repeated, then "END"),
   "echo": false to skip echoing, "linger": seconds to wait after EOF, "exit": the exit
   code};
3. echoes stdin to stdout through `syncd.transport.stdio` until EOF, then exits.

Anything unexpected is reported on stderr with exit status 99.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from syncd.transport.stdio import open_stdio

ARGV_FILE = "far_echo.argv.json"
MODE_FILE = "far_echo.mode.json"


async def echo() -> None:
    channel = await open_stdio()
    try:
        while data := await channel.read():
            await channel.write(data)
    finally:
        await channel.close()


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[:3] != ["serve", "--stdio", "--root"]:
        print(f"far_echo: unexpected arguments {argv!r}", file=sys.stderr)
        return 99
    root = Path(argv[3])
    record = {
        "argv": argv,
        "ssh_original_command": os.environ.get("SSH_ORIGINAL_COMMAND"),
        "pid": os.getpid(),
    }
    (root / ARGV_FILE).write_text(json.dumps(record))
    mode_file = root / MODE_FILE
    mode = json.loads(mode_file.read_text()) if mode_file.exists() else {}
    err = sys.stderr.buffer
    err.write(str(mode.get("stderr", "")).encode())
    if count := int(mode.get("stderr_bytes", 0)):
        err.write((b"0123456789" * (count // 10 + 1))[:count] + b"END")
    err.flush()
    if mode.get("echo", True):
        asyncio.run(echo())
    time.sleep(float(mode.get("linger", 0)))
    return int(mode.get("exit", 0))


def run() -> int:
    try:
        return main(sys.argv[1:])
    except Exception as exc:  # report anything to the test through stderr
        print(f"far_echo: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 99


if __name__ == "__main__":
    raise SystemExit(run())
