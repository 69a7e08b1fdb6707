"""A link that drops: a relay between a push and its far `syncd serve`, for the crash
campaign's link drops.

    python -m reliability.linkrelay --record FILE [--drop-at N] [--mode eof|hup|sshd] -- CMD...

It starts CMD (the far side: `python -m syncd serve ...`) and relays its own stdin to
CMD's stdin and CMD's stdout to its own stdout, counting what goes to the far side. Once
N bytes have gone that way (exactly N: the last frame is cut where it falls, mid-blob as
a rule), the link drops:

- `eof`: the far side's input ends and its output is no longer read (the network gone,
  the other end closed);
- `hup`: the same, and the far side gets SIGHUP first (sshd's session ended with it);
- `sshd`: the sshd session process above this one is killed (SIGKILL), as an admin or
  the OOM killer would, then as `eof`.

It waits for the far side to exit (so the next run does not meet its lock) and writes
FILE: a JSON object with `forwarded` (bytes to the far side), `whole_blob_bytes` (bytes
of the blobs that reached it whole, counted by decoding the BLOBS frames it passed on),
`cut_blob_bytes` (bytes of the blob cut by the drop that did reach it) and `dropped`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from protocol.codec import unpack
from protocol.errors import ProtocolError
from protocol.framing import HEADER
from protocol.limits import DEFAULT_LIMITS
from protocol.messages import MsgType
from protocol.salvage import complete_blobs, cut_entry

CHUNK = 64 << 10


@dataclass
class Count:
    """Client-to-server bytes, parsed as frames while they pass."""

    forwarded: int = 0
    whole_blob_bytes: int = 0
    frame: bytearray | None = None  # the frame being passed on (header included)

    def feed(self, data: bytes) -> None:
        self.forwarded += len(data)
        frame = self.frame if self.frame is not None else bytearray()
        frame += data
        while len(frame) >= HEADER.size:
            (length,) = HEADER.unpack_from(frame)
            end = HEADER.size + length
            if len(frame) < end:
                break
            self._whole(bytes(frame[HEADER.size : end]))
            del frame[:end]
        self.frame = frame

    def _whole(self, payload: bytes) -> None:
        try:
            message = unpack(payload, DEFAULT_LIMITS)
        except ProtocolError:
            return
        if isinstance(message, list) and message and message[0] == int(MsgType.BLOBS):
            entries = message[1] if len(message) > 1 and isinstance(message[1], list) else []
            self.whole_blob_bytes += sum(len(e[1]) for e in entries if len(e) == 2)

    def cut(self) -> tuple[int, int]:
        """(whole blob bytes, cut blob bytes) of the frame the drop cut."""
        frame = bytes(self.frame or b"")
        if len(frame) <= HEADER.size:
            return 0, 0
        payload = frame[HEADER.size :]
        whole = sum(len(data) for _, data in complete_blobs(payload, DEFAULT_LIMITS))
        cut = cut_entry(payload, DEFAULT_LIMITS)
        return whole, len(cut[1]) if cut else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability.linkrelay")
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--drop-at", type=int, default=-1, help="bytes to the far side")
    parser.add_argument("--mode", choices=("eof", "hup", "sshd"), default="eof")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    count = Count()
    dropped = threading.Event()
    back = threading.Thread(target=_copy_back, args=(child.stdout, dropped), daemon=True)
    back.start()
    _copy_forward(child.stdin, count, args.drop_at, dropped)
    if dropped.is_set():
        if args.mode == "hup":
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGHUP)
        elif args.mode == "sshd":
            _kill_sshd_session()
    with contextlib.suppress(OSError):
        child.stdin.close()
    if dropped.is_set():
        _hang_up_near_side()
    child.wait()
    whole, cut = count.cut() if dropped.is_set() else (0, 0)
    record = {
        "forwarded": count.forwarded,
        "whole_blob_bytes": count.whole_blob_bytes + whole,
        "cut_blob_bytes": cut,
        "dropped": dropped.is_set(),
        "far_exit": child.returncode,
    }
    # Whole or not at all: the campaign waits for this file to appear.
    partial = args.record.with_name(args.record.name + ".part")
    partial.write_text(json.dumps(record))
    partial.replace(args.record)
    return 0


def _hang_up_near_side() -> None:
    """Our stdin and stdout become /dev/null: the near side's pipes break, and the copy
    back writes nowhere (never into a file that reuses descriptor 1)."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)


def _copy_forward(sink: IO[bytes], count: Count, drop_at: int, dropped: threading.Event) -> None:
    while True:
        data = os.read(0, CHUNK)
        if not data:
            return
        if drop_at >= 0 and count.forwarded + len(data) >= drop_at:
            data = data[: drop_at - count.forwarded]
            dropped.set()
        try:
            sink.write(data)
            sink.flush()
        except OSError:
            return
        count.feed(data)
        if dropped.is_set():
            return


def _copy_back(source: IO[bytes], dropped: threading.Event) -> None:
    while not dropped.is_set():
        data = os.read(source.fileno(), CHUNK)
        if not data:
            return
        try:
            os.write(1, data)
        except OSError:
            return


def _kill_sshd_session() -> None:
    """SIGKILL the nearest sshd process above this one."""
    pid = os.getppid()
    while pid > 1:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        if comm.startswith("sshd"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            return
        pid = int(stat.rsplit(")", 1)[1].split()[1])


if __name__ == "__main__":
    sys.exit(main())
