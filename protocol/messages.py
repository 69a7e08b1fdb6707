"""Wire messages: what each one carries, and its strict decoding (SPEC.md, Messages).

A message is a msgpack array whose first element is its type number. These are wire
types only; the sync logic that acts on them lives in syncd, on the far side of this line.
Decoding checks every field's type and range and validates every path and tree record
where it is decoded, so nothing downstream sees an unchecked value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar

from protocol.errors import ErrorCode, ProtocolError
from protocol.fields import array, boolean, data, digest, fixed, text, uint
from protocol.limits import CHUNK_SIZE, Limits


class MsgType(IntEnum):
    HELLO = 1
    OFFER = 2
    STATE = 3
    GET_TREES = 4
    TREES = 5
    PLAN = 6
    WANT = 7
    BLOBS = 8
    RESULT = 9
    ERROR = 10
    BYE = 11
    REPORT = 12
    REST = 13


@dataclass(frozen=True, slots=True)
class Hello:
    """Versions spoken ([min, max]; the server answers with [chosen, chosen]), who is
    talking, optional capabilities, and parameters (SPEC.md lists the known keys)."""

    versions: tuple[int, int]
    agent: str
    caps: tuple[str, ...] = ()
    params: dict[str, str | int | bool] = field(default_factory=dict)
    TYPE: ClassVar[MsgType] = MsgType.HELLO

    def fields(self) -> list[object]:
        return [list(self.versions), self.agent, list(self.caps), self.params]


@dataclass(frozen=True, slots=True)
class Offer:
    """The source's snapshot: its id and size, whether its scan was complete, and
    whether entries the source lacks should be deleted on the far side."""

    root: bytes
    files: int
    bytes: int
    complete: bool
    delete: bool
    TYPE: ClassVar[MsgType] = MsgType.OFFER

    def fields(self) -> list[object]:
        return [self.root, self.files, self.bytes, self.complete, self.delete]


@dataclass(frozen=True, slots=True)
class State:
    """The far side's own fresh view: its snapshot id, and what it already has staged."""

    root: bytes
    files: int
    bytes: int
    staged_blobs: int
    staged_bytes: int
    TYPE: ClassVar[MsgType] = MsgType.STATE

    def fields(self) -> list[object]:
        return [self.root, self.files, self.bytes, self.staged_blobs, self.staged_bytes]


@dataclass(frozen=True, slots=True)
class GetTrees:
    ids: tuple[bytes, ...]
    TYPE: ClassVar[MsgType] = MsgType.GET_TREES

    def fields(self) -> list[object]:
        return [list(self.ids)]


@dataclass(frozen=True, slots=True)
class Trees:
    """Tree records answering GET_TREES, in the order asked: (id, canonical record)."""

    records: tuple[tuple[bytes, bytes], ...]
    TYPE: ClassVar[MsgType] = MsgType.TREES

    def fields(self) -> list[object]:
        return [[[key, record] for key, record in self.records]]


@dataclass(frozen=True, slots=True)
class Plan:
    """How much the far side will ask for in all: known before the first blob moves."""

    blobs: int
    bytes: int
    TYPE: ClassVar[MsgType] = MsgType.PLAN

    def fields(self) -> list[object]:
        return [self.blobs, self.bytes]


@dataclass(frozen=True, slots=True)
class Want:
    """Blobs to send next, in this order: (digest, length). Also the sender's credit."""

    blobs: tuple[tuple[bytes, int], ...]
    TYPE: ClassVar[MsgType] = MsgType.WANT

    def fields(self) -> list[object]:
        return [[[digest, length] for digest, length in self.blobs]]


@dataclass(frozen=True, slots=True)
class Rest:
    """The rest of blobs whose first `offset` bytes the server kept from a link that
    dropped: (digest, length, offset), answered in BLOBS by bytes offset..length, in
    order with the WANT entries. Only to a client whose HELLO has the `rest` capability."""

    blobs: tuple[tuple[bytes, int, int], ...]
    TYPE: ClassVar[MsgType] = MsgType.REST

    def fields(self) -> list[object]:
        return [[[digest, length, offset] for digest, length, offset in self.blobs]]


@dataclass(frozen=True, slots=True)
class Blobs:
    """Blob bytes answering WANT, in the order wanted: (digest, data)."""

    blobs: tuple[tuple[bytes, bytes], ...]
    TYPE: ClassVar[MsgType] = MsgType.BLOBS

    def fields(self) -> list[object]:
        return [[[digest, data] for digest, data in self.blobs]]


@dataclass(frozen=True, slots=True)
class Result:
    """The far side's outcome. `status` is "applied" or "up-to-date" (an apply that
    cannot complete is ERROR REMOTE); `root` is the far side's snapshot id afterwards."""

    status: str
    root: bytes
    files_applied: int
    files_deleted: int
    message: str = ""
    TYPE: ClassVar[MsgType] = MsgType.RESULT

    def fields(self) -> list[object]:
        return [self.status, self.root, self.files_applied, self.files_deleted, self.message]


@dataclass(frozen=True, slots=True)
class Report:
    """What the far side found after RESULT, sent only when the client's HELLO asked
    (`verify`, `post_apply`): its own parity check of the served root, and its post-apply
    command. `exit_status` is the command's exit code (128 + N when killed by signal N);
    `output` is the tail of what it printed."""

    snapshot: bytes
    verify: str
    summary: str
    post_apply: str
    exit_status: int
    output: str
    TYPE: ClassVar[MsgType] = MsgType.REPORT

    def fields(self) -> list[object]:
        return [
            self.snapshot,
            self.verify,
            self.summary,
            self.post_apply,
            self.exit_status,
            self.output,
        ]


@dataclass(frozen=True, slots=True)
class Error:
    code: int
    message: str
    TYPE: ClassVar[MsgType] = MsgType.ERROR

    def fields(self) -> list[object]:
        return [self.code, self.message]


@dataclass(frozen=True, slots=True)
class Bye:
    TYPE: ClassVar[MsgType] = MsgType.BYE

    def fields(self) -> list[object]:
        return []


Message = (
    Hello
    | Offer
    | State
    | GetTrees
    | Trees
    | Plan
    | Want
    | Rest
    | Blobs
    | Result
    | Error
    | Bye
    | Report
)

RESULT_STATUSES = ("applied", "up-to-date")
VERIFY_STATUSES = ("ok", "failed", "error", "skipped")
POST_APPLY_STATUSES = ("ok", "failed", "done-before", "skipped", "refused")
REPORT_SUMMARY_MAX = 4096
REPORT_OUTPUT_MAX = 16384


def encode_message(message: Message) -> list[object]:
    return [int(message.TYPE), *message.fields()]


def decode_message(value: object, limits: Limits) -> Message:
    if not isinstance(value, list) or not value:
        raise ProtocolError(ErrorCode.MALFORMED, "message is not a non-empty array")
    kind, fields = value[0], value[1:]
    decoder = _DECODERS.get(kind) if type(kind) is int else None
    if decoder is None:
        raise ProtocolError(ErrorCode.MALFORMED, f"unknown message type {kind!r}")
    arity, decode = decoder
    if len(fields) != arity:
        raise ProtocolError(ErrorCode.MALFORMED, f"{MsgType(kind).name}: wrong number of fields")
    return decode(fields, limits)


# -- decoders ---------------------------------------------------------------------------


def _hello(f: list[object], limits: Limits) -> Hello:
    versions = fixed(f[0], "HELLO versions", 2)
    low, high = uint(versions[0], "HELLO min version"), uint(versions[1], "HELLO max version")
    caps = tuple(text(c, "HELLO capability", 64) for c in array(f[2], "HELLO caps"))
    params = f[3]
    if type(params) is not dict:  # the codec bounds its size (limits.max_map)
        raise ProtocolError(ErrorCode.MALFORMED, "HELLO: params must be a map")
    for key, item in params.items():
        text(key, "HELLO param name", 64)
        if type(item) not in (str, int, bool):
            raise ProtocolError(ErrorCode.MALFORMED, f"HELLO: param {key!r} has a bad type")
    return Hello((low, high), text(f[1], "HELLO agent", 256), caps, params)


def _offer(f: list[object], limits: Limits) -> Offer:
    return Offer(
        digest(f[0], "OFFER root"),
        uint(f[1], "OFFER files"),
        uint(f[2], "OFFER bytes"),
        boolean(f[3], "OFFER complete"),
        boolean(f[4], "OFFER delete"),
    )


def _state(f: list[object], limits: Limits) -> State:
    counts = [uint(v, "STATE count") for v in f[1:]]
    return State(digest(f[0], "STATE root"), *counts)


def _get_trees(f: list[object], limits: Limits) -> GetTrees:
    ids = array(f[0], "GET_TREES", nonempty=True)
    return GetTrees(tuple(digest(i, "GET_TREES id") for i in ids))


def _trees(f: list[object], limits: Limits) -> Trees:
    records = []
    for item in array(f[0], "TREES", nonempty=True):
        key, record = fixed(item, "TREES entry", 2)
        records.append((digest(key, "TREES id"), data(record, "TREES record")))
    return Trees(tuple(records))


def _plan(f: list[object], limits: Limits) -> Plan:
    return Plan(uint(f[0], "PLAN blobs"), uint(f[1], "PLAN bytes"))


def _want(f: list[object], limits: Limits) -> Want:
    blobs = []
    for item in array(f[0], "WANT", nonempty=True):
        key, length = fixed(item, "WANT entry", 2)
        blobs.append((digest(key, "WANT digest"), uint(length, "WANT length", high=CHUNK_SIZE)))
    return Want(tuple(blobs))


def _rest(f: list[object], limits: Limits) -> Rest:
    blobs = []
    for item in array(f[0], "REST", nonempty=True):
        key, length, offset = fixed(item, "REST entry", 3)
        size = uint(length, "REST length", high=CHUNK_SIZE)
        kept = uint(offset, "REST offset", low=1, high=size - 1)  # inside the blob
        blobs.append((digest(key, "REST digest"), size, kept))
    return Rest(tuple(blobs))


def _blobs(f: list[object], limits: Limits) -> Blobs:
    blobs = []
    for item in array(f[0], "BLOBS", nonempty=True):
        key, content = fixed(item, "BLOBS entry", 2)
        blobs.append((digest(key, "BLOBS digest"), data(content, "BLOBS data")))
    return Blobs(tuple(blobs))


def _result(f: list[object], limits: Limits) -> Result:
    status = text(f[0], "RESULT status", 32)
    if status not in RESULT_STATUSES:
        raise ProtocolError(ErrorCode.MALFORMED, f"RESULT: unknown status {status!r}")
    return Result(
        status,
        digest(f[1], "RESULT root"),
        uint(f[2], "RESULT files applied"),
        uint(f[3], "RESULT files deleted"),
        text(f[4], "RESULT message", 4096),
    )


def _error(f: list[object], limits: Limits) -> Error:
    return Error(uint(f[0], "ERROR code", high=65535), text(f[1], "ERROR message", 65536))


def _bye(f: list[object], limits: Limits) -> Bye:
    return Bye()


def _report(f: list[object], limits: Limits) -> Report:
    verify = text(f[1], "REPORT verify", 32)
    if verify not in VERIFY_STATUSES:
        raise ProtocolError(ErrorCode.MALFORMED, f"REPORT: unknown verify status {verify!r}")
    post_apply = text(f[3], "REPORT post_apply", 32)
    if post_apply not in POST_APPLY_STATUSES:
        raise ProtocolError(
            ErrorCode.MALFORMED, f"REPORT: unknown post_apply status {post_apply!r}"
        )
    return Report(
        digest(f[0], "REPORT snapshot"),
        verify,
        text(f[2], "REPORT summary", REPORT_SUMMARY_MAX),
        post_apply,
        uint(f[4], "REPORT exit status", high=255),
        text(f[5], "REPORT output", REPORT_OUTPUT_MAX),
    )


_Decoder = Callable[[list[object], Limits], Message]

_DECODERS: dict[int, tuple[int, _Decoder]] = {
    MsgType.HELLO: (4, _hello),
    MsgType.OFFER: (5, _offer),
    MsgType.STATE: (5, _state),
    MsgType.GET_TREES: (1, _get_trees),
    MsgType.TREES: (1, _trees),
    MsgType.PLAN: (2, _plan),
    MsgType.WANT: (1, _want),
    MsgType.REST: (1, _rest),
    MsgType.BLOBS: (1, _blobs),
    MsgType.RESULT: (5, _result),
    MsgType.ERROR: (2, _error),
    MsgType.BYE: (0, _bye),
    MsgType.REPORT: (6, _report),
}
