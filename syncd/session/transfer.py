"""The far side's transfer: ask for what the target lacks, stage what arrives, and keep
every byte it can when the link drops.

The server asks within a credit window (WANT), and stages what arrives on a thread of
its own, so the wire is read while the disk catches up. Blobs whose first bytes an
earlier, dropped session left (syncd/apply/partials.py) are asked for from there on
(REST, when the client has the `rest` capability); each such rest is joined with its
first bytes and the whole checked against its digest before it is staged, and one that
does not check is asked for again whole (the kept bytes are dropped).

However the transfer ends - the link dropping, EOF in the middle of a frame, a hang-up,
an error - what arrived is kept: the whole blobs of the frame cut short are salvaged
(protocol/salvage.py), the first bytes of the blob the cut fell in are kept for a REST,
the writes still queued for the disk are done, and staging is made durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import blake3

from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import Blobs, Rest, Want
from syncd.apply.routing import Routing
from syncd.session.hangup import DRAIN_MAX, DRAIN_PAUSE
from syncd.session.wire import PeerError, Wire

log = logging.getLogger("syncd.serve")

WANT_WINDOW_BYTES = 64 << 20
STAGING_AHEAD = 64 << 20
WANT_BATCH = 4096
# Blobs asked for and not yet received, at most. The byte window alone would let a tree
# of a million 71-byte link files be asked for at once, and each blob in flight costs
# both sides some hundred bytes of bookkeeping until it arrives.
WANT_WINDOW_BLOBS = 16 * WANT_BATCH
FLUSH_EVERY_BYTES = 64 << 20

Blob = tuple[bytes, bytes]


class Transfer:
    def __init__(self, wire: Wire, wanted: dict[bytes, int], route: Routing) -> None:
        self._wire = wire
        self._wanted = wanted
        self._route = route
        partials = route.staging.partials
        # Blobs to ask the rest of: digest -> bytes kept (less than the blob).
        self._rests: dict[bytes, int] = {}
        if wire.connection.rest_agreed:
            for digest, length in wanted.items():
                kept = partials.size(digest)
                if 0 < kept < length:
                    self._rests[digest] = kept
        partials.needed.update(self._rests)
        self._queue: deque[tuple[bytes, int]] = deque(
            (digest, length) for digest, length in wanted.items() if digest not in self._rests
        )

    @property
    def bytes_to_send(self) -> int:
        return sum(self._wanted.values()) - sum(self._rests.values())

    async def run(self) -> None:
        stager = _StagingThread(self._route)
        try:
            await self._receive(stager)
        except BaseException as exc:
            dropped = isinstance(exc, ProtocolError | PeerError)
            # The session's own error is the one to report; keeping what arrived is best
            # effort.
            with contextlib.suppress(Exception):
                if dropped:
                    await self._salvage(stager)
                await stager.close(flush=True)
            raise
        await stager.close(flush=False)

    async def _receive(self, stager: _StagingThread) -> None:
        connection = self._wire.connection
        outstanding = blobs_out = 0
        if self._rests:
            entries = [(d, self._wanted[d], kept) for d, kept in self._rests.items()]
            await self._wire.send(Rest(tuple(entries)))
            outstanding += sum(length - kept for _, length, kept in entries)
            blobs_out += len(entries)
        while True:
            while self._queue and self._room(outstanding, blobs_out):
                batch = self._next_batch(WANT_WINDOW_BYTES - outstanding)
                await self._wire.send(Want(tuple(batch)))
                outstanding += sum(length for _, length in batch)
                blobs_out += len(batch)
            if not self._queue and connection.blobs_due == 0:
                await stager.drain()
                return
            event = await self._wire.next_event()
            if not isinstance(event, Blobs):
                raise ProtocolError(
                    ErrorCode.UNEXPECTED, f"expected BLOBS, got {type(event).__name__}"
                )
            outstanding -= sum(len(data) for _, data in event.blobs)
            blobs_out -= len(event.blobs)
            await stager.stage(self._joined(event.blobs))

    @staticmethod
    def _room(outstanding: int, blobs_out: int) -> bool:
        return outstanding < WANT_WINDOW_BYTES and blobs_out < WANT_WINDOW_BLOBS

    def _next_batch(self, budget: int) -> list[tuple[bytes, int]]:
        batch: list[tuple[bytes, int]] = []
        size = 0
        while self._queue:
            digest, length = self._queue.popleft()
            batch.append((digest, length))
            size += length
            if len(batch) >= WANT_BATCH or size >= budget:
                break
        return batch

    def _joined(self, blobs: tuple[Blob, ...] | list[Blob]) -> tuple[Blob, ...]:
        """The blobs as received, each REST answer joined with the bytes kept before it
        and checked; one that does not check is asked for again, whole."""
        out: list[Blob] = []
        for digest, data in blobs:
            if self._rests.pop(digest, None) is None:
                out.append((digest, data))  # whole, verified by the connection
                continue
            partials = self._route.staging.partials
            whole = (partials.read(digest) or b"") + data
            if len(whole) == self._wanted[digest] and blake3.blake3(whole).digest() == digest:
                out.append((digest, whole))
            else:
                log.warning("the bytes kept of blob %s were not its own: asked again", digest.hex())
                self._queue.append((digest, self._wanted[digest]))
            partials.drop(digest)
        return tuple(out)

    async def _salvage(self, stager: _StagingThread) -> None:
        """Keep what arrived before the link dropped: whole frames still buffered (a failed
        write ends the loop before they are read), the whole blobs of the frame cut short,
        and the first bytes of the blob the cut fell in."""
        connection = self._wire.connection
        kept: list[Blob] = []
        # A failed write ends the session before the input that had already arrived is
        # read (the crash campaign's killed sshd session lost a whole frame that way).
        await self._wire.take_input(DRAIN_MAX, DRAIN_PAUSE)
        with contextlib.suppress(ProtocolError):
            while isinstance(event := connection.next_event(), Blobs):
                kept += event.blobs
        whole, cut = connection.salvage_blobs()
        kept += whole
        rest = self._rests.get(cut[0], 0) if cut else 0
        await stager.stage(self._joined(kept))
        if cut is not None:
            await stager.keep_partial(cut[0], cut[1], rest)
        if kept or cut:
            log.info(
                "link dropped mid-transfer: kept %d whole blobs%s of what was in flight",
                len(kept),
                f" and {len(cut[1])} bytes of one more" if cut else "",
            )


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

    async def stage(self, blobs: tuple[Blob, ...]) -> None:
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

    async def keep_partial(self, digest: bytes, data: bytes, after: int) -> None:
        """Keep the first bytes of a cut blob (`data` following the `after` bytes kept
        before), once the writes before it are done."""

        def keep(_: object) -> None:
            partials = self._route.staging.partials
            before = (partials.read(digest) or b"")[:after] if after else b""
            if len(before) == after:
                partials.keep(digest, before + data)

        self._submit(keep, digest, 0)

    def _put_all(self, blobs: tuple[Blob, ...]) -> None:
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
