"""Hostile campaign, texts shown to people: nothing a far side or a medium wrote reaches a
terminal or a log raw (issue 14, item 6; issue 13, item 7).

Each case is (name, setup, run) for hostile.py's Case; every run judges what a person
would see, stdout and stderr of a real syncd process, and fails on any raw control
character (C0 but newline and tab, DEL, C1), bidi control or U+FFFD-less garbage:
- a far side (a scripted `serve` stand-in, as a compromised far host would run) that
  answers HELLO with an ERROR full of terminal escapes and writes escapes and bytes that
  are not UTF-8 on its stderr: `syncd push` must show both, escaped, and `--json` must
  still print one valid JSON object;
- a volume whose tree names carry escapes and make a path over PATH_MAX: `syncd import`
  refuses it, naming the path, escaped;
- the same tree sent to a real `syncd serve`: its own log (the far operator's journal)
  names the path, escaped.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from protocol.codec import pack
from protocol.errors import ErrorCode
from protocol.framing import HEADER
from protocol.messages import Error, encode_message
from reliability import hostile_cases as hc
from reliability.serve_driver import Script, converse
from tests.pushutil import PROJECT, syncd_env

Setup = Callable[[Path, Path], None]
Run = Callable[[Path, Path], str]

# What must never reach a person raw: C0 but \n and \t, DEL, C1, bidi and format controls.
_RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def raw_control(text: str) -> str:
    """The first raw control character in `text`, described ("" when there is none)."""
    found = _RAW.search(text)
    if found is None:
        return ""
    at = found.start()
    return f"raw {found.group()!r} at {at}: ...{text[max(0, at - 30) : at + 10]!r}"


def _syncd(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncd", *map(str, args)],
        capture_output=True,
        text=True,
        env=syncd_env(),
        timeout=120,
        check=False,
    )


# -- a far side that talks back ------------------------------------------------------------

FAKE_FAR = """import sys
sys.path.insert(0, {project!r})
sys.stderr.buffer.write({stderr!r})
sys.stderr.flush()
sys.stdout.buffer.write({frame!r})
sys.stdout.flush()
sys.exit(2)
"""


def _fake_far(folder: Path) -> Path:
    body = pack(encode_message(Error(int(ErrorCode.REMOTE), f"hostile {hc.TERMINAL_TRICKS}")))
    stderr = f"far: {hc.TERMINAL_TRICKS} ".encode() + hc.NOT_UTF8 + b"\n"
    script = folder / "hostile-far.py"
    script.write_text(
        FAKE_FAR.format(project=str(PROJECT), stderr=stderr, frame=HEADER.pack(len(body)) + body)
    )
    return script


def far_side_words() -> tuple[str, Setup, Run]:
    def setup(far: Path, outside: Path) -> None:
        src = far.parent / "src"
        src.mkdir()
        (src / "a").write_text("a\n")
        _fake_far(far.parent)

    def run(far: Path, outside: Path) -> str:
        remote = f"{shlex.quote(sys.executable)} {shlex.quote(str(far.parent / 'hostile-far.py'))}"
        with tempfile.TemporaryDirectory(prefix="syncd-hostile-state-") as state:
            shown = _syncd(
                "push", far.parent / "src", far, "--remote-syncd", remote, "--state", state
            )
            as_json = _syncd(
                "push",
                far.parent / "src",
                far,
                "--remote-syncd",
                remote,
                "--state",
                state,
                "--json",
            )
        problem = _judge(shown, "\\x1b]0;owned\\x07")
        if problem:
            return problem
        if "\\xff" not in shown.stderr and "\ufffd" not in shown.stderr:
            return f"the far side's bytes that are not UTF-8 are not shown: {shown.stderr[-300:]}"
        try:
            message = json.loads(as_json.stdout)["error"]
        except (ValueError, KeyError, TypeError):
            return f"--json printed no JSON error object: {as_json.stdout[-300:]!r}"
        return raw_control(as_json.stdout) or ("" if "hostile" in message else "no error text")

    return "a far side's ERROR and stderr full of escapes, shown by push", setup, run


def _judge(done: subprocess.CompletedProcess[str], expected: str) -> str:
    if "Traceback" in done.stderr:
        return f"traceback: {done.stderr[-400:]}"
    if done.returncode != 2:
        return f"exit {done.returncode}, expected 2: {done.stderr[-300:]}"
    problem = raw_control(done.stdout) or raw_control(done.stderr)
    if problem:
        return problem
    if expected not in done.stderr:
        return f"the escaped text {expected!r} is not shown: {done.stderr[-400:]}"
    return ""


# -- names from a medium and from a client -------------------------------------------------


def media_names() -> tuple[str, Setup, Run]:
    chain = hc.escape_names(17, hc.media_blob())
    index = hc.index_with_trees(next(iter(chain)), chain)

    def setup(far: Path, outside: Path) -> None:
        volume = far.parent / "media" / "20260101T000000Z-0a1b2c3d" / "vol-0001"
        volume.mkdir(parents=True)
        (volume / "index").write_bytes(index)
        (volume / "pack-0001").write_bytes(hc.sound_pack())

    def run(far: Path, outside: Path) -> str:
        done = _syncd("import", far.parent / "media", "--root", far)
        return _judge(done, "\\x1b[2J\\x07\\u202e")

    return "a volume's tree names with escapes, over PATH_MAX, refused by import", setup, run


def serve_log() -> tuple[str, Setup, Run]:
    chain = hc.escape_names(17)
    script = Script(next(iter(chain)), chain, {hc.PIECE: hc.DATA})

    def run(far: Path, outside: Path) -> str:
        reply = converse(far, script)
        if "Traceback" in reply.stderr:
            return f"traceback on the server's stderr: {reply.stderr[-400:]}"
        if reply.error is None or reply.exit_code == 0:
            return f"the server did not refuse the path: {reply.events[:3]}"
        problem = raw_control(reply.stderr)
        if problem:
            return f"serve's log: {problem}"
        return "" if "\\x1b[2J" in reply.stderr else f"serve's log: {reply.stderr[-300:]}"

    return "a client's tree names with escapes, in serve's own log", lambda far, out: None, run


CASES = (far_side_words, media_names, serve_log)
