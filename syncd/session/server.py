"""The far side of a push: `syncd serve --stdio` runs one of these per connection.

It scans its own root while the handshake runs, compares the offer with that fresh
scan, descends only where tree ids differ, asks for the blobs it has nowhere, stages
them (durably, so an interrupted push resumes), and applies only once everything the
offer needs is staged and verified. Its answers come from its own state, never from
what the source believes it sent.
"""

from __future__ import annotations

import asyncio
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
from syncd.apply.canon import TargetPolicy
from syncd.apply.engine import held_aliases, scan_far
from syncd.apply.routing import LiveBlobs, Routing, far_descent
from syncd.apply.staging import Staging
from syncd.errors import SyncdError
from syncd.gate.gated import gated_apply
from syncd.gate.inspection import GatePolicy
from syncd.gate.origin import Origin
from syncd.plan.descent import Descent
from syncd.scan.api import ScanResult
from syncd.session.afterapply import AfterApplyRequest, PostApplyPolicy, after_apply
from syncd.session.rootguard import check_asked_root, root_names
from syncd.session.wire import Channel, Wire
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
    # The paths a HELLO may name the root by (rootguard.root_names; empty: from `root`).
    root_names: frozenset[str] = frozenset()
    policy: TargetPolicy = field(default_factory=TargetPolicy)  # what a target may hold
    gate: GatePolicy = field(default_factory=GatePolicy)  # --inspect (syncd/gate/)


async def serve_session(channel: Channel, options: ServeOptions) -> Result:
    """Run one conversation to its end; raises ProtocolError, PeerError or SyncdError."""
    connection = Connection(Role.SERVER)
    scan = asyncio.create_task(asyncio.to_thread(_scan, options))
    async with Wire(connection, channel) as wire:
        try:
            return await _converse(wire, options, scan)
        except ProtocolError as exc:
            await wire.fail(exc.code, exc.message)
            raise
        except SyncdError as exc:
            await wire.fail(ErrorCode.REMOTE, str(exc))
            raise
        finally:
            if not scan.done():
                scan.cancel()


def _scan(options: ServeOptions) -> ScanResult:
    def report(problem: object) -> None:
        log.warning("scan: %s", problem)

    return scan_far(options.root, options.state, report=report)


async def _converse(wire: Wire, options: ServeOptions, scan: asyncio.Task[ScanResult]) -> Result:
    hello = await _first_hello(wire, options.handshake_timeout)
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
            result = Result("up-to-date", offer.root, 0, 0)
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
    await _fetch(wire, options, offer, current, staging)
    delete = offer.delete and offer.complete
    if offer.delete and not offer.complete:
        log.warning("the source's scan was incomplete: nothing will be deleted")

    def records(tree: bytes) -> bytes | None:
        return staging.tree_record(tree) or current.record(tree)

    applied = await asyncio.to_thread(
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
        )
    )
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


async def _fetch(
    wire: Wire, options: ServeOptions, offer: Offer, current: SnapshotReader, staging: Staging
) -> None:
    """Stage every tree and piece of the offer that this side lacks. What the descent
    and the transfer index (the trees asked for, the pieces wanted, the live pieces) is
    gone when this returns: the apply builds its own, and at a million entries each is
    some hundred megabytes."""
    live = LiveBlobs(current)
    route = Routing(staging)
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
    await wire.send(Plan(len(descent.wanted), descent.wanted_bytes))
    clock = time.monotonic()
    await _transfer(wire, descent.wanted, route)
    route.finish(options.root, live)
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
    run on their own thread, so the wire is read while the disk catches up."""
    with _StagingThread(route) as stager:
        await _receive(wire, wanted, stager)


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

    def __enter__(self) -> _StagingThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def stage(self, blobs: tuple[tuple[bytes, bytes], ...]) -> None:
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
