"""protocol/SPEC.md and protocol/ say the same thing.

SPEC.md is parsed, not copied: its transition table must equal TRANSITIONS, its message
table the message classes, its error table ErrorCode, and every place where it names an
error code (`LIMIT`, `HASH_MISMATCH`, ...) must have a case below that makes the code
produce exactly that code. A sentence added to SPEC.md with a code in it fails
`test_every_code_spec_names_has_a_case` until a case covers it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import typing
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import blake3
import pytest

from protocol.codec import pack
from protocol.connection import (
    MIN_PEER_FRAME,
    TRANSITIONS,
    Connection,
    Dir,
    Phase,
    Role,
)
from protocol.errors import ErrorCode, ProtocolError
from protocol.framing import HEADER
from protocol.media import MAGIC_INDEX, Kind, decode_index
from protocol.messages import (
    Blobs,
    Bye,
    Error,
    GetTrees,
    Hello,
    Message,
    MsgType,
    Offer,
    Plan,
    Result,
    State,
    Trees,
    Want,
)
from protocol.tree import FileNode, decode_tree, encode_tree, tree_id
from tests import media_vectorgen as mv
from tests.test_apply_support import fill, small_tmpfs
from tests.test_serve_hostile import converse

SPEC = (Path(__file__).resolve().parent.parent / "protocol" / "SPEC.md").read_text()
CODE_NAMES = "|".join(code.name for code in ErrorCode)


def section(number: str) -> str:
    """The text of section `number` ("6", "9.3"), up to the next heading of any level."""
    match = re.search(rf"^#+ {re.escape(number)}\.? .*?$(.*?)(?=^#)", SPEC + "\n#", re.M | re.S)
    assert match, f"SPEC.md has no section {number}"
    return match.group(1)


def table_rows(text: str, first: str) -> list[list[str]]:
    """The cells of the table rows in `text` whose first cell matches `first`."""
    rows = []
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and re.fullmatch(first, cells[0]):
            rows.append(cells)
    return rows


# -- tables ---------------------------------------------------------------------------------


def spec_transitions() -> dict[tuple[Role, Phase, Dir, MsgType], Phase]:
    table: dict[tuple[Role, Phase, Dir, MsgType], Phase] = {}
    for role, phase, send, receive, following in table_rows(section("6"), "client|server"):
        for direction, cell in ((Dir.SEND, send), (Dir.RECV, receive)):
            if not cell:
                continue
            names, nexts = cell.split(" / "), following.split(" / ")
            if len(nexts) == 1:
                nexts *= len(names)
            for name, then in zip(names, nexts, strict=True):
                key = (Role[role.upper()], Phase[phase], direction, MsgType[name])
                assert key not in table, f"SPEC.md lists {key} twice"
                table[key] = Phase[then]
    return table


def test_the_transition_table_is_transitions() -> None:
    table = spec_transitions()
    assert len(table) > 30  # the table was found and read
    assert table == TRANSITIONS


def test_the_message_table_is_the_message_classes() -> None:
    classes = {cls.TYPE: cls for cls in typing.get_args(Message)}
    senders = {(key[0], key[3]) for key in TRANSITIONS if key[2] is Dir.SEND}
    rows = table_rows(section("4"), r"\d+")
    assert {int(row[0]) for row in rows} == {int(t) for t in MsgType}
    for number, name, direction, fields in rows:
        kind = MsgType(int(number))
        assert kind.name == name
        names = [span.split(":")[0] for span in re.findall(r"`([^`]*)`", fields)]
        if kind is not MsgType.ERROR:
            assert [f.name for f in dataclasses.fields(classes[kind])] == names, name
            expected = {"C→S": {Role.CLIENT}, "S→C": {Role.SERVER}}.get(
                direction, {Role.CLIENT, Role.SERVER}
            )
            assert {role for role, sent in senders if sent is kind} == expected, name


def test_the_error_table_is_error_code() -> None:
    rows = table_rows(section("7"), r"\d+")
    assert {(int(code), name) for code, name, _ in rows} == {(c.value, c.name) for c in ErrorCode}


# -- every code SPEC names, produced where SPEC says -----------------------------------------

ROOT = tree_id(encode_tree([]))
DATA = b"piece"
PARAMS: dict[str, str | int | bool] = {"max_frame": MIN_PEER_FRAME}


def _file_root() -> tuple[bytes, bytes, bytes]:
    piece = blake3.blake3(DATA).digest()
    record = encode_tree([FileNode("f", 0o644, len(DATA), 0, ((piece, len(DATA)),))])
    return tree_id(record), record, piece


def server_receiving(*messages: Message) -> Connection:
    """A server that has read these client messages."""
    client, server = Connection(Role.CLIENT), Connection(Role.SERVER)
    for message in messages:
        server.receive_data(client.send(message))
        server.next_event()
    return server


def talking(caps: tuple[str, ...] = (), **params: str | int | bool) -> tuple[Connection, ...]:
    """A client and a server after HELLO, OFFER, HELLO and STATE."""
    client, server = Connection(Role.CLIENT), Connection(Role.SERVER)
    exchange(client, server, Hello((1, 1), "c", (), {**PARAMS, **params}))
    exchange(client, server, Offer(ROOT, 0, 0, True, True))
    exchange(server, client, Hello((1, 1), "s", caps, PARAMS))
    exchange(server, client, State(ROOT, 0, 0, 0, 0))
    return client, server


def exchange(sender: Connection, receiver: Connection, message: Message) -> object:
    receiver.receive_data(sender.send(message))
    return receiver.next_event()


def raw(message: list[object]) -> bytes:
    body = pack(message)
    return HEADER.pack(len(body)) + body


def refused_by(conn: Connection, data: bytes, *, eof: bool = False) -> Callable[[], object]:
    def receive() -> object:
        conn.receive_data(data)
        if eof:
            conn.receive_data(b"")
        return conn.next_event()

    return receive


def hello_params(**params: object) -> Callable[[], object]:
    return refused_by(Connection(Role.SERVER), raw([1, [1, 1], "c", [], {**PARAMS, **params}]))


def trees_of_another_record() -> object:
    client, server = talking()
    key, _, _ = _file_root()
    exchange(server, client, GetTrees((key,)))
    return refused_by(server, client.send(Trees(((key, encode_tree([])),))))()


def blob_of_other_bytes() -> object:
    client, server = talking()
    _, _, piece = _file_root()
    exchange(server, client, Plan(1, len(DATA)))
    exchange(server, client, Want(((piece, len(DATA)),)))
    return refused_by(server, client.send(Blobs(((piece, b"x" * len(DATA)),))))()


def result_staged() -> object:
    client, _ = talking()
    return refused_by(client, raw([9, "staged", ROOT, 0, 0, ""]))()


def rest_without_the_capability() -> object:
    client, server = talking()  # the client's HELLO offered no `rest`
    _, _, piece = _file_root()
    exchange(server, client, Plan(1, len(DATA)))
    return refused_by(client, raw([13, [[piece, len(DATA), 2]]]))()


def unasked_report() -> object:
    client, server = talking()
    exchange(server, client, Result("up-to-date", ROOT, 0, 0))
    return refused_by(client, raw([12, ROOT, "ok", "", "skipped", 0, ""]))()


def bye_before_promised_report() -> object:
    client, server = talking(("report",), verify=True)
    exchange(server, client, Result("up-to-date", ROOT, 0, 0))
    return client.send(Bye())


def plan_while_trees_due() -> object:
    _, server = talking()
    server.send(GetTrees((ROOT,)))
    return server.send(Plan(0, 0))


def non_canonical_record() -> object:
    return decode_tree(pack([["b", 2, "x"], ["a", 2, "x"]]))  # children out of order


def index(*frames: bytes, files: object = None) -> Callable[[], object]:
    """A volume index of the golden target with these frames after FILES, sealed."""
    _, good_files, _, _ = mv.index_parts()
    listing = files if files is not None else [[f.name, f.size, f.checksum] for f in good_files]
    body = MAGIC_INDEX + mv.volume_frame() + mv.frame(Kind.FILES, listing) + b"".join(frames)
    return lambda: decode_index(mv.sealed(body))


def golden_trees(drop: int | None = None, extra: list[list[bytes]] | None = None) -> bytes:
    _, records = mv.target()
    items = [[key, record] for i, (key, record) in enumerate(records) if i != drop]
    return mv.frame(Kind.TREES, items + (extra or []))


def golden_blobs(shift: int = 0) -> bytes:
    _, _, _, blobs = mv.index_parts()
    entries = [
        [b.digest, b.file, b.offset + (shift if i else 0), b.length] for i, b in enumerate(blobs)
    ]
    return mv.frame(Kind.BLOBS, entries)


def hostile_vector(name: str) -> Callable[[], object]:
    item = next(v for v in mv.hostile() if v["name"] == name)
    return lambda: decode_index(bytes.fromhex(str(item["hex"])))


def hostile_manifest(name: str) -> Callable[[], object]:
    item = next(v for v in mv.hostile_manifests() if v["name"] == name)
    return lambda: decode_index(bytes.fromhex(str(item["hex"])))


@dataclass(frozen=True)
class Case:
    section: str
    code: ErrorCode
    name: str
    run: Callable[[], object] | None = None
    elsewhere: str = ""  # a test that covers it with the real far side


C = ErrorCode
CASES = [
    Case(
        "2",
        C.LIMIT,
        "frame over max_frame",
        refused_by(Connection(Role.SERVER), HEADER.pack(MIN_PEER_FRAME + 65537)),
    ),
    Case(
        "2",
        C.TRUNCATED,
        "stream ends inside a frame",
        refused_by(Connection(Role.SERVER), HEADER.pack(9) + b"\x01", eof=True),
    ),
    Case(
        "2",
        C.TRUNCATED,
        "stream ends before the conversation is finished",
        refused_by(server_receiving(Hello((1, 1), "c", (), PARAMS)), b""),
    ),
    Case("3.1", C.NOT_CANONICAL, "record with a wide integer", non_canonical_record),
    Case(
        "3.2",
        C.BAD_PATH,
        "a symlink that leads outside the root",
        elsewhere="tests/test_far_targets.py::test_a_symlink_leaving_the_root_is_refused_at_planning",
    ),
    Case(
        "3.2",
        C.LIMIT,
        "a path of more than 4096 bytes",
        elsewhere="tests/test_reliability_hostile.py::test_a_path_longer_than_path_max_over_the_wire_changes_nothing",
    ),
    Case(
        "4",
        C.BAD_PATH,
        "a root other than the one served",
        elsewhere="tests/test_serve_hostile.py::test_another_root_is_refused",
    ),
    Case(
        "4",
        C.VERSION,
        "no common version",
        refused_by(Connection(Role.SERVER), raw([1, [2, 3], "c", [], PARAMS])),
    ),
    Case("4", C.MALFORMED, "parameter value of no allowed type", hello_params(future=[1])),
    Case("4", C.VERSION, "max_frame as a string", hello_params(max_frame="big")),
    Case("4", C.VERSION, "root as an integer", hello_params(root=1)),
    Case("4", C.VERSION, "verify as an integer", hello_params(verify=1)),
    Case("4", C.VERSION, "post_apply as a boolean", hello_params(post_apply=True)),
    Case("4", C.LIMIT, "max_frame below the minimum", hello_params(max_frame=1024)),
    Case("4", C.HASH_MISMATCH, "TREES record not of its id", trees_of_another_record),
    Case("4", C.HASH_MISMATCH, "BLOBS data not of its digest", blob_of_other_bytes),
    Case("4", C.MALFORMED, "RESULT staged", result_staged),
    Case("4", C.UNEXPECTED, "REST to a client without `rest`", rest_without_the_capability),
    Case(
        "4",
        C.REMOTE,
        "the far side fails for its own reasons",
        elsewhere="tests/test_protocol_spec.py::test_a_far_side_that_cannot_go_on_says_remote",
    ),
    Case(
        "5",
        C.LIMIT,
        "str over 64 KiB",
        refused_by(Connection(Role.SERVER), raw([1, [1, 1], "a" * 70_000, [], {}])),
    ),
    Case(
        "6",
        C.UNEXPECTED,
        "OFFER before HELLO",
        refused_by(Connection(Role.SERVER), raw([2, ROOT, 0, 0, True, True])),
    ),
    Case("6", C.UNEXPECTED, "PLAN while trees are due", plan_while_trees_due),
    Case("6", C.UNEXPECTED, "REPORT nobody asked for", unasked_report),
    Case("6", C.UNEXPECTED, "BYE before the promised REPORT", bye_before_promised_report),
    Case(
        "8",
        C.REMOTE,
        "no HELLO within the handshake timeout",
        elsewhere="tests/test_serve_hostile.py::test_a_client_that_never_says_hello_is_dropped",
    ),
    Case(
        "8",
        C.REMOTE,
        "a session that cannot start (the root in use)",
        elsewhere="tests/test_far_lifecycle.py::test_a_session_that_cannot_start_still_answers_with_error",
    ),
    Case(
        "8",
        C.REMOTE,
        "an apply that will not fit, naming the shortfall",
        elsewhere="tests/test_protocol_spec.py::test_a_far_side_that_cannot_go_on_says_remote",
    ),
    Case("9.2", C.VERSION, "media format 2", hostile_vector("unknown format")),
    Case(
        "9.2",
        C.HASH_MISMATCH,
        "END checksum of other bytes",
        hostile_vector("checksum of other bytes"),
    ),
    Case(
        "9.3",
        C.BAD_PATH,
        "pack file named ../evil",
        index(golden_trees(), golden_blobs(), files=[["../evil", 1, bytes(32)]]),
    ),
    Case(
        "9.3",
        C.HASH_MISMATCH,
        "tree record not of its id",
        index(golden_trees(extra=[[bytes(32), encode_tree([])]]), golden_blobs()),
    ),
    Case(
        "9.3",
        C.MALFORMED,
        "referenced tree record absent",
        index(golden_trees(drop=1), golden_blobs()),
    ),
    Case(
        "9.3",
        C.MALFORMED,
        "tree record not reachable",
        index(golden_trees(extra=[[ROOT, encode_tree([])]]), golden_blobs()),
    ),
    Case(
        "9.3",
        C.MALFORMED,
        "blobs leave a gap in their pack",
        index(golden_trees(), golden_blobs(shift=1)),
    ),
    Case(
        "9.9",
        C.MALFORMED,
        "a manifest tag with a space",
        hostile_manifest("manifest tag with a space"),
    ),
    Case(
        "9.9",
        C.BAD_PATH,
        "a manifest path escaping the root",
        hostile_manifest("manifest path escaping the root"),
    ),
    Case(
        "9.9",
        C.MALFORMED,
        "a manifest announcing more paths than it holds",
        hostile_manifest("manifest announcing more paths than it holds"),
    ),
]


def spec_mentions() -> Counter[tuple[str, ErrorCode]]:
    """(section, code) for every code SPEC.md names in backticks, outside the code table."""
    mentions: Counter[tuple[str, ErrorCode]] = Counter()
    for number, body in re.findall(
        r"^#+ (\d+(?:\.\d+)?)\.? [^\n]*\n(.*?)(?=^#|\Z)", SPEC, re.M | re.S
    ):
        if number == "7":
            continue
        for name in re.findall(rf"`({CODE_NAMES})`", body):
            mentions[(number, ErrorCode[name])] += 1
    return mentions


def test_every_code_spec_names_has_a_case() -> None:
    mentions = spec_mentions()
    covered = Counter((case.section, case.code) for case in CASES)
    assert sum(mentions.values()) > 15  # SPEC.md was read
    short = {key: n for key, n in mentions.items() if covered[key] < n}
    assert not short, f"SPEC.md names these codes more often than cases cover them: {short}"
    assert set(covered) <= set(mentions), "a case for a code SPEC.md does not name there"


@pytest.mark.parametrize("case", [c for c in CASES if c.run], ids=lambda c: f"{c.section} {c.name}")
def test_the_code_is_the_one_spec_names(case: Case) -> None:
    assert case.run is not None
    with pytest.raises(ProtocolError) as raised:
        case.run()
    assert raised.value.code is case.code, raised.value


@pytest.mark.parametrize("case", [c for c in CASES if c.elsewhere], ids=lambda c: c.name)
def test_cases_covered_elsewhere_exist(case: Case) -> None:
    path, name = case.elsewhere.split("::")
    source = (Path(__file__).resolve().parent.parent / path).read_text()
    assert f"def {name}(" in source, case.elsewhere


# -- the ERROR phase (SPEC.md, section 6) ----------------------------------------------------


def test_a_send_over_the_peers_limit_fails_the_connection() -> None:
    client, server = talking()
    key = tree_id(b"x")
    exchange(server, client, GetTrees((key,)))
    huge = b"x" * (MIN_PEER_FRAME + 1)  # the server accepts frames of MIN_PEER_FRAME
    with pytest.raises(ProtocolError) as raised:
        client.send(Trees(((key, huge),)))
    assert raised.value.code is ErrorCode.LIMIT
    assert client.phase is Phase.ERROR
    after_the_failure(client)


def test_a_send_out_of_order_fails_the_connection() -> None:
    client = Connection(Role.CLIENT)
    with pytest.raises(ProtocolError) as raised:
        client.send(Bye())
    assert raised.value.code is ErrorCode.UNEXPECTED
    assert client.phase is Phase.ERROR
    after_the_failure(client)


def test_a_bad_message_received_fails_the_connection() -> None:
    server = Connection(Role.SERVER)
    server.receive_data(raw([2, ROOT, 0, 0, True, True]))  # OFFER before HELLO
    with pytest.raises(ProtocolError):
        server.next_event()
    assert server.phase is Phase.ERROR
    after_the_failure(server)


def phase(conn: Connection) -> Phase:
    return conn.phase  # read afresh: a send changed it since the last assert


def after_the_failure(conn: Connection) -> None:
    """Nothing but one ERROR goes out, and nothing more comes in."""
    with pytest.raises(ProtocolError):
        conn.send(Hello((1, 1), "again", (), PARAMS))
    with pytest.raises(ProtocolError):
        conn.next_event()
    assert conn.phase is Phase.ERROR
    conn.send(Error(int(ErrorCode.UNEXPECTED), "why we stop"))
    assert phase(conn) is Phase.CLOSED
    with pytest.raises(ProtocolError):
        conn.send(Error(int(ErrorCode.UNEXPECTED), "twice"))


def test_a_far_side_that_cannot_go_on_says_remote(tmp_path: Path) -> None:
    """A real `syncd serve` on a disk too full for the apply: ERROR REMOTE, naming why,
    and its live tree unchanged."""
    content = bytes(range(256)) * 1024  # 256 KiB, where 16 KiB are free
    piece = blake3.blake3(content).digest()
    record = encode_tree([FileNode("f", 0o644, len(content), 0, ((piece, len(content)),))])

    def answer(conn: Connection) -> list[bytes]:
        if conn.trees_due:
            return [conn.send(Trees(((tree_id(record), record),)))]
        return [conn.send(Blobs(((piece, content),)))] if conn.blobs_due else []

    with small_tmpfs(tmp_path / "mnt", 1 << 20) as mount:
        if mount is None:
            pytest.skip("cannot mount a small tmpfs here (mounting needs root)")
        far = mount / "far"
        far.mkdir()
        fill(mount, 16 << 10)
        events, stderr = asyncio.run(converse(far, answer, tree_id(record)))
        assert [p.name for p in far.iterdir()] == [".syncd"], "the far root changed"
    errors = [event for event in events if isinstance(event, Error)]
    assert errors and errors[0].code == ErrorCode.REMOTE, events
    message = errors[0].message.lower()
    assert "no space left" in message or "not enough space" in message, message
    assert "Traceback" not in stderr
