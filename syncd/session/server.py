"""The far side of a push: `syncd serve --stdio` runs one of these per connection.

Under the root's lock it first finishes an apply a crash or failure cut short (without
letting that block this session: syncd/apply/resume.py), then scans its own root while
the handshake runs, compares the offer with that fresh scan, descends only where tree
ids differ, checks that the apply will fit (the staging quota and the free space,
syncd/apply/room.py: refused up front, naming the shortfall), asks for the blobs it has
nowhere, stages them (durably, so an interrupted push resumes), and applies only once
everything the offer needs is staged and verified. Its answers come from its own state,
never from what the source believes it sent.

Whatever ends a transfer early (the link dropping, EOF in the middle of a frame, a
hang-up), every blob that arrived whole is kept: the blobs of a frame cut short are
salvaged (protocol/salvage.py), those still queued for the disk are written, and
staging is made durable before the session ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from protocol.connection import CAP_REPORT, Connection, Role, TreesReceived
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import (
    Bye,
    GetTrees,
    Hello,
    Offer,
    Plan,
    Result,
    State,
)
from syncd import __version__
from syncd.apply.ahead import discard
from syncd.apply.canon import TargetPolicy
from syncd.apply.engine import ApplyResult, held_aliases, scan_far
from syncd.apply.resume import Resumed
from syncd.apply.room import StagingLimit, expire, make_room
from syncd.apply.routing import LiveBlobs, Routing, far_descent
from syncd.apply.staging import Staging
from syncd.errors import SyncdError
from syncd.gate.gated import Prepared, gated_apply, prepare_apply
from syncd.gate.inspection import GatePolicy
from syncd.gate.origin import Origin
from syncd.gate.resumed import resume_audited
from syncd.plan.descent import Descent
from syncd.scan.api import ScanResult
from syncd.session.afterapply import AfterApplyRequest, PostApplyPolicy, after_apply
from syncd.session.early import Early
from syncd.session.rootguard import check_asked_root, root_names
from syncd.session.transfer import Transfer
from syncd.session.wire import Channel, Wire
from syncd.snapshot import SnapshotReader
from syncd.state import StateDir

log = logging.getLogger("syncd.serve")
_M = TypeVar("_M")

TREES_PER_REQUEST = 512
MAX_TREES_DUE = 4 * TREES_PER_REQUEST
# A client sends HELLO as soon as it connects (OFFER may wait for its scan, which can
# take many minutes). One that does not (a stalled connection, a stray client on a
# forced command) would otherwise hold the root's lock, and so block every later push,
# for as long as sshd keeps the connection open.
HANDSHAKE_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class ServeOptions:
    root: Path
    state: StateDir
    max_frame: int
    post_apply: PostApplyPolicy = field(default_factory=PostApplyPolicy)
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    # The paths a HELLO may name the root by (rootguard.root_names; empty: from `root`).
    root_names: frozenset[str] = frozenset()
    policy: TargetPolicy = field(default_factory=TargetPolicy)  # what a target may hold
    staging_limit: StagingLimit = field(default_factory=StagingLimit)
    gate: GatePolicy = field(default_factory=GatePolicy)  # --inspect (syncd/gate/)


async def serve_session(channel: Channel, options: ServeOptions) -> Result:
    """Run one conversation to its end; raises ProtocolError, PeerError or SyncdError,
    having told the peer why with ERROR where the connection still allowed it (also when
    the root is locked by another session). A second ERROR for the same end is not sent
    (Wire.fail says nothing once the conversation is over)."""
    connection = Connection(Role.SERVER)
    async with Wire(connection, channel) as wire:
        try:
            # The lock is taken once the client has spoken: a silent one (a stray
            # connection, a stalled link) must not keep honest sessions out meanwhile.
            hello = await _first_hello(wire, options.handshake_timeout)
            with options.state.lock():
                return await _session(wire, options, hello)
        except ProtocolError as exc:
            await wire.fail(exc.code, exc.message)
            raise
        except SyncdError as exc:
            await wire.fail(ErrorCode.REMOTE, str(exc))
            raise


async def _session(wire: Wire, options: ServeOptions, hello: Hello) -> Result:
    resumed = await asyncio.to_thread(resume_audited, options.root, options.state)
    if resumed.result is not None:
        log.info("%s", resumed.describe())
    discard(options.state)  # a target written ahead by a session that crashed
    scan = asyncio.create_task(asyncio.to_thread(_scan, options))
    try:
        return await _converse(wire, options, scan, hello, _resume_note(resumed))
    except ProtocolError as exc:
        await wire.fail(exc.code, exc.message)  # at once, not once the scan is done
        raise
    except SyncdError as exc:
        await wire.fail(ErrorCode.REMOTE, str(exc))
        raise
    finally:
        # A scan started is let finish, under the lock: its stat cache serves the next
        # session, and nothing else may write the state folder meanwhile.
        await asyncio.wait([scan])
        if not scan.cancelled():
            scan.exception()  # retrieved: a failed scan was reported by _converse, or moot


def _resume_note(resumed: Resumed) -> str:
    """RESULT's message when the session first finished an interrupted apply."""
    done = resumed.result
    if done is None:
        return ""
    return (
        f"first finished an interrupted apply of {done.root.hex()[:16]} ({done.files_written} "
        f"files written, {done.files_deleted} deleted)"
    )


def _scan(options: ServeOptions) -> ScanResult:
    def report(problem: object) -> None:
        log.warning("scan: %s", problem)

    return scan_far(options.root, options.state, report=report)


async def _converse(
    wire: Wire, options: ServeOptions, scan: asyncio.Task[ScanResult], hello: Hello, note: str
) -> Result:
    await _greet(wire, options, hello)
    offer = await _expect(wire, Offer)
    scanned = await scan
    with (
        SnapshotReader(scanned.snapshot_path) as current,
        Staging.open(options.state) as staging,
        held_aliases(options.state, options.policy) as aliases,
    ):
        summary = current.summary
        await wire.send(
            State(
                summary.root, summary.files, summary.bytes, staging.blob_count, staging.blob_bytes
            )
        )
        if summary.root in (offer.root, aliases.live(offer.root, current.record)):
            # Up to date, also when this side holds the offer as it writes it (canon.py).
            await asyncio.to_thread(expire, staging)
            result = Result("up-to-date", offer.root, 0, 0)
        else:
            result = await _sync(wire, options, offer, current, staging)
        if note:  # what this session did before the offer: the client's counts omit it
            result = dataclasses.replace(result, message=note)
        await wire.send(result)
    request = AfterApplyRequest.from_hello(hello)
    if request.asked:
        await wire.send(
            await after_apply(options.root, options.state, result, request, options.post_apply)
        )
    await _expect(wire, Bye)
    return result


async def _first_hello(wire: Wire, timeout: float) -> Hello:
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            return await _expect(wire, Hello)
    except TimeoutError:
        if not deadline.expired():
            raise  # the channel's own timeout, not ours
        raise SyncdError(
            f"the client sent no HELLO within {timeout:g} s of connecting; nothing was changed"
        ) from None


async def _greet(wire: Wire, options: ServeOptions, hello: Hello) -> None:
    _check_root(hello, options)
    params: dict[str, str | int | bool] = {
        "max_frame": options.max_frame,
        "root": str(options.root),
    }
    version = wire.connection.version or 1
    caps = (CAP_REPORT,)  # it answers `verify` and `post_apply` with a REPORT
    await wire.send(Hello((version, version), f"syncd {__version__}", caps, params))


def _check_root(hello: Hello, options: ServeOptions) -> None:
    asked = str(hello.params.get("root", ""))  # a str: the connection checked (VERSION)
    names = options.root_names or root_names(options.root)
    check_asked_root(asked, options.root, names)


async def _sync(
    wire: Wire, options: ServeOptions, offer: Offer, current: SnapshotReader, staging: Staging
) -> Result:
    def records(tree: bytes) -> bytes | None:
        return staging.tree_record(tree) or current.record(tree)

    early = Early(
        lambda stop: prepare_apply(
            options.state, offer.root, records, current, policy=options.policy, stop=stop
        ),
        options.state,
    )
    try:
        await _fetch(wire, options, offer, current, staging, early=early)
        prepared = await early.result()
        applied = await _apply(options, offer, records, current, staging, prepared=prepared)
    finally:
        await early.close()
    log.info(
        "apply: %d files written, %d deleted, %d bytes, %d steps; %.2f s",
        applied.files_written,
        applied.files_deleted,
        applied.bytes_written,
        applied.steps,
        applied.seconds,
    )
    # The offer's id when the tree is the offer as this side writes it (SPEC.md 4, RESULT).
    root = offer.root if applied.root == applied.target else applied.root
    return Result("applied", root, applied.files_written, applied.files_deleted)


async def _apply(
    options: ServeOptions,
    offer: Offer,
    records: Callable[[bytes], bytes | None],
    current: SnapshotReader,
    staging: Staging,
    *,
    prepared: Prepared | None,
) -> ApplyResult:
    delete = offer.delete and offer.complete
    if offer.delete and not offer.complete:
        log.warning("the source's scan was incomplete: nothing will be deleted")
    return await asyncio.to_thread(
        lambda: gated_apply(
            options.root,
            options.state,
            offer.root,
            records,
            staging,
            delete=delete,
            current=current,
            origin=Origin.of_push(),
            gate=options.gate,
            policy=options.policy,
            prepared=prepared,
        )
    )


async def _fetch(
    wire: Wire,
    options: ServeOptions,
    offer: Offer,
    current: SnapshotReader,
    staging: Staging,
    *,
    early: Early,
) -> None:
    """Stage every tree and piece of the offer that this side lacks, `early` started
    once the trees are in. What the descent and the transfer index (the trees asked
    for, the pieces wanted, the live pieces) is gone when this returns: the apply builds
    its own, and at a million entries each is some hundred megabytes."""
    live = LiveBlobs(current)
    route = Routing(staging, live)
    with held_aliases(options.state, options.policy) as aliases:
        descent = far_descent(offer.root, current, staging, live, route, aliases=aliases)
        clock = time.monotonic()
        await _descend(wire, descent, staging)
    log.info(
        "descent: %d trees from the source, %d from staging; %d blobs (%d bytes) wanted; %.2f s",
        descent.trees_from_wire,
        descent.trees_from_staging,
        len(descent.wanted),
        descent.wanted_bytes,
        time.monotonic() - clock,
    )
    need = route.account(descent.wanted, options.state)
    room = await asyncio.to_thread(make_room, staging, options.state, need, options.staging_limit)
    for note in room.notes:
        log.info("staging: %s", note)
    await asyncio.to_thread(route.start)
    early.start()
    transfer = Transfer(wire, descent.wanted, route)
    await wire.send(Plan(len(descent.wanted), transfer.bytes_to_send))
    clock = time.monotonic()
    await transfer.run()
    await asyncio.to_thread(route.finish, options.root)
    staging.flush()
    log.info("transfer: staged %d bytes in %.2f s", descent.wanted_bytes, time.monotonic() - clock)


async def _descend(wire: Wire, descent: Descent, staging: Staging) -> None:
    """Ask for missing trees a few requests ahead, so the descent is not one round trip
    per directory level."""
    while True:
        while wire.connection.trees_due < MAX_TREES_DUE:
            ids = descent.next_requests(TREES_PER_REQUEST)
            if not ids:
                break
            await wire.send(GetTrees(tuple(ids)))
        if wire.connection.trees_due == 0 and descent.settled:
            return
        event = await wire.next_event()
        if not isinstance(event, TreesReceived):
            raise ProtocolError(ErrorCode.UNEXPECTED, f"expected TREES, got {type(event).__name__}")
        for tree in event.trees:
            staging.add_tree(tree.id, tree.record)
            descent.received(tree.children)


async def _expect(wire: Wire, kind: type[_M]) -> _M:
    event = await wire.next_event()
    if not isinstance(event, kind):
        raise ProtocolError(
            ErrorCode.UNEXPECTED, f"expected {kind.__name__}, got {type(event).__name__}"
        )
    return event
