"""REPORT's rules in the sans-IO connection: only when asked, and not skipped when promised."""

from __future__ import annotations

import pytest

from protocol.connection import MIN_PEER_FRAME, Connection, Phase, Role
from protocol.errors import ErrorCode, ProtocolError
from protocol.framing import encode_frame
from protocol.messages import Bye, Hello, Offer, Report, Result, State, encode_message
from protocol.tree import encode_tree, tree_id

ROOT = tree_id(encode_tree([]))
PARAMS: dict[str, str | int | bool] = {"max_frame": MIN_PEER_FRAME}
REPORT = Report(ROOT, "ok", "OK", "skipped", 0, "")


def finished(
    asked: dict[str, str | int | bool], caps: tuple[str, ...]
) -> tuple[Connection, Connection]:
    """A client and a server right after RESULT, with these HELLO terms."""
    client, server = Connection(Role.CLIENT), Connection(Role.SERVER)
    for sent in (Hello((1, 1), "c", (), {**PARAMS, **asked}), Offer(ROOT, 0, 0, True, True)):
        server.receive_data(client.send(sent))
        server.next_event()
    for message in (
        Hello((1, 1), "s", caps, PARAMS),
        State(ROOT, 0, 0, 0, 0),
        Result("up-to-date", ROOT, 0, 0),
    ):
        client.receive_data(server.send(message))
        client.next_event()
    return client, server


def test_asked_and_promised_report_then_bye() -> None:
    client, server = finished({"verify": True, "post_apply": ""}, ("report",))
    client.receive_data(server.send(REPORT))
    assert client.next_event() == REPORT
    with pytest.raises(ProtocolError, match="BYE before"):
        Connection.send(finished({"verify": True}, ("report",))[0], Bye())
    server.receive_data(client.send(Bye()))
    assert isinstance(server.next_event(), Bye)
    assert client.phase is server.phase is Phase.CLOSED


def test_a_report_nobody_asked_for_is_refused() -> None:
    client, server = finished({}, ("report",))
    with pytest.raises(ProtocolError) as sending:
        server.send(REPORT)
    assert sending.value.code is ErrorCode.UNEXPECTED
    rogue = Connection(Role.SERVER)
    rogue.report_asked = True  # a server that misbehaves: the client still refuses
    rogue.phase = Phase.FINISHED
    client.receive_data(rogue.send(REPORT))
    with pytest.raises(ProtocolError) as receiving:
        client.next_event()
    assert receiving.value.code is ErrorCode.UNEXPECTED


def test_an_old_server_without_the_capability_gets_bye_at_once() -> None:
    client, server = finished({"verify": True}, ())
    server.receive_data(client.send(Bye()))
    assert isinstance(server.next_event(), Bye)


@pytest.mark.parametrize("params", [{"verify": 1}, {"post_apply": True}])
def test_bad_parameter_types_are_version_errors(params: dict[str, str | int | bool]) -> None:
    server = Connection(Role.SERVER)
    server.receive_data(encode_frame(encode_message(Hello((1, 1), "c", (), {**PARAMS, **params}))))
    with pytest.raises(ProtocolError) as info:
        server.next_event()
    assert info.value.code is ErrorCode.VERSION
