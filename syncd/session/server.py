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
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from protocol.connection import CAP_REPORT, Connection, Role, TreesReceived
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import (
    Blobs,
    Bye,
    GetTrees,
    Hello,
    Offer,
    Plan,
    Result,
    State,
    Want,
)
from syncd import __version__
from syncd.apply.engine import apply_target, scan_far
from syncd.apply.resume import resume_or_abandon
from syncd.apply.room import StagingLimit, expire, make_room
from syncd.apply.routing import LiveBlobs, Routing, far_descent
from syncd.apply.staging import Staging
from syncd.errors import SyncdError
from syncd.plan.descent import Descent
from syncd.scan.api import ScanResult
from syncd.session.afterapply import AfterApplyRequest, PostApplyPolicy, after_apply
from syncd.session.wire import Channel, PeerError, Wire
from syncd.snapshot import SnapshotReader
from syncd.state import StateDir

log = logging.getLogger("syncd.serve")
_M = TypeVar("_M")

TREES_PER_REQUEST = 512
MAX_TREES_DUE = 4 * TREES_PER_REQUEST
WANT_WINDOW_BYTES = 64 << 20
STAGING_AHEAD = 64 << 20
WANT_BATCH = 4096
# Blobs asked for and not yet received, at most. The byte window alone would let a tree
# of a million 71-byte link files be asked for at once, and each blob in flight costs
# both sides some hundred bytes of bookkeeping until it arrives.
WANT_WINDOW_BLOBS = 16 * WANT_BATCH
FLUSH_EVERY_BYTES = 64 << 20
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
    staging_limit: StagingLimit = field(default_factory=StagingLimit)


async def serve_session(channel: Channel, options: ServeOptions) -> Result:
    """Run one conversation to its end; raises ProtocolError, PeerError or SyncdError,
    having told the peer why with ERROR where the connection still allowed it (also when
    the root is locked by another session)."""
    connection = Connection(Role.SERVER)
    async with Wire(connection, channel) as wire:
        try:
            with options.state.lock():
                return await _session(wire, options)
        except ProtocolError as exc:
            await wire.fail(exc.code, exc.message)
            raise
        except SyncdError as exc:
            await wire.fail(ErrorCode.REMOTE, str(exc))
            raise


async def _session(wire: Wire, options: ServeOptions) -> Result:
    resumed = await asyncio.to_thread(resume_or_abandon, options.root, options.state)
    if resumed.result is not None:
        log.info("%s", resumed.describe())
    scan = asyncio.create_task(asyncio.to_thread(_scan, options))
    try:
        return await _converse(wire, options, scan)
    finally:
        # A scan started is let finish, under the lock: its stat cache serves the next
        # session, and nothing else may write the state folder meanwhile.
        await asyncio.wait([scan])
        if not scan.cancelled():
            scan.exception()  # retrieved: a failed scan was reported by _converse, or moot


def _scan(options: ServeOptions) -> ScanResult:
    def report(problem: object) -> None:
        log.warning("scan: %s", problem)

    return scan_far(options.root, options.state, report=report)


async def _converse(wire: Wire, options: ServeOptions, scan: asyncio.Task[ScanResult]) -> Result:
    hello = await _first_hello(wire, options.handshake_timeout)
    await _greet(wire, options, hello)
    offer = await _expect(wire, Offer)
    scanned = await scan
    with SnapshotReader(scanned.snapshot_path) as current, Staging.open(options.state) as staging:
        summary = current.summary
        await wire.send(
            State(
                summary.root, summary.files, summary.bytes, staging.blob_count, staging.blob_bytes
            )
        )
        if offer.root == summary.root:
            await asyncio.to_thread(expire, staging)
            result = Result("up-to-date", summary.root, 0, 0)
        else:
            result = await _sync(wire, options, offer, current, staging)
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
    _check_root(hello, options.root)
    params: dict[str, str | int | bool] = {
        "max_frame": options.max_frame,
        "root": str(options.root),
    }
    version = wire.connection.version or 1
    caps = (CAP_REPORT,)  # it answers `verify` and `post_apply` with a REPORT
    await wire.send(Hello((version, version), f"syncd {__version__}", caps, params))


def _check_root(hello: Hello, root: Path) -> None:
    asked = hello.params.get("root", "")
    if not isinstance(asked, str):
        raise ProtocolError(ErrorCode.MALFORMED, "HELLO root parameter must be a string")
    if asked and Path(asked).expanduser().resolve() != root.resolve():
        raise ProtocolError(
            ErrorCode.BAD_PATH, f"this far side serves {root}, not {asked}; nothing was changed"
        )


async def _sync(
    wire: Wire, options: ServeOptions, offer: Offer, current: SnapshotReader, staging: Staging
) -> Result:
    await _fetch(wire, options, offer, current, staging)
    delete = offer.delete and offer.complete
    if offer.delete and not offer.complete:
        log.warning("the source's scan was incomplete: nothing will be deleted")

    def records(tree: bytes) -> bytes | None:
        return staging.tree_record(tree) or current.record(tree)

    applied = await asyncio.to_thread(
        apply_target, options.root, options.state, offer.root, records, staging, delete=delete
    )
    log.info(
        "apply: %d files written, %d deleted, %d bytes, %d steps; %.2f s",
        applied.files_written,
        applied.files_deleted,
        applied.bytes_written,
        applied.steps,
        applied.seconds,
    )
    return Result("applied", applied.root, applied.files_written, applied.files_deleted)


async def _fetch(
    wire: Wire, options: ServeOptions, offer: Offer, current: SnapshotReader, staging: Staging
) -> None:
    """Stage every tree and piece of the offer that this side lacks. What the descent
    and the transfer index (the trees asked for, the pieces wanted, the live pieces) is
    gone when this returns: the apply builds its own, and at a million entries each is
    some hundred megabytes."""
    live = LiveBlobs(current)
    route = Routing(staging, live)
    descent = far_descent(offer.root, current, staging, live, route)
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
    await wire.send(Plan(len(descent.wanted), descent.wanted_bytes))
    clock = time.monotonic()
    await _transfer(wire, descent.wanted, route)
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


async def _transfer(wire: Wire, wanted: dict[bytes, int], route: Routing) -> None:
    """Ask for `wanted` within the credit window and stage what arrives; staging writes
    run on their own thread, so the wire is read while the disk catches up. However the
    transfer ends, what arrived whole is staged and made durable."""
    stager = _StagingThread(route)
    try:
        await _receive(wire, wanted, stager)
    except BaseException as exc:
        dropped = isinstance(exc, ProtocolError | PeerError)
        # The session's own error is the one to report; keeping what arrived is best effort.
        with contextlib.suppress(Exception):
            await stager.stage(_salvage(wire.connection) if dropped else ())
            await stager.close(flush=True)
        raise
    await stager.close(flush=False)


def _salvage(connection: Connection) -> tuple[tuple[bytes, bytes], ...]:
    """The blobs that arrived whole before the link dropped: whole frames still
    buffered (a failed write ends the loop before they are read), then the whole blobs
    of the frame cut short. Each is verified by the connection as any blob is."""
    kept: list[tuple[bytes, bytes]] = []
    with contextlib.suppress(ProtocolError):
        while isinstance(event := connection.next_event(), Blobs):
            kept += event.blobs
    kept += connection.salvage_blobs()
    if kept:
        log.info("link dropped mid-transfer: kept %d whole blobs of what was in flight", len(kept))
    return tuple(kept)


async def _receive(wire: Wire, wanted: dict[bytes, int], stager: _StagingThread) -> None:
    queue = iter(wanted.items())
    outstanding = blobs_out = 0
    pending = True
    while True:
        while pending and outstanding < WANT_WINDOW_BYTES and blobs_out < WANT_WINDOW_BLOBS:
            batch = _next_batch(queue, WANT_WINDOW_BYTES - outstanding)
            if not batch:
                pending = False
                break
            await wire.send(Want(tuple(batch)))
            outstanding += sum(length for _, length in batch)
            blobs_out += len(batch)
        if not pending and wire.connection.blobs_due == 0:
            await stager.drain()
            return
        event = await wire.next_event()
        if not isinstance(event, Blobs):
            raise ProtocolError(ErrorCode.UNEXPECTED, f"expected BLOBS, got {type(event).__name__}")
        outstanding -= sum(len(data) for _, data in event.blobs)
        blobs_out -= len(event.blobs)
        await stager.stage(event.blobs)


class _StagingThread:
    """One writer thread (so pieces are staged in the order they came), fed without
    waiting until STAGING_AHEAD bytes are in its hands."""

    def __init__(self, route: Routing) -> None:
        self._route = route
        self._pool = ThreadPoolExecutor(1, "syncd-stage")
        self._work: deque[tuple[asyncio.Future[None], int]] = deque()
        self._ahead = 0
        self._unflushed = 0

    async def close(self, *, flush: bool) -> None:
        """Let every queued write finish (a blob received is a blob kept), then, if
        asked, make staging durable; the first error of a write is raised. A session
        ending early must keep what arrived: its own error is raised afterwards."""
        try:
            await self.drain_all()
            if flush:
                await asyncio.get_running_loop().run_in_executor(
                    self._pool, self._route.staging.flush
                )
        finally:
            self._pool.shutdown(wait=True)

    async def drain_all(self) -> None:
        """Wait for every queued write, even after one failed; raise the first failure."""
        failure: BaseException | None = None
        while self._work:
            try:
                await self._oldest()
            except Exception as exc:  # the rest must still be written
                failure = failure or exc
        if failure is not None:
            raise failure

    async def stage(self, blobs: tuple[tuple[bytes, bytes], ...]) -> None:
        if not blobs:
            return
        size = sum(len(data) for _, data in blobs)
        self._submit(self._put_all, blobs, size)
        self._unflushed += size
        if self._unflushed >= FLUSH_EVERY_BYTES:
            self._submit(self._route.staging.flush, None, 0)
            self._unflushed = 0
        while self._ahead > STAGING_AHEAD:
            await self._oldest()

    def _put_all(self, blobs: tuple[tuple[bytes, bytes], ...]) -> None:
        for digest, data in blobs:
            self._route.put(digest, data)

    def _submit(self, work: Callable[..., None], argument: object, size: int) -> None:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, work, *([] if argument is None else [argument]))
        self._work.append((future, size))
        self._ahead += size

    async def _oldest(self) -> None:
        future, size = self._work.popleft()
        await future
        self._ahead -= size

    async def drain(self) -> None:
        while self._work:
            await self._oldest()


def _next_batch(queue: Iterator[tuple[bytes, int]], budget: int) -> list[tuple[bytes, int]]:
    batch: list[tuple[bytes, int]] = []
    size = 0
    for digest, length in queue:
        batch.append((digest, length))
        size += length
        if len(batch) >= WANT_BATCH or size >= budget:
            break
    return batch


async def _expect(wire: Wire, kind: type[_M]) -> _M:
    event = await wire.next_event()
    if not isinstance(event, kind):
        raise ProtocolError(
            ErrorCode.UNEXPECTED, f"expected {kind.__name__}, got {type(event).__name__}"
        )
    return event
