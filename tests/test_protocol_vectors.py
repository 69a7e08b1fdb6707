"""Golden frames (protocol/vectors/frames.json) replayed byte for byte, both ways."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from protocol.codec import pack, unpack
from protocol.connection import Connection, Phase, Role, TreesReceived
from protocol.errors import ProtocolError
from protocol.framing import FrameDecoder
from protocol.limits import DEFAULT_LIMITS
from protocol.messages import Error, Hello, Message, Trees, decode_message, encode_message
from tests.vectorgen import describe, drain

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent.parent / "protocol" / "vectors" / "frames.json").read_text()
)
CONVERSATION: list[dict[str, Any]] = VECTORS["conversation"]
CONVERSATIONS: dict[str, list[dict[str, Any]]] = {
    "push": CONVERSATION,
    "report": VECTORS["report_conversation"],
}
FRAMES = [(name, item) for name, frames in CONVERSATIONS.items() for item in frames]


def decode_frame(frame: bytes) -> Message:
    decoder = FrameDecoder(DEFAULT_LIMITS)
    decoder.feed(frame)
    return decode_message(decoder.next_payload(), DEFAULT_LIMITS)


@pytest.mark.parametrize(
    ("name", "item"), FRAMES, ids=[f"{n}-{f['message']['type']}" for n, f in FRAMES]
)
def test_each_frame_decodes_and_reencodes_to_the_same_bytes(
    name: str, item: dict[str, Any]
) -> None:
    frame = bytes.fromhex(item["frame"])
    message = decode_frame(frame)
    assert describe(message) == item["message"]
    assert unpack(frame[4:]) == encode_message(message)
    assert pack(encode_message(message)) == frame[4:]


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_whole_conversation_fed_byte_by_byte(name: str) -> None:
    """Each side is a real Connection fed one byte at a time; on its turn it reads what it
    received and sends the recorded message, which must give exactly the recorded bytes."""
    sides = {"client": Connection(Role.CLIENT), "server": Connection(Role.SERVER)}
    seen: dict[str, list[object]] = {"client": [], "server": []}
    expected: dict[str, list[object]] = {"client": [], "server": []}
    for item in CONVERSATIONS[name]:
        side, other = item["from"], "server" if item["from"] == "client" else "client"
        seen[side] += drain(sides[side])
        frame = bytes.fromhex(item["frame"])
        message = decode_frame(frame)
        assert sides[side].send(message) == frame
        for i in range(len(frame)):
            sides[other].receive_data(frame[i : i + 1])
        expected[other].append(message)
    seen["server"] += drain(sides["server"])
    for side, connection in sides.items():
        assert [_comparable(e) for e in seen[side]] == [_comparable(m) for m in expected[side]]
        assert connection.phase is Phase.CLOSED


def test_partial_frames_yield_no_event() -> None:
    server = Connection(Role.SERVER)
    frame = bytes.fromhex(CONVERSATION[0]["frame"])
    for i in range(len(frame) - 1):
        server.receive_data(frame[i : i + 1])
        assert drain(server) == []
    server.receive_data(frame[-1:])
    assert [type(e) for e in drain(server)] == [Hello]


def _comparable(event: object) -> object:
    if isinstance(event, TreesReceived):
        return [(t.id, t.record) for t in event.trees]
    if isinstance(event, Trees):
        return list(event.records)
    return event


@pytest.mark.parametrize("item", VECTORS["hostile_after_hello"], ids=lambda i: i["name"])
def test_hostile_frames_are_refused_with_their_code(item: dict[str, Any]) -> None:
    server = Connection(Role.SERVER)
    server.receive_data(bytes.fromhex(CONVERSATION[0]["frame"]))
    assert isinstance(server.next_event(), Hello)
    server.receive_data(bytes.fromhex(item["frame"]))
    with pytest.raises(ProtocolError) as info:
        server.next_event()
    assert int(info.value.code) == item["code"]
    server.send(Error(item["code"], "why"))  # one ERROR may still say why (phase ERROR)
    assert server.phase is Phase.CLOSED
