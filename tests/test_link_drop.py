"""A link that drops mid-blob (issue 14 item 10): what arrived is kept and only the rest
is sent again - the whole blobs of a frame cut short (protocol/salvage.py), and the
first bytes of the blob the cut fell in, completed by REST (SPEC.md 4, 8)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import blake3
import pytest

from protocol.connection import CAP_REST, Connection, Role
from protocol.errors import ProtocolError
from protocol.framing import HEADER
from protocol.limits import DEFAULT_LIMITS
from protocol.messages import Blobs, Hello, Message, Offer, Plan, Rest, State, Want
from protocol.salvage import complete_blobs, cut_entry
from reliability.farside import run_syncd
from reliability.linkdrop import calibrate, push_through
from tests.pushutil import snapshot_id

PARAMS: dict[str, str | int | bool] = {"max_frame": (16 << 20) + 65536}
ROOT = b"\x01" * 32


def blobs(*sizes: int) -> list[tuple[bytes, bytes]]:
    out = []
    for size in sizes:
        data = os.urandom(size)
        out.append((blake3.blake3(data).digest(), data))
    return out


def pair(*, rest: bool) -> tuple[Connection, Connection]:
    """A client and a server connection in the transfer phase."""
    client, server = Connection(Role.CLIENT), Connection(Role.SERVER)
    caps = (CAP_REST,) if rest else ()
    opening: list[Message] = [Hello((1, 1), "c", caps, PARAMS), Offer(ROOT, 1, 1, True, True)]
    for message in opening:
        server.receive_data(client.send(message))
        server.next_event()
    answer: list[Message] = [Hello((1, 1), "s", (), PARAMS), State(ROOT, 0, 0, 0, 0), Plan(1, 1)]
    for message in answer:
        client.receive_data(server.send(message))
        client.next_event()
    return client, server


def test_the_whole_entries_and_the_cut_one_of_a_cut_frame() -> None:
    three = blobs(1000, 70_000, 5000)
    payload = client_frame(three)[HEADER.size :]
    for cut in range(0, len(payload), 997):
        whole = complete_blobs(payload[:cut], DEFAULT_LIMITS)
        assert whole == three[: len(whole)]
        partial = cut_entry(payload[:cut], DEFAULT_LIMITS)
        if partial is not None:
            digest, data = partial
            index = len(whole)
            assert digest == three[index][0] and three[index][1].startswith(data)
    assert complete_blobs(b"\x92\x07", DEFAULT_LIMITS) == []  # not a BLOBS payload


def client_frame(entries: list[tuple[bytes, bytes]]) -> bytes:
    client, server = pair(rest=False)
    client.receive_data(server.send(Want(tuple((d, len(data)) for d, data in entries))))
    client.next_event()
    return client.send(Blobs(tuple(entries)))


def test_a_server_salvages_verified_blobs_and_the_first_bytes_of_the_cut_one() -> None:
    three = blobs(1000, 70_000, 5000)
    client, server = pair(rest=False)
    want = Want(tuple((d, len(data)) for d, data in three))
    client.receive_data(server.send(want))
    client.next_event()
    frame = client.send(Blobs(tuple(three)))
    server.receive_data(frame[: len(frame) - 2000])  # 3000 bytes into the last blob
    server.receive_data(b"")
    with pytest.raises(ProtocolError, match="closed"):
        server.next_event()
    whole, cut = server.salvage_blobs()
    assert whole == three[:2]
    assert cut is not None and cut == (three[2][0], three[2][1][:3000])
    assert server.blobs_due == 1


def test_rest_needs_the_capability_and_carries_the_rest() -> None:
    (digest, data), *_ = blobs(100_000)
    client, server = pair(rest=False)
    with pytest.raises(ProtocolError, match="rest"):
        server.send(Rest(((digest, len(data), 40_000),)))
    client, server = pair(rest=True)
    client.receive_data(server.send(Rest(((digest, len(data), 40_000),))))
    assert isinstance(client.next_event(), Rest)
    with pytest.raises(ProtocolError, match="not asked for"):
        client.send(Blobs(((digest, data),)))  # the whole blob is not what was asked
    client2, server2 = pair(rest=True)
    client2.receive_data(server2.send(Rest(((digest, len(data), 40_000),))))
    client2.next_event()
    server2.receive_data(client2.send(Blobs(((digest, data[40_000:]),))))
    event = server2.next_event()
    assert isinstance(event, Blobs) and event.blobs == ((digest, data[40_000:]),)
    assert server2.blobs_due == 0


def test_a_drop_inside_a_large_blob_keeps_its_first_bytes(tmp_path: Path) -> None:
    """A 6 MB file is one piece: a drop in its middle used to cost all of it again."""
    src, far = tmp_path / "src", tmp_path / "far"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(6_000_000))
    (src / "small.bin").write_bytes(os.urandom(30_000))
    record = tmp_path / "record.json"
    forwarded, total = calibrate(src, str(tmp_path / "calibration"), record, {})
    push_through(src, str(far), record, forwarded // 2, "eof", {})
    seen = json.loads(record.read_text())
    assert seen["dropped"] and seen["cut_blob_bytes"] > 1_000_000
    partial = far / ".syncd" / "staging" / "partial"
    assert [p.stat().st_size for p in partial.iterdir()] == [seen["cut_blob_bytes"]]
    done = run_syncd("push", src, far, "--json")
    assert done.returncode == 0, done.stderr
    resent = json.loads(done.stdout)["payload_bytes"]
    arrived = seen["whole_blob_bytes"] + seen["cut_blob_bytes"]
    assert resent == total - arrived
    assert snapshot_id(far) == snapshot_id(src)
    assert not partial.exists() or not any(partial.iterdir())


def test_first_bytes_that_are_not_the_blobs_own_cost_one_blob_never_a_session(
    tmp_path: Path,
) -> None:
    """The kept bytes are unverified (a hostile client may have sent them): the rest is
    joined and checked, and on a mismatch the whole blob is asked for again."""
    src, far = tmp_path / "src", tmp_path / "far"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(4_000_000))
    record = tmp_path / "record.json"
    forwarded, total = calibrate(src, str(tmp_path / "calibration"), record, {})
    push_through(src, str(far), record, forwarded // 2, "hup", {})
    (kept,) = (far / ".syncd" / "staging" / "partial").iterdir()
    size = kept.stat().st_size
    with kept.open("r+b") as stream:
        stream.seek(1000)
        stream.write(b"\xff\x00\xff")
    done = run_syncd("push", src, far, "--json")
    assert done.returncode == 0, done.stderr
    # The rest, refused once joined, then the whole blob.
    assert json.loads(done.stdout)["payload_bytes"] == total - size + total
    assert not kept.exists()
    assert snapshot_id(far) == snapshot_id(src)
