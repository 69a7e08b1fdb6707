"""The source side of a push: offer a snapshot, answer what the far side asks for.

The far side drives: it asks for trees it lacks, then for blobs by digest. The client
answers tree requests at once and streams blobs through an ordered pipeline (reads in
worker threads, frames in the order asked), within the far side's WANT credit.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from protocol.connection import CAP_REPORT, CAP_REST, MIN_PEER_FRAME, Connection, Role
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import (
    Blobs,
    Bye,
    GetTrees,
    Hello,
    Offer,
    Plan,
    Report,
    Rest,
    Result,
    State,
    Trees,
    Want,
)
from syncd import __version__
from syncd.apply.blobindex import BlobIndex
from syncd.errors import SyncdError
from syncd.progress import NoProgress, Progress
from syncd.session.pieces import Locate, batches, read_pieces
from syncd.session.wire import Channel, OnWritten, Wire
from syncd.snapshot import SnapshotReader
from syncd.tasks import cancel_and_wait

FRAME_SLACK = 4096  # msgpack envelope around the payload of one frame
ITEM_SLACK = 64  # msgpack overhead of one item inside a frame
# Batches read ahead of the one being sent (a batch is <= 8 MiB, or one piece <= 16 MiB).
READS_AHEAD = 1
Item = tuple[bytes, bytes]  # (tree id or blob digest, its bytes)


def _read_rest(
    root: str, locate: Locate, batch: list[tuple[bytes, int]], offsets: dict[bytes, int]
) -> list[tuple[bytes, bytes]]:
    """The pieces of `batch`, each cut to what follows its offset (REST; none for WANT)."""
    pieces = read_pieces(root, locate, batch)
    if not offsets:
        return pieces
    return [(digest, data[offsets.get(digest, 0) :]) for digest, data in pieces]


# Blobs are sent in frames of about this many bytes (a larger blob goes alone): the far
# side stages a frame once it is whole, so on a slow link that drops, a 16 MiB frame
# would take minutes of what arrived with it (issue 14: a drop at 8 s of 1 MB/s kept
# 1.7 of 8 MB).
BLOB_FRAME_BYTES = 1 << 20


@dataclass(slots=True)
class PushOutcome:
    result: Result
    far_before: State | None = None
    trees_sent: int = 0
    blobs_sent: int = 0
    payload_bytes: int = 0
    wire_bytes_sent: int = 0
    wire_bytes_received: int = 0
    # The far side's REPORT, when options asked for one and the far side can give it.
    report: Report | None = None
    far_reports: bool = False  # the far side has the `report` capability


@dataclass(frozen=True, slots=True)
class PushOptions:
    root: Path
    delete: bool
    remote_root: str  # the path the far side should serve ("" when it decides)
    max_frame: int = MIN_PEER_FRAME + 64 * 1024
    verify: bool = False  # ask the far side to check parity after the apply (REPORT)
    # Ask it to run its post-apply command once parity holds: the command proposed, or ""
    # for the far side's own; None asks for nothing. The far side decides (SPEC.md).
    post_apply: str | None = None

    @property
    def wants_report(self) -> bool:
        return self.verify or self.post_apply is not None


async def push_session(
    channel: Channel,
    source: SnapshotReader | Awaitable[SnapshotReader],
    options: PushOptions,
    progress: Progress | None = None,
) -> PushOutcome:
    """Run one push conversation to its end. `source` may still be on its way (a scan
    running): HELLO goes out at once, OFFER when the snapshot is there, so the far
    side's handshake timeout never depends on how long the scan takes."""
    wire = Wire(Connection(Role.CLIENT), channel)
    async with wire:
        session = _Session(wire, source, options, progress or NoProgress())
        try:
            return await session.run()
        except ProtocolError as exc:
            await wire.fail(exc.code, exc.message)
            raise session.sender_error() or exc from None
        except SyncdError as exc:
            await wire.fail(ErrorCode.REMOTE, str(exc))
            raise
        finally:
            await session.stop()
            if progress is not None:
                progress.finish()


def _pro_rata(payload: int, advance: Callable[[int], None]) -> OnWritten:
    """Progress in payload bytes as a frame of `payload` bytes of blobs is written."""
    written = reported = 0

    def on_written(nbytes: int, frame_length: int) -> None:
        nonlocal written, reported
        written += nbytes
        share = payload * written // frame_length
        advance(share - reported)
        reported = share

    return on_written


class _Session:
    def __init__(
        self,
        wire: Wire,
        source: SnapshotReader | Awaitable[SnapshotReader],
        options: PushOptions,
        progress: Progress,
    ) -> None:
        self.wire = wire
        self._pending: SnapshotReader | Awaitable[SnapshotReader] | None = source
        self.source: SnapshotReader  # set by run(), once the snapshot is there
        self.options = options
        self.progress = progress
        self.outcome = PushOutcome(Result("up-to-date", b"", 0, 0))  # set by _finish()
        self._index: BlobIndex | None = None
        # Batches of pieces to read, in the far side's order; None ends the queue.
        self._reads: asyncio.Queue[tuple[list[tuple[bytes, int]], dict[bytes, int]] | None] = (
            asyncio.Queue()
        )
        self._sender: asyncio.Task[None] | None = None  # started by run()

    async def run(self) -> PushOutcome:
        self._sender = asyncio.create_task(self._send_blobs())
        # `rest`: it can send the rest of a blob whose first bytes the far side kept.
        caps = (CAP_REST,)
        await self.wire.send(Hello((1, 1), f"syncd {__version__}", caps, self._params()))
        pending, self._pending = self._pending, None
        assert pending is not None, "run() is called once"
        self.source = pending if isinstance(pending, SnapshotReader) else await pending
        summary = self.source.summary
        await self.wire.send(
            Offer(summary.root, summary.files, summary.bytes, summary.complete, self.options.delete)
        )
        return await self._converse()

    def _params(self) -> dict[str, str | int | bool]:
        params: dict[str, str | int | bool] = {
            "max_frame": self.options.max_frame,
            "root": self.options.remote_root,
        }
        if self.options.verify:
            params["verify"] = True
        if self.options.post_apply is not None:
            params["post_apply"] = self.options.post_apply
        return params

    async def _converse(self) -> PushOutcome:
        result: Result | None = None
        while True:
            event = await self.wire.next_event()
            if isinstance(event, Hello):
                self.outcome.far_reports = CAP_REPORT in event.caps
            elif isinstance(event, State):
                self.outcome.far_before = event
            elif isinstance(event, GetTrees):
                await self._answer_trees(event.ids)
            elif isinstance(event, Plan):
                self.progress.start(event.bytes, event.blobs)
            elif isinstance(event, Want):
                self._queue_reads(event.blobs)
            elif isinstance(event, Rest):
                self._queue_reads(tuple((d, n) for d, n, _ in event.blobs), event.blobs)
            elif isinstance(event, Result):
                result = event
                if not (self.options.wants_report and self.outcome.far_reports):
                    return await self._finish(result)
            elif isinstance(event, Report) and result is not None:
                self.outcome.report = event
                return await self._finish(result)
            else:
                raise ProtocolError(ErrorCode.UNEXPECTED, f"unexpected {type(event).__name__}")

    async def _finish(self, result: Result) -> PushOutcome:
        await self.wire.send(Bye())
        await self.wire.flush()
        self.outcome.result = result
        self.outcome.wire_bytes_sent = self.wire.bytes_sent
        self.outcome.wire_bytes_received = self.wire.bytes_received
        return self.outcome

    async def _answer_trees(self, ids: tuple[bytes, ...]) -> None:
        for frame in self._frames(self._tree_records(ids)):
            await self.wire.send(Trees(frame))
        self.outcome.trees_sent += len(ids)

    def _tree_records(self, ids: tuple[bytes, ...]) -> Iterator[tuple[bytes, bytes]]:
        for tree_id in ids:
            record = self.source.record(tree_id)
            if record is None:
                raise SyncdError(
                    f"the far side asked for tree {tree_id.hex()}, which the source lacks"
                )
            yield tree_id, record

    def _frames(self, items: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[Item, ...]]:
        """Runs of (id, bytes) items that each fit one frame the far side accepts."""
        return pack_frames(items, self.wire.connection.peer_max_frame - FRAME_SLACK)

    # -- blobs: reads in threads, frames in order --------------------------------------

    def _queue_reads(
        self,
        wanted: tuple[tuple[bytes, int], ...],
        rests: tuple[tuple[bytes, int, int], ...] = (),
    ) -> None:
        """Queue the pieces asked for, in order; for a REST, only the rest of each."""
        self._locator()  # built here, on the loop, before any read thread asks
        offsets = {digest: offset for digest, _, offset in rests}
        for batch in batches(wanted):
            self._reads.put_nowait((batch, offsets))

    def _locator(self) -> Locate:
        if self._index is None:
            self._index = BlobIndex.build(self.source)
        index = self._index

        def locate(digest: bytes) -> tuple[str, int, int] | None:
            where = index.locate(digest)
            return None if where is None else (where.path, where.offset, where.length)

        return locate

    async def _send_blobs(self) -> None:
        try:
            await self._send_blob_frames()
        except (SyncdError, OSError) as exc:
            # The conversation cannot go on without these bytes: say why and stop; the
            # main loop then sees the connection close and raises this error.
            await self.wire.fail(ErrorCode.REMOTE, str(exc))
            raise

    async def _send_blob_frames(self) -> None:
        """Send the queued batches in order, reading at most READS_AHEAD batches ahead of
        the one being sent: the far side's window alone (64 MiB) would let every read
        of it finish into memory while the first frames still wait for the pipe."""
        root = str(self.options.root)
        ahead: deque[asyncio.Future[list[tuple[bytes, bytes]]]] = deque()
        ended = False
        loop = asyncio.get_running_loop()
        budget = min(self.wire.connection.peer_max_frame - FRAME_SLACK, BLOB_FRAME_BYTES)
        # One reading thread: buffers freed by the sender are reused by the next read
        # (a malloc arena per pool thread kept ~100 MiB of freed 16 MiB pieces resident).
        reader = ThreadPoolExecutor(1, "syncd-read")
        try:
            while True:
                while not ended and len(ahead) < READS_AHEAD and (not ahead or self._reads.qsize()):
                    queued = await self._reads.get()
                    if queued is None:
                        ended = True
                    else:
                        batch, offsets = queued
                        locate = self._locator()
                        ahead.append(
                            loop.run_in_executor(reader, _read_rest, root, locate, batch, offsets)
                        )
                if not ahead:
                    return
                for frame in pack_frames(await ahead.popleft(), budget):
                    payload = sum(len(data) for _, data in frame)
                    await self.wire.room_for(payload)
                    await self.wire.send(Blobs(frame), _pro_rata(payload, self.progress.advance))
                    self.outcome.blobs_sent += len(frame)
                    self.outcome.payload_bytes += payload
        finally:
            for read in ahead:
                read.cancel()
            reader.shutdown(wait=False, cancel_futures=True)

    def sender_error(self) -> BaseException | None:
        sender = self._sender
        if sender is not None and sender.done() and not sender.cancelled():
            return sender.exception()
        return None

    async def stop(self) -> None:
        if inspect.iscoroutine(self._pending):  # never awaited: the session failed first
            self._pending.close()
        if self._sender is not None:
            await cancel_and_wait(self._sender)


def pack_frames(items: Iterable[Item], budget: int) -> Iterator[tuple[Item, ...]]:
    """Split `items`, in order, into runs of at most `budget` bytes each (an item larger
    than the budget goes alone; the connection refuses it if the peer would)."""
    frame: list[Item] = []
    size = 0
    for item in items:
        if frame and size + len(item[1]) + ITEM_SLACK > budget:
            yield tuple(frame)
            frame, size = [], 0
        frame.append(item)
        size += len(item[1]) + ITEM_SLACK
    if frame:
        yield tuple(frame)
