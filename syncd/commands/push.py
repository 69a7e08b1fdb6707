"""`syncd push SRC TARGET`: make TARGET's tree equal SRC's, sending only what it lacks."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

from protocol.errors import ErrorCode, ProtocolError
from syncd.commands.targetflags import add_target_policy, policy_flags
from syncd.errors import SyncdError, UsageError
from syncd.exitcodes import ExitCode
from syncd.interrupt import Stopper, in_daemon_thread
from syncd.jsonout import dumps
from syncd.progress import Counting, Progress, for_terminal
from syncd.safetext import escape
from syncd.scan.api import ScanResult, scan_root
from syncd.scan.problems import Problem
from syncd.session.client import PushOptions, PushOutcome, push_session
from syncd.session.wire import Channel
from syncd.snapshot import SnapshotReader
from syncd.sourceguard import refuse_empty_source
from syncd.state import StateDir
from syncd.targetguard import refuse_nested, refuse_unknown_target
from syncd.transport.connect import open_channel
from syncd.transport.ratelimit import parse_rate
from syncd.transport.target import Target, parse_target
from syncd.units import format_bytes

STOP_CLOSE = 1.0  # seconds a stopped push waits for the far side to hang up
_T = TypeVar("_T")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "push",
        help="make a far tree equal this one, sending only what it lacks",
        description="Scan SRC, then make TARGET equal to it: the far side compares with its "
        "own fresh scan and asks for exactly the blobs it lacks; every blob is verified, "
        "staged, and applied in a crash-safe, registry-aware order. TARGET is "
        "ssh://[user@]host[:port]/path, [user@]host:/path, or a local path.",
    )
    parser.add_argument("src", type=Path, metavar="SRC")
    parser.add_argument("target", metavar="TARGET")
    parser.add_argument("--json", action="store_true", help="print one JSON summary object")
    delete = parser.add_mutually_exclusive_group()
    delete.add_argument(
        "--delete",
        dest="delete",
        action="store_true",
        default=True,
        help="delete far entries that SRC lacks (default; never after an incomplete scan)",
    )
    delete.add_argument("--no-delete", dest="delete", action="store_false", help="keep them")
    parser.add_argument(
        "--bwlimit",
        metavar="RATE",
        help="cap the sending rate in BYTES per second, decimal units: 10M, 10mb and 10MB/s "
        "all mean 10,000,000 B/s (80 Mbit/s); 4Mi is 4 MiB/s",
    )
    parser.add_argument(
        "--accept-new-host-key",
        action="store_true",
        help="trust an SSH host key seen for the first time (a changed key is always refused)",
    )
    parser.add_argument(
        "--remote-syncd",
        metavar="CMD",
        help="the far side's syncd command (default: `syncd` on the far PATH over SSH, "
        "this syncd for a local target)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace a TARGET that holds other files and looks like no oc-mirror root, "
        "registry storage or syncd root (the far side refuses it otherwise; a forced "
        "command on the far side decides this in its own arguments)",
    )
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="push a SRC that holds no files (refused otherwise: with delete, it would empty "
        "the far side; an unmounted file system looks just like that)",
    )
    parser.add_argument("--state", type=Path, help="SRC's state folder (default: SRC/.syncd)")
    add_target_policy(parser)  # for a local TARGET; over SSH, `serve` has its own
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    target = parse_target(args.target)
    if target.kind != "local" and policy_flags(args):
        raise UsageError(
            f"{' and '.join(policy_flags(args))}: for a local TARGET only; over SSH the far "
            "side's operator decides (syncd serve takes the same options)"
        )
    if target.kind == "local":
        # The far side checks its root itself (serve); said here first, with this
        # command's own flag, for a local target.
        refuse_nested(args.src, Path(target.path))
        far = Path(target.path).absolute()
        refuse_unknown_target(far, StateDir(far), force=args.force, flag="--force")
    rate = parse_rate(args.bwlimit) if args.bwlimit else None
    started = time.monotonic()
    counting = Counting(for_terminal(f"push to {target}", quiet=args.json))
    stopper = Stopper("push", lambda: _kept(counting))
    scan, outcome, where = asyncio.run(_until_stopped(_push(args, target, rate, counting), stopper))
    seconds = time.monotonic() - started
    if args.json:
        print(dumps("push", _summary(scan, outcome, str(target), where, seconds)))
    else:
        _print_summary(scan, outcome, where, seconds)
    result = outcome.result
    # With --no-delete the far tree may keep entries of its own, so its id may differ.
    exact = result.root == scan.summary.root or not args.delete
    if not exact or scan.problems:
        return int(ExitCode.PROBLEMS)
    return int(ExitCode.OK)


def _scan(src: Path, state: Path | None) -> ScanResult:
    def report(problem: Problem) -> None:
        print(f"syncd push: {src}: {problem}", file=sys.stderr)

    result = scan_root(src, StateDir(src, state), report=report)
    if not result.summary.complete:
        print(
            "syncd push: the scan left entries out: nothing will be deleted on the far side",
            file=sys.stderr,
        )
    return result


async def _until_stopped(work: Awaitable[_T], stopper: Stopper) -> _T:
    """`work`, cancelled by the first SIGINT or SIGTERM, which becomes `Interrupted`."""
    task = asyncio.current_task()
    assert task is not None
    stopper.watch(task)
    try:
        return await work
    except asyncio.CancelledError:
        if stopper.stopped:
            raise stopper.interrupted() from None
        raise
    finally:
        stopper.unwatch()


def _kept(counting: Counting) -> str:
    """What a stop leaves, in the words of the one line it prints."""
    planned, sent = counting.plan_bytes, counting.sent_bytes
    if planned is None:
        return "no blob had been sent; the far tree is unchanged"
    if sent < planned:
        return (
            f"about {format_bytes(sent)} of {format_bytes(planned)} had been sent; the far "
            "side keeps each blob that arrived whole (staged), so the next push sends only "
            "the rest; its live tree is unchanged"
        )
    return (
        "every blob had been sent, so the far side was applying: its apply is journaled "
        "and completes there on its own (or at its next session); push again to confirm"
    )


async def _push(
    args: argparse.Namespace, target: Target, rate: float | None, progress: Progress
) -> tuple[ScanResult, PushOutcome, str]:
    # Scan here while connecting: the far side starts its own scan as soon as it runs,
    # so the two scans overlap instead of adding up. In a daemon thread: a Ctrl-C in the
    # middle of a long scan does not wait for it.
    scanning = asyncio.ensure_future(in_daemon_thread(lambda: _scan(args.src, args.state)))
    try:
        channel: Channel = await open_channel(
            target,
            remote_syncd=args.remote_syncd,
            accept_new_host_key=args.accept_new_host_key,
            bwlimit=rate,
            serve_flags=policy_flags(args),
            force=args.force,
        )
    except BaseException:
        scanning.cancel()
        raise
    options = PushOptions(root=args.src, delete=args.delete, remote_root=target.path)
    closed = False
    try:
        with contextlib.ExitStack() as readers:
            # The session says HELLO now and OFFERs once the scan is done.
            allowed = args.allow_empty or not args.delete
            source = asyncio.create_task(_open_snapshot(scanning, readers, args.src, allowed))
            try:
                outcome = await push_session(channel, source, options, progress)
            finally:
                source.cancel()  # done already, unless the session ended first
                await asyncio.gather(source, return_exceptions=True)
            return scanning.result(), outcome, channel.describe()
    except asyncio.CancelledError:
        # Stopped: end our side now, so that the far side reads the end of its input
        # and keeps what it staged; wait briefly, never for an apply it may be running.
        closed = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(channel.close()), STOP_CLOSE)
        raise
    except (SyncdError, ProtocolError) as exc:
        if isinstance(exc, UsageError) or (
            scanning.done() and not scanning.cancelled() and scanning.exception() is exc
        ):
            raise  # the source's own scan failed or was refused: nothing about the far side
        await channel.close()  # wait for the far side: its last words explain the most
        words = _far_words(channel)
        if words and isinstance(exc, ProtocolError) and exc.code is ErrorCode.TRUNCATED:
            # It hung up without a word on the protocol: what it said on stderr is why.
            raise PushFailed(f"{channel.describe()}:{words}") from exc
        raise PushFailed(f"{channel.describe()}: {exc}{words}") from exc
    finally:
        if not closed:
            await channel.close()


async def _open_snapshot(
    scanning: asyncio.Future[ScanResult], readers: contextlib.ExitStack, src: Path, empty: bool
) -> SnapshotReader:
    """The scan's snapshot, once it is done, for the OFFER; an empty one is refused
    (syncd/sourceguard.py) before anything is offered unless `empty` allows it."""
    scan = await scanning
    refuse_empty_source(src, scan.summary, what="a push would delete", allowed=empty)
    return readers.enter_context(SnapshotReader(scan.snapshot_path))


class PushFailed(SyncdError):
    """The push ended early; the far side's live tree is unchanged or fully applied."""


def _far_words(channel: Channel) -> str:
    """The far side's last line on stderr, when it said something the protocol did not."""
    lines = [line for line in channel.diagnostics().splitlines() if line.strip()]
    return f"\n  far side: {lines[-1]}" if lines else ""


def _summary(
    scan: ScanResult, outcome: PushOutcome, target: str, where: str, seconds: float
) -> dict[str, object]:
    result = outcome.result
    return {
        "snapshot": scan.summary.id_hex,
        "target": target,  # as given (parsed), with no label
        "far_side": where,  # how the transport names it (an SSH alias resolved)
        "status": result.status,
        "far_before": outcome.far_before.root.hex() if outcome.far_before else None,
        "far_after": result.root.hex(),
        "wire_bytes_sent": outcome.wire_bytes_sent,
        "wire_bytes_received": outcome.wire_bytes_received,
        "payload_bytes": outcome.payload_bytes,
        "blobs_sent": outcome.blobs_sent,
        "trees_sent": outcome.trees_sent,
        "files_applied": result.files_applied,
        "files_deleted": result.files_deleted,
        "scan_seconds": round(scan.seconds, 3),
        "seconds": round(seconds, 3),
        "message": result.message,
    }


def _print_summary(scan: ScanResult, outcome: PushOutcome, where: str, seconds: float) -> None:
    result = outcome.result
    print(f"{where}: {result.status} snapshot {result.root.hex()[:16]}")
    print(
        f"  sent {outcome.blobs_sent} blobs ({format_bytes(outcome.payload_bytes)}), "
        f"{format_bytes(outcome.wire_bytes_sent)} on the wire; "
        f"{result.files_applied} files written, {result.files_deleted} deleted; {seconds:.2f} s"
    )
    if result.message:
        print(f"  far side: {escape(result.message)}")
