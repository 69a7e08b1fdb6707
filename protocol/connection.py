"""The protocol as an object: feed it bytes, read events; give it messages, send bytes.

No sockets, files or event loop here (h11's design): a driver moves the bytes. The
connection enforces the state machine in TRANSITIONS, answers in order (a TREES entry or
a blob must be the next one asked for), BLAKE3-verifies every tree record and blob it
receives, and validates every tree (and so every path) before handing it out. Anything
else, received or about to be sent, raises ProtocolError and puts the connection in
phase ERROR (as h11 does), where the only thing left to do is to send one ERROR. The one
thing not verified here is the answer to REST: the rest of a blob cannot be hashed alone,
so the server session, which holds the blob's first bytes, joins and verifies it
(SPEC.md, REST).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum, auto

import blake3

from protocol.codec import SPLIT_BYTES
from protocol.errors import ErrorCode, ProtocolError
from protocol.framing import HEADER, FrameDecoder, encode_frame, encode_frame_parts
from protocol.limits import CHUNK_SIZE, DEFAULT_LIMITS, Limits
from protocol.messages import (
    Blobs,
    Error,
    GetTrees,
    Hello,
    Message,
    MsgType,
    Report,
    Rest,
    Trees,
    Want,
    decode_message,
    encode_message,
)
from protocol.salvage import complete_blobs, cut_entry
from protocol.tree import Node, decode_tree, tree_id

VERSION_MIN = 1
VERSION_MAX = 1
# A peer must accept at least one whole piece per frame.
MIN_PEER_FRAME = CHUNK_SIZE + 4096
# The server capability that promises a REPORT after RESULT when the client asks for one
# with the HELLO parameters `verify` or `post_apply` (SPEC.md, REPORT).
CAP_REPORT = "report"
# The client capability that lets the server ask for the rest of a blob (REST) whose
# first bytes it kept when a link dropped.
CAP_REST = "rest"
# The HELLO parameters this version knows, by sender, each with its one type (SPEC.md,
# HELLO). Others are ignored; a known one of another type is VERSION.
CLIENT_PARAMS: dict[str, type] = {"max_frame": int, "root": str, "verify": bool, "post_apply": str}
SERVER_PARAMS: dict[str, type] = {"max_frame": int, "root": str}
_TYPE_NAMES = {int: "an integer", str: "a string", bool: "a boolean"}


class Role(Enum):
    CLIENT = auto()  # the source side: it offers a snapshot and sends what is asked
    SERVER = auto()  # the far side: it compares, asks, verifies and applies


class Phase(Enum):
    START = auto()
    HELLO_RECEIVED = auto()
    HELLO_SENT = auto()
    EARLY = auto()  # the other side's second message came before our HELLO/OFFER
    AWAIT_OFFER = auto()
    OFFERED = auto()
    GREETED = auto()
    STATED = auto()
    DESCEND = auto()
    TRANSFER = auto()
    FINISHED = auto()
    REPORTED = auto()  # the server's REPORT followed its RESULT
    CLOSED = auto()
    ERROR = auto()  # a protocol error, ours or the peer's: we may still send one ERROR


class Dir(Enum):
    SEND = auto()
    RECV = auto()


C, S = Role.CLIENT, Role.SERVER
P, M = Phase, MsgType

# (role, phase, direction, message type) -> next phase. ERROR from any open phase closes;
# a ProtocolError in send() or next_event() leads to Phase.ERROR.
TRANSITIONS: dict[tuple[Role, Phase, Dir, MsgType], Phase] = {
    (C, P.START, Dir.SEND, M.HELLO): P.HELLO_SENT,
    (C, P.HELLO_SENT, Dir.SEND, M.OFFER): P.OFFERED,
    (C, P.HELLO_SENT, Dir.RECV, M.HELLO): P.EARLY,
    (C, P.EARLY, Dir.SEND, M.OFFER): P.GREETED,
    (C, P.OFFERED, Dir.RECV, M.HELLO): P.GREETED,
    (C, P.GREETED, Dir.RECV, M.STATE): P.STATED,
    (C, P.STATED, Dir.RECV, M.RESULT): P.FINISHED,
    (C, P.STATED, Dir.RECV, M.GET_TREES): P.DESCEND,
    (C, P.STATED, Dir.RECV, M.PLAN): P.TRANSFER,
    (C, P.DESCEND, Dir.RECV, M.GET_TREES): P.DESCEND,
    (C, P.DESCEND, Dir.SEND, M.TREES): P.DESCEND,
    (C, P.DESCEND, Dir.RECV, M.PLAN): P.TRANSFER,
    (C, P.TRANSFER, Dir.RECV, M.WANT): P.TRANSFER,
    (C, P.TRANSFER, Dir.RECV, M.REST): P.TRANSFER,
    (C, P.TRANSFER, Dir.SEND, M.BLOBS): P.TRANSFER,
    (C, P.TRANSFER, Dir.RECV, M.RESULT): P.FINISHED,
    (C, P.FINISHED, Dir.SEND, M.BYE): P.CLOSED,
    (C, P.FINISHED, Dir.RECV, M.REPORT): P.REPORTED,
    (C, P.REPORTED, Dir.SEND, M.BYE): P.CLOSED,
    (S, P.START, Dir.RECV, M.HELLO): P.HELLO_RECEIVED,
    (S, P.HELLO_RECEIVED, Dir.SEND, M.HELLO): P.AWAIT_OFFER,
    (S, P.HELLO_RECEIVED, Dir.RECV, M.OFFER): P.EARLY,
    (S, P.EARLY, Dir.SEND, M.HELLO): P.OFFERED,
    (S, P.AWAIT_OFFER, Dir.RECV, M.OFFER): P.OFFERED,
    (S, P.OFFERED, Dir.SEND, M.STATE): P.STATED,
    (S, P.STATED, Dir.SEND, M.RESULT): P.FINISHED,
    (S, P.STATED, Dir.SEND, M.GET_TREES): P.DESCEND,
    (S, P.STATED, Dir.SEND, M.PLAN): P.TRANSFER,
    (S, P.DESCEND, Dir.SEND, M.GET_TREES): P.DESCEND,
    (S, P.DESCEND, Dir.RECV, M.TREES): P.DESCEND,
    (S, P.DESCEND, Dir.SEND, M.PLAN): P.TRANSFER,
    (S, P.TRANSFER, Dir.SEND, M.WANT): P.TRANSFER,
    (S, P.TRANSFER, Dir.SEND, M.REST): P.TRANSFER,
    (S, P.TRANSFER, Dir.RECV, M.BLOBS): P.TRANSFER,
    (S, P.TRANSFER, Dir.SEND, M.RESULT): P.FINISHED,
    (S, P.FINISHED, Dir.RECV, M.BYE): P.CLOSED,
    (S, P.FINISHED, Dir.SEND, M.REPORT): P.REPORTED,
    (S, P.REPORTED, Dir.RECV, M.BYE): P.CLOSED,
}


@dataclass(frozen=True, slots=True)
class ReceivedTree:
    id: bytes
    record: bytes
    children: list[Node]


@dataclass(frozen=True, slots=True)
class TreesReceived:
    """A TREES message, every record verified against its id and decoded."""

    trees: tuple[ReceivedTree, ...]


class NeedData:
    """next_event() has nothing until more bytes are fed."""


class Closed:
    """The conversation is over (BYE, ERROR, or the peer closed after finishing)."""


NEED_DATA = NeedData()
CLOSED = Closed()
Event = Message | TreesReceived | NeedData | Closed


class Connection:
    def __init__(self, role: Role, limits: Limits = DEFAULT_LIMITS) -> None:
        self.role = role
        self.limits = limits
        self.phase = Phase.START
        self.version: int | None = None
        self.peer_max_frame = MIN_PEER_FRAME
        self._decoder = FrameDecoder(limits)
        self._trees_due: deque[bytes] = deque()  # ids asked for and not yet answered
        # (digest, length, offset) likewise: offset 0 for WANT, the bytes kept for REST
        self._blobs_due: deque[tuple[bytes, int, int]] = deque()
        self.report_asked = False  # the client's HELLO asked for verify or post_apply
        self.report_offered = False  # the server's HELLO has the `report` capability
        self.rest_agreed = False  # the client's HELLO has the `rest` capability

    # -- outgoing ---------------------------------------------------------------------

    def send(self, message: Message) -> bytes:
        """Check that `message` may be sent now and return its frame. A message that may
        not (out of order, too large for the peer) is never framed, and it ends the
        conversation just as a bad message received does: the phase becomes ERROR."""
        return b"".join(self.send_parts(message))

    def send_parts(self, message: Message) -> list[bytes]:
        """send(), the frame given as pieces to write in order: a BLOBS frame's large
        blobs are pieces of their own, the very bytes objects of `message`."""
        try:
            return self._frame(message)
        except ProtocolError:
            self.phase = Phase.ERROR
            raise

    def _frame(self, message: Message) -> list[bytes]:
        self._advance(Dir.SEND, message)
        if isinstance(message, GetTrees):
            self._trees_due.extend(message.ids)
        elif isinstance(message, Want):
            self._blobs_due.extend((digest, length, 0) for digest, length in message.blobs)
        elif isinstance(message, Rest):
            self._rest_due(message)
        elif isinstance(message, Trees):
            self._answer_trees(message)
        elif isinstance(message, Blobs):
            self._answer_blobs(message)
        elif isinstance(message, Hello):
            self._sent_hello(message)
        payload = encode_message(message)
        parts = encode_frame_parts(payload) if _has_large(message) else [encode_frame(payload)]
        if sum(len(part) for part in parts) - HEADER.size > self.peer_max_frame:
            raise ProtocolError(ErrorCode.LIMIT, "outgoing frame exceeds the peer's limit")
        return parts

    def _answer_trees(self, message: Trees) -> None:
        for key, _ in message.records:
            if not self._trees_due or self._trees_due.popleft() != key:
                raise ProtocolError(ErrorCode.UNEXPECTED, "sending a tree that was not asked for")

    def _answer_blobs(self, message: Blobs) -> None:
        for digest, data in message.blobs:
            if not self._is_next_due(digest, data):
                raise ProtocolError(ErrorCode.UNEXPECTED, "sending a blob that was not asked for")
            self._blobs_due.popleft()

    def _is_next_due(self, digest: bytes, data: bytes) -> bool:
        """Whether (digest, data) answers the next blob due: the whole blob, or its rest."""
        if not self._blobs_due:
            return False
        due, length, offset = self._blobs_due[0]
        return due == digest and len(data) == length - offset

    def _rest_due(self, message: Rest) -> None:
        if not self.rest_agreed:
            raise ProtocolError(ErrorCode.UNEXPECTED, "REST without the `rest` capability")
        self._blobs_due.extend(message.blobs)

    def _sent_hello(self, message: Hello) -> None:
        if self.role is Role.SERVER and message.versions != (self.version, self.version):
            raise ProtocolError(
                ErrorCode.VERSION, "the server's HELLO must name the chosen version"
            )
        self._note_params(message, from_client=self.role is Role.CLIENT)
        if self.role is Role.CLIENT:
            self.rest_agreed = CAP_REST in message.caps

    # -- incoming ---------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; b"" means the peer closed its side."""
        self._decoder.feed(data)

    def next_event(self) -> Event:
        if self.phase is Phase.CLOSED:
            return CLOSED
        if self.phase is Phase.ERROR:
            raise ProtocolError(ErrorCode.UNEXPECTED, "the conversation has already failed")
        try:
            payload = self._decoder.next_payload()
            if payload is None:
                return self._no_frame()
            message = decode_message(payload, self.limits)
            self._advance(Dir.RECV, message)
            return self._received(message)
        except ProtocolError:
            self.phase = Phase.ERROR  # we were open on entry: say why we stop, once
            raise

    def _no_frame(self) -> Event:
        if not self._decoder.eof:
            return NEED_DATA
        state = self.phase.name.lower()
        detail = "inside a frame" if self._decoder.buffered else f"in phase {state}"
        raise ProtocolError(ErrorCode.TRUNCATED, f"the peer closed the connection {detail}")

    def salvage_blobs(self) -> tuple[list[tuple[bytes, bytes]], tuple[bytes, bytes] | None]:
        """What a BLOBS frame the peer cut short holds (protocol/salvage.py): its whole
        entries, as far as each answers the next blob due (and, for a whole blob, matches
        its digest; a REST answer is the session's to join and check), no longer due; and
        the first bytes of the entry the cut fell in, (digest, bytes), unverified. For a
        server whose peer closed mid-transfer; nothing otherwise."""
        if self.role is not Role.SERVER:
            return [], None
        payload = self._decoder.partial_payload()
        kept: list[tuple[bytes, bytes]] = []
        for digest, data in complete_blobs(payload, self.limits):
            if not self._is_next_due(digest, data):
                return kept, None
            _, _, offset = self._blobs_due[0]
            if not offset and blake3.blake3(data).digest() != digest:
                return kept, None
            self._blobs_due.popleft()
            kept.append((digest, data))
        cut = cut_entry(payload, self.limits)
        if cut is None or not self._blobs_due or self._blobs_due[0][0] != cut[0]:
            return kept, None
        _, length, offset = self._blobs_due[0]
        return kept, cut if len(cut[1]) < length - offset else None

    def _received(self, message: Message) -> Event:
        if isinstance(message, Hello):
            self._received_hello(message)
        elif isinstance(message, Trees):
            return self._verify_trees(message)
        elif isinstance(message, Blobs):
            self._verify_blobs(message)
        elif isinstance(message, GetTrees):
            self._trees_due.extend(message.ids)
        elif isinstance(message, Want):
            self._blobs_due.extend((digest, length, 0) for digest, length in message.blobs)
        elif isinstance(message, Rest):
            self._rest_due(message)
        return message

    def _received_hello(self, message: Hello) -> None:
        low, high = message.versions
        if self.role is Role.SERVER:
            chosen = min(high, VERSION_MAX)
            if chosen < max(low, VERSION_MIN):
                raise ProtocolError(
                    ErrorCode.VERSION,
                    f"no common protocol version: peer speaks {low}..{high}, "
                    f"we speak {VERSION_MIN}..{VERSION_MAX}",
                )
            self.version = chosen
        elif low != high or not VERSION_MIN <= low <= VERSION_MAX:
            raise ProtocolError(
                ErrorCode.VERSION, f"server chose unsupported version {low}..{high}"
            )
        else:
            self.version = low
        self._note_params(message, from_client=self.role is Role.SERVER)
        if self.role is Role.SERVER:
            self.rest_agreed = CAP_REST in message.caps
        max_frame = message.params.get("max_frame", MIN_PEER_FRAME)
        assert type(max_frame) is int  # checked by _note_params
        if max_frame < MIN_PEER_FRAME:
            raise ProtocolError(ErrorCode.LIMIT, f"peer's max_frame {max_frame} is too small")
        self.peer_max_frame = max_frame

    def _note_params(self, message: Hello, *, from_client: bool) -> None:
        """Every known parameter has its one type (VERSION otherwise); the client's HELLO
        may ask for a REPORT, the server's may promise one."""
        known = CLIENT_PARAMS if from_client else SERVER_PARAMS
        for name, kind in known.items():
            value = message.params.get(name)
            if value is not None and type(value) is not kind:
                raise ProtocolError(
                    ErrorCode.VERSION, f"HELLO parameter {name} must be {_TYPE_NAMES[kind]}"
                )
        if from_client:
            self.report_asked = message.params.get("verify") is True or (
                "post_apply" in message.params
            )
        else:
            self.report_offered = CAP_REPORT in message.caps

    def _verify_trees(self, message: Trees) -> TreesReceived:
        received = []
        for key, record in message.records:
            if not self._trees_due or self._trees_due.popleft() != key:
                raise ProtocolError(ErrorCode.UNEXPECTED, "received a tree that was not asked for")
            if tree_id(record) != key:
                raise ProtocolError(
                    ErrorCode.HASH_MISMATCH, f"tree {key.hex()} does not match its id"
                )
            received.append(ReceivedTree(key, record, decode_tree(record, self.limits)))
        return TreesReceived(tuple(received))

    def _verify_blobs(self, message: Blobs) -> None:
        for digest, data in message.blobs:
            if not self._is_next_due(digest, data):
                raise ProtocolError(ErrorCode.UNEXPECTED, "received a blob that was not asked for")
            _, _, offset = self._blobs_due.popleft()
            if not offset and blake3.blake3(data).digest() != digest:
                raise ProtocolError(
                    ErrorCode.HASH_MISMATCH, f"blob {digest.hex()} does not match its digest"
                )

    # -- state machine ------------------------------------------------------------------

    def _advance(self, direction: Dir, message: Message) -> None:
        if isinstance(message, Error):
            if self.phase is Phase.CLOSED:
                raise ProtocolError(ErrorCode.UNEXPECTED, "ERROR after the conversation ended")
            self.phase = Phase.CLOSED
            return
        if self.phase is Phase.ERROR:
            raise ProtocolError(ErrorCode.UNEXPECTED, "only ERROR may follow a protocol error")
        following = TRANSITIONS.get((self.role, self.phase, direction, message.TYPE))
        if following is None:
            verb = "send" if direction is Dir.SEND else "receive"
            raise ProtocolError(
                ErrorCode.UNEXPECTED,
                f"{self.role.name.lower()} cannot {verb} {message.TYPE.name} in phase "
                f"{self.phase.name.lower()}",
            )
        if following in (Phase.TRANSFER, Phase.FINISHED) and self._trees_due:
            raise ProtocolError(
                ErrorCode.UNEXPECTED, f"{message.TYPE.name} while trees are still due"
            )
        if following is Phase.FINISHED and self._blobs_due:
            raise ProtocolError(ErrorCode.UNEXPECTED, "RESULT while blobs are still due")
        self._check_report(message)
        self.phase = following

    def _check_report(self, message: Message) -> None:
        """A REPORT only when asked for; when asked for and promised, not BYE before it."""
        if isinstance(message, Report) and not self.report_asked:
            raise ProtocolError(ErrorCode.UNEXPECTED, "REPORT that the client did not ask for")
        promised = self.report_asked and self.report_offered
        if message.TYPE is MsgType.BYE and self.phase is Phase.FINISHED and promised:
            raise ProtocolError(ErrorCode.UNEXPECTED, "BYE before the promised REPORT")

    @property
    def trees_due(self) -> int:
        return len(self._trees_due)

    @property
    def blobs_due(self) -> int:
        return len(self._blobs_due)


def _has_large(message: Message) -> bool:
    """Whether a frame is worth encoding in pieces: only blobs are large, and a frame
    of many small ones is packed faster whole (BLOBS frames of those are ~1 MiB)."""
    return isinstance(message, Blobs) and any(len(data) >= SPLIT_BYTES for _, data in message.blobs)
