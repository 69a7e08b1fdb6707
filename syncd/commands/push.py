"""`syncd push SRC TARGET`: make TARGET's tree equal SRC's, sending only what it lacks."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path

from protocol.errors import ProtocolError
from syncd.commands.targetflags import add_target_policy, policy_flags
from syncd.errors import SyncdError, UsageError
from syncd.exitcodes import ExitCode
from syncd.progress import for_terminal
from syncd.scan.api import ScanResult, scan_root
from syncd.scan.problems import Problem
from syncd.session.client import PushOptions, PushOutcome, push_session
from syncd.session.wire import Channel
from syncd.snapshot import SnapshotReader
from syncd.state import StateDir
from syncd.transport.connect import open_channel
from syncd.transport.ratelimit import parse_rate
from syncd.transport.target import Target, parse_target
from syncd.units import format_bytes


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
        "--bwlimit", metavar="RATE", help="cap the sending rate, e.g. 20M (bytes/s)"
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
    rate = parse_rate(args.bwlimit) if args.bwlimit else None
    started = time.monotonic()
    scan, outcome, where = asyncio.run(_push(args, target, rate))
    seconds = time.monotonic() - started
    if args.json:
        print(json.dumps(_summary(scan, outcome, where, seconds)))
    else:
        _print_summary(scan, outcome, where, seconds)
    result = outcome.result
    # With --no-delete the far tree may keep entries of its own, so its id may differ.
    exact = result.root == scan.summary.root or not args.delete
    if result.status == "staged" or not exact or scan.problems:
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


async def _push(
    args: argparse.Namespace, target: Target, rate: float | None
) -> tuple[ScanResult, PushOutcome, str]:
    # Scan here while connecting: the far side starts its own scan as soon as it runs,
    # so the two scans overlap instead of adding up.
    scanning = asyncio.create_task(asyncio.to_thread(_scan, args.src, args.state))
    try:
        channel: Channel = await open_channel(
            target,
            remote_syncd=args.remote_syncd,
            accept_new_host_key=args.accept_new_host_key,
            bwlimit=rate,
            serve_flags=policy_flags(args),
        )
    except BaseException:
        await asyncio.gather(scanning, return_exceptions=True)
        raise
    options = PushOptions(root=args.src, delete=args.delete, remote_root=target.path)
    progress = for_terminal(f"push to {channel.describe()}", quiet=args.json)
    try:
        with contextlib.ExitStack() as readers:
            # The session says HELLO now and OFFERs once the scan is done.
            source = asyncio.create_task(_open_snapshot(scanning, readers))
            try:
                outcome = await push_session(channel, source, options, progress)
            finally:
                await asyncio.gather(source, return_exceptions=True)
            return scanning.result(), outcome, channel.describe()
    except (SyncdError, ProtocolError) as exc:
        if scanning.done() and not scanning.cancelled() and scanning.exception() is exc:
            raise  # the source's own scan failed: nothing about the far side to add
        await channel.close()  # wait for the far side: its last words explain the most
        raise PushFailed(f"{channel.describe()}: {exc}{_far_words(channel)}") from exc
    finally:
        await channel.close()


async def _open_snapshot(
    scanning: asyncio.Task[ScanResult], readers: contextlib.ExitStack
) -> SnapshotReader:
    return readers.enter_context(SnapshotReader((await scanning).snapshot_path))


class PushFailed(SyncdError):
    """The push ended early; the far side's live tree is unchanged or fully applied."""


def _far_words(channel: Channel) -> str:
    """The far side's last line on stderr, when it said something the protocol did not."""
    lines = [line for line in channel.diagnostics().splitlines() if line.strip()]
    return f"\n  far side: {lines[-1]}" if lines else ""


def _summary(
    scan: ScanResult, outcome: PushOutcome, where: str, seconds: float
) -> dict[str, object]:
    result = outcome.result
    return {
        "snapshot": scan.summary.id_hex,
        "target": where,
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
        print(f"  far side: {result.message}")
