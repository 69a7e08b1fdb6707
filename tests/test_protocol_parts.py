"""A frame in pieces (issue 17, the push client's memory): codec.pack_parts is pack()
cut into pieces, its large bytes values handed out uncopied, and a BLOBS frame sent
with Connection.send_parts is the same frame as send() gives, its blobs not copied."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocol.codec import SPLIT_BYTES, pack, pack_parts
from protocol.messages import Blobs, Want
from tests.test_link_drop import blobs, pair

LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text(max_size=20)
    | st.binary(max_size=300)
)
VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=6), max_leaves=40)


@given(VALUES, st.integers(min_value=1, max_value=400))
def test_the_pieces_join_to_pack(value: object, split: int) -> None:
    assert b"".join(pack_parts(value, split)) == pack(value)


@given(st.lists(st.binary(max_size=600), max_size=8), st.integers(min_value=1, max_value=300))
def test_large_values_are_pieces_of_their_own_not_copies(values: list[bytes], split: int) -> None:
    parts = pack_parts([7, values], split)
    for value in values:
        if len(value) >= split:
            assert any(part is value for part in parts)


def test_bin_headers_at_every_size_class() -> None:
    for size in (0, 1, 255, 256, 65535, 65536, 70_000):
        value = b"\x00" * size
        assert b"".join(pack_parts([value], 1)) == pack([value])


def test_a_blobs_frame_in_pieces_is_the_frame_and_holds_its_blobs_uncopied() -> None:
    entries = blobs(10, SPLIT_BYTES, 5, 1 << 20, 200)
    frames = []
    for _ in range(2):
        client, server = pair(rest=False)
        client.receive_data(server.send(Want(tuple((d, len(data)) for d, data in entries))))
        client.next_event()
        frames.append(client.send_parts(Blobs(tuple(entries))))
        server.receive_data(b"".join(frames[-1]))
        assert server.next_event() == Blobs(tuple(entries))
    assert b"".join(frames[0]) == b"".join(frames[1])
    large = [data for _, data in entries if len(data) >= SPLIT_BYTES]
    assert all(any(part is data for part in frames[0]) for data in large)
