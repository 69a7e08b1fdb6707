"""Build protocol/vectors/frames.json: golden frames of protocol v1.

Run `python -m tests.vectorgen` after a deliberate protocol change (and bump the version
if old peers would misread it). The tests replay the file byte for byte; they never
regenerate it.
"""

from __future__ import annotations

import json
from pathlib import Path

import blake3

from protocol.connection import MIN_PEER_FRAME, NEED_DATA, Connection, Phase, Role
from protocol.framing import HEADER
from protocol.messages import (
    Blobs,
    Bye,
    GetTrees,
    Hello,
    Message,
    Offer,
    Plan,
    Report,
    Result,
    State,
    Trees,
    Want,
)
from protocol.tree import DirNode, FileNode, LinkNode, encode_tree, tree_id

OUT = Path(__file__).resolve().parent.parent / "protocol" / "vectors" / "frames.json"


def describe(value: object) -> object:
    """JSON-friendly form: bytes as hex, tuples as lists, dataclasses by field."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple | list):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {k: describe(v) for k, v in value.items()}
    if hasattr(value, "__dataclass_fields__"):
        return {
            "type": type(value).__name__,
            **{k: describe(getattr(value, k)) for k in value.__dataclass_fields__},
        }
    return value


def conversation() -> list[tuple[str, Message]]:
    """A small push: one file in a subdirectory and a symlink, onto an empty far side."""
    data = b"sha256:" + b"0" * 64
    piece = blake3.blake3(data).digest()
    sub = encode_tree(
        [FileNode("link", 0o644, len(data), 1_767_225_600_000_000_000, ((piece, len(data)),))]
    )
    root = encode_tree([LinkNode("latest", "repo/link"), DirNode("repo", 0o755, tree_id(sub))])
    empty = tree_id(encode_tree([]))
    params = {"max_frame": MIN_PEER_FRAME + 65536}
    return [
        ("client", Hello((1, 1), "syncd 0.1.0", (), {**params, "root": "/srv/mirror"})),
        ("client", Offer(tree_id(root), 1, len(data), True, True)),
        ("server", Hello((1, 1), "syncd 0.1.0", (), {**params, "root": "/srv/mirror"})),
        ("server", State(empty, 0, 0, 0, 0)),
        ("server", GetTrees((tree_id(root),))),
        ("client", Trees(((tree_id(root), root),))),
        ("server", GetTrees((tree_id(sub),))),
        ("client", Trees(((tree_id(sub), sub),))),
        ("server", Plan(1, len(data))),
        ("server", Want(((piece, len(data)),))),
        ("client", Blobs(((piece, data),))),
        ("server", Result("applied", tree_id(root), 1, 0)),
        ("client", Bye()),
    ]


def report_conversation() -> list[tuple[str, Message]]:
    """A push that finds the far side up to date, with the client asking for a parity
    check and the far side's own post-apply command: RESULT, then REPORT, then BYE."""
    root = tree_id(encode_tree([]))
    params: dict[str, str | int | bool] = {
        "max_frame": MIN_PEER_FRAME + 65536,
        "root": "/srv/mirror",
    }
    asked: dict[str, str | int | bool] = {**params, "verify": True, "post_apply": ""}
    summary = "OK: 2 images ok, 0 broken; 0 errors, 0 warnings"
    return [
        ("client", Hello((1, 1), "syncd 0.1.0", (), asked)),
        ("client", Offer(root, 0, 0, True, True)),
        ("server", Hello((1, 1), "syncd 0.1.0", ("report",), params)),
        ("server", State(root, 0, 0, 0, 0)),
        ("server", Result("up-to-date", root, 0, 0)),
        ("server", Report(root, "ok", summary, "ok", 0, "uploaded 2 images\n")),
        ("client", Bye()),
    ]


def hostile() -> list[dict[str, object]]:
    """Frames a server must refuse right after the client's HELLO, with the error code."""
    oversize = HEADER.pack(MIN_PEER_FRAME + 65536 + 1)
    return [
        {"name": "frame over the limit", "frame": oversize.hex(), "code": 2},
        {"name": "not msgpack", "frame": (HEADER.pack(1) + b"\xc1").hex(), "code": 1},
        {"name": "unknown type", "frame": (HEADER.pack(2) + b"\x91\x63").hex(), "code": 1},
        {"name": "BYE before OFFER", "frame": (HEADER.pack(2) + b"\x91\x0b").hex(), "code": 6},
        {"name": "extension type", "frame": (HEADER.pack(3) + b"\xd4\x05\x00").hex(), "code": 1},
    ]


def drain(connection: Connection) -> list[object]:
    """Events a side has received so far; a side reads only when it is its turn to act."""
    events: list[object] = []
    while (event := connection.next_event()) is not NEED_DATA:
        events.append(event)
        if connection.phase is Phase.CLOSED:
            break
    return events


def frames_of(messages: list[tuple[str, Message]]) -> list[dict[str, object]]:
    sides = {"client": Connection(Role.CLIENT), "server": Connection(Role.SERVER)}
    frames = []
    for side, message in messages:
        drain(sides[side])
        frame = sides[side].send(message)
        sides["server" if side == "client" else "client"].receive_data(frame)
        frames.append({"from": side, "message": describe(message), "frame": frame.hex()})
    drain(sides["server"])
    return frames


def build() -> dict[str, object]:
    return {
        "version": 1,
        "conversation": frames_of(conversation()),
        "report_conversation": frames_of(report_conversation()),
        "hostile_after_hello": hostile(),
    }


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {OUT}")
