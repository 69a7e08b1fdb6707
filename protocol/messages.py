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
from protocol.limits import CHUNK_SIZE, DIGEST_SIZE, Limits

MAX_COUNT = 2**63 - 1


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
    """The far side's outcome. `status` is "applied", "up-to-date" or "staged" (all
    blobs kept, apply not done); `root` is the far side's snapshot id afterwards."""

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

RESULT_STATUSES = ("applied", "up-to-date", "staged")
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


# -- field checks -----------------------------------------------------------------------


def _int(value: object, what: str, maximum: int = MAX_COUNT) -> int:
    if type(value) is not int or not 0 <= value <= maximum:
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: expected an integer 0..{maximum}")
    return value


def _bool(value: object, what: str) -> bool:
    if type(value) is not bool:
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: expected a boolean")
    return value


def _str(value: object, what: str, limit: int = 4096) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: expected a string of <= {limit}")
    return value


def _digest(value: object, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != DIGEST_SIZE:
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: expected a {DIGEST_SIZE}-byte digest")
    return value


def _list(value: object, what: str, limits: Limits, *, nonempty: bool = True) -> list[object]:
    if not isinstance(value, list) or len(value) > limits.max_array or (nonempty and not value):
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: expected a non-empty array")
    return value


def _pair(value: object, what: str) -> list[object]:
    if not isinstance(value, list) or len(value) != 2:
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: expected a pair")
    return value


# -- decoders ---------------------------------------------------------------------------


def _hello(f: list[object], limits: Limits) -> Hello:
    versions = f[0]
    if not isinstance(versions, list) or len(versions) != 2:
        raise ProtocolError(ErrorCode.MALFORMED, "HELLO: versions must be [min, max]")
    low, high = _int(versions[0], "HELLO min version"), _int(versions[1], "HELLO max version")
    caps = tuple(
        _str(c, "HELLO capability", 64) for c in _list(f[2], "caps", limits, nonempty=False)
    )
    params = f[3]
    if not isinstance(params, dict) or len(params) > limits.max_map:
        raise ProtocolError(ErrorCode.MALFORMED, "HELLO: params must be a map")
    for key, item in params.items():
        _str(key, "HELLO param name", 64)
        if type(item) not in (str, int, bool):
            raise ProtocolError(ErrorCode.MALFORMED, f"HELLO: param {key!r} has a bad type")
    return Hello((low, high), _str(f[1], "HELLO agent", 256), caps, params)


def _offer(f: list[object], limits: Limits) -> Offer:
    return Offer(
        _digest(f[0], "OFFER root"),
        _int(f[1], "OFFER files"),
        _int(f[2], "OFFER bytes"),
        _bool(f[3], "OFFER complete"),
        _bool(f[4], "OFFER delete"),
    )


def _state(f: list[object], limits: Limits) -> State:
    counts = [_int(v, "STATE count") for v in f[1:]]
    return State(_digest(f[0], "STATE root"), *counts)


def _get_trees(f: list[object], limits: Limits) -> GetTrees:
    return GetTrees(tuple(_digest(i, "GET_TREES id") for i in _list(f[0], "GET_TREES", limits)))


def _trees(f: list[object], limits: Limits) -> Trees:
    records = []
    for item in _list(f[0], "TREES", limits):
        key, record = _pair(item, "TREES entry")
        if not isinstance(record, bytes):
            raise ProtocolError(ErrorCode.MALFORMED, "TREES: record must be bytes")
        records.append((_digest(key, "TREES id"), record))
    return Trees(tuple(records))


def _plan(f: list[object], limits: Limits) -> Plan:
    return Plan(_int(f[0], "PLAN blobs"), _int(f[1], "PLAN bytes"))


def _want(f: list[object], limits: Limits) -> Want:
    blobs = []
    for item in _list(f[0], "WANT", limits):
        digest, length = _pair(item, "WANT entry")
        blobs.append((_digest(digest, "WANT digest"), _int(length, "WANT length", CHUNK_SIZE)))
    return Want(tuple(blobs))


def _rest(f: list[object], limits: Limits) -> Rest:
    blobs = []
    for item in _list(f[0], "REST", limits):
        if not isinstance(item, list) or len(item) != 3:
            raise ProtocolError(ErrorCode.MALFORMED, "REST entry: expected three fields")
        digest = _digest(item[0], "REST digest")
        length = _int(item[1], "REST length", CHUNK_SIZE)
        offset = _int(item[2], "REST offset", CHUNK_SIZE)
        if not 0 < offset < length:
            raise ProtocolError(ErrorCode.MALFORMED, "REST: offset must lie inside the blob")
        blobs.append((digest, length, offset))
    return Rest(tuple(blobs))


def _blobs(f: list[object], limits: Limits) -> Blobs:
    blobs = []
    for item in _list(f[0], "BLOBS", limits):
        digest, data = _pair(item, "BLOBS entry")
        if not isinstance(data, bytes):
            raise ProtocolError(ErrorCode.MALFORMED, "BLOBS: data must be bytes")
        blobs.append((_digest(digest, "BLOBS digest"), data))
    return Blobs(tuple(blobs))


def _result(f: list[object], limits: Limits) -> Result:
    status = _str(f[0], "RESULT status", 32)
    if status not in RESULT_STATUSES:
        raise ProtocolError(ErrorCode.MALFORMED, f"RESULT: unknown status {status!r}")
    return Result(
        status,
        _digest(f[1], "RESULT root"),
        _int(f[2], "RESULT files applied"),
        _int(f[3], "RESULT files deleted"),
        _str(f[4], "RESULT message"),
    )


def _error(f: list[object], limits: Limits) -> Error:
    return Error(_int(f[0], "ERROR code", 65535), _str(f[1], "ERROR message", 65536))


def _bye(f: list[object], limits: Limits) -> Bye:
    return Bye()


def _report(f: list[object], limits: Limits) -> Report:
    verify = _str(f[1], "REPORT verify", 32)
    if verify not in VERIFY_STATUSES:
        raise ProtocolError(ErrorCode.MALFORMED, f"REPORT: unknown verify status {verify!r}")
    post_apply = _str(f[3], "REPORT post_apply", 32)
    if post_apply not in POST_APPLY_STATUSES:
        raise ProtocolError(
            ErrorCode.MALFORMED, f"REPORT: unknown post_apply status {post_apply!r}"
        )
    return Report(
        _digest(f[0], "REPORT snapshot"),
        verify,
        _str(f[2], "REPORT summary", REPORT_SUMMARY_MAX),
        post_apply,
        _int(f[4], "REPORT exit status", 255),
        _str(f[5], "REPORT output", REPORT_OUTPUT_MAX),
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
