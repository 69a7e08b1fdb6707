"""One site's life in the daemon: when to push, and what a session's outcome means.

Each site has its own worker task, so a slow or failing site never holds the others up.
A worker pushes when there is a snapshot the site has not completed (applied, verified
there, and its post-apply command run), when its backoff has expired, and while its
time window is open; a window that closes mid-transfer stops the session the way
SIGTERM does (the far side keeps what it staged). A site is also pushed again `recheck`
seconds after its last success, so the far side's own scan re-confirms parity now and
then even when nothing changes here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from protocol.messages import Report
from syncd.daemon.backoff import Backoff
from syncd.daemon.config import SiteConfig
from syncd.daemon.logs import EventLog
from syncd.daemon.runner import PushError, SessionOutcome, SitePush
from syncd.daemon.sitestate import load_site, save_site
from syncd.daemon.windows import is_open, next_change
from syncd.session.afterapply import REPLACED

MAX_SLEEP = 3600.0  # re-evaluate at least hourly (clock changes, daylight saving)
CHECKPOINT_EVERY = 5.0  # seconds between saves of a transfer's figures, for `syncd status`
PROGRESS_EVERY = 60.0  # seconds between push-progress events in the log, at least


@dataclass(slots=True)
class _Transfer:
    """When the current session's transfer began, was last saved and last logged."""

    started: float
    saved: float = 0.0
    logged: float = 0.0

    def __post_init__(self) -> None:
        self.saved = self.logged = self.started


class WindowClosed(Exception):
    """The site's window closed during a session, which was stopped."""


class SiteWorker:
    def __init__(
        self,
        site: SiteConfig,
        *,
        root: Path,
        state_dir: Path,
        snapshot_file: Path,
        latest: Callable[[], str | None],
        backoff: Backoff,
        recheck: float,
        log: EventLog,
        on_change: Callable[[], None],
        source_verified: Callable[[], bool] = lambda: False,
    ) -> None:
        self.site = site
        self.root = root
        self.state_dir = state_dir
        self.snapshot_file = snapshot_file
        self.latest = latest  # the newest scanned snapshot id, None before the first scan
        self.backoff = backoff
        self.recheck = recheck
        self.log = log
        self.on_change = on_change  # tell the daemon (systemd STATUS) a phase changed
        self.source_verified = source_verified  # the snapshot sent passed its own check
        self.state = load_site(state_dir, site.name)
        self.state.target = str(site.target)
        self.backoff.failures = self.state.failures
        self._retry_at = 0.0  # monotonic; a restart retries at once
        self._wake = asyncio.Event()
        self._stopping = False
        self._push: SitePush | None = None
        self._transfer: _Transfer | None = None  # the session's transfer, once planned

    # -- control from the daemon ----------------------------------------------------------

    def new_snapshot(self) -> None:
        """A new scan is in: try now, whatever the backoff said."""
        self._retry_at = 0.0
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        if self._push is not None:
            self._push.abort()
        self._wake.set()

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        while not self._stopping:
            await self._wait_turn()
            if self._stopping:
                break
            await self._attempt()
        self._save()

    async def _wait_turn(self) -> None:
        while not self._stopping:
            self._wake.clear()
            delay = self._delay()
            if delay == 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(delay or MAX_SLEEP, MAX_SLEEP))

    def _delay(self) -> float | None:
        """0 to push now; else seconds to wait (None: until woken)."""
        wanted = self._wanted_in()
        if wanted != 0:
            self._set_phase("idle", next_attempt=None)
            return wanted
        retry = self._retry_at - time.monotonic()
        if retry > 0:
            self._set_phase("backoff", next_attempt=time.time() + retry)
            return retry
        now = datetime.now()
        if not is_open(self.site.windows, now):
            opens = next_change(self.site.windows, now)
            wait = (opens - now).total_seconds() if opens else MAX_SLEEP
            self._set_phase("waiting-window", next_attempt=time.time() + wait)
            return max(wait, 0.001)
        return 0

    def _wanted_in(self) -> float | None:
        """0 when a push is wanted; else when one will be (None: when the tree changes)."""
        latest = self.latest()
        if latest is None:
            return None
        if self.state.complete != latest or self.state.last_success is None:
            return 0
        if self.recheck <= 0:
            return None
        return max(0.0, self.state.last_success + self.recheck - time.time())

    # -- one attempt ------------------------------------------------------------------------

    async def _attempt(self) -> None:
        self._set_phase("pushing", next_attempt=None, save=False)
        self.state.last_attempt = time.time()
        self._save()
        started = time.monotonic()
        self.log.info(
            "push-start", site=self.site.name, target=str(self.site.target), snapshot=self.latest()
        )
        push = SitePush(self.site, self.root, self.snapshot_file, self._planned, self._advanced)
        self._push = push
        try:
            outcome = await self._within_window(push)
        except (PushError, WindowClosed) as exc:
            if self._stopping or isinstance(exc, WindowClosed):
                self._paused(push, "stopping" if self._stopping else "window closed")
            else:
                self._failed(push, exc, time.monotonic() - started)
            return
        finally:
            self._push = None
        self._judge(push, outcome, time.monotonic() - started)

    def _paused(self, push: SitePush, reason: str) -> None:
        """A session stopped on purpose: not a failure; the far side keeps what it staged."""
        counters = push.counters
        if counters.plan_bytes is not None:
            self.state.plan_bytes, self.state.bytes_pending = counters.plan_bytes, counters.pending
        self.log.info(
            "push-checkpoint", site=self.site.name, reason=reason, sent=counters.sent_bytes
        )
        self._set_phase("stopped" if self._stopping else "waiting-window", next_attempt=None)

    async def _within_window(self, push: SitePush) -> SessionOutcome:
        task = asyncio.ensure_future(push.run())
        closes = next_change(self.site.windows, datetime.now())
        timeout = None if closes is None else max(0.0, (closes - datetime.now()).total_seconds())
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if task in done:
            return task.result()
        self.log.warn("window-closed", site=self.site.name, window_end=closes)
        push.abort()
        with contextlib.suppress(PushError):
            await task
        raise WindowClosed("the site's time window closed; the transfer was stopped")

    def _planned(self, nbytes: int, blobs: int) -> None:
        """The far side's PLAN: what this session will send, saved at once for status."""
        self.state.plan_bytes = self.state.bytes_pending = nbytes
        self.state.plan_snapshot = self.latest()
        self._transfer = _Transfer(time.monotonic())
        self._save()
        self.log.info("push-plan", site=self.site.name, blobs=blobs, bytes=nbytes)

    def _advanced(self, sent: int) -> None:
        """Bytes written to the far side so far: saved every few seconds (so `syncd
        status` shows what is pending as of that checkpoint), logged at most once a
        minute."""
        planned, transfer = self.state.plan_bytes, self._transfer
        if planned is None or transfer is None:
            return
        self.state.bytes_pending = max(0, planned - sent)
        now = time.monotonic()
        if now - transfer.saved >= CHECKPOINT_EVERY:
            transfer.saved = now
            self._save()
        if now - transfer.logged >= PROGRESS_EVERY:
            transfer.logged = now
            self.log.info(
                "push-progress",
                site=self.site.name,
                sent=sent,
                pending=self.state.bytes_pending,
                planned=planned,
                rate=round(sent / max(now - transfer.started, 1e-3)),
            )

    def _judge(self, push: SitePush, outcome: SessionOutcome, seconds: float) -> None:
        """Record a session that ran to its end, and decide whether the site is done."""
        state, result, report = self.state, outcome.result, outcome.report
        state.offered = outcome.offered
        state.snapshot_applied = result.root.hex()
        state.bytes_sent_total += outcome.payload_bytes
        state.bytes_pending = 0
        self.log.info(
            "push-done",
            site=self.site.name,
            status=result.status,
            snapshot=outcome.offered,
            far_snapshot=result.root.hex(),
            bytes=outcome.payload_bytes,
            wire_bytes=outcome.wire_bytes,
            files_applied=result.files_applied,
            files_deleted=result.files_deleted,
            seconds=seconds,
        )
        if report is not None:
            self._record_report(outcome)
        problem = _problem(self.site, outcome, source_ok=self.source_verified())
        if problem is not None:
            self._failed(push, PushError(problem), seconds)
            return
        self.backoff.reset()
        state.complete = outcome.offered
        state.last_success = time.time()
        state.failures = 0
        state.last_error = None
        self._retry_at = 0.0
        self._set_phase("idle", next_attempt=None)
        self.log.info("site-complete", site=self.site.name, snapshot=outcome.offered)

    def _record_report(self, outcome: SessionOutcome) -> None:
        report = outcome.report
        assert report is not None
        now = time.time()
        snapshot = report.snapshot.hex()
        self.state.verify = {
            "status": report.verify,
            "summary": report.summary,
            "snapshot": snapshot,
            "at": now,
        }
        level = self.log.info if report.verify in ("ok", "skipped") else self.log.err
        level(
            "verify",
            site=self.site.name,
            snapshot=snapshot,
            result=report.verify,
            summary=report.summary.splitlines()[0] if report.summary else "",
        )
        if self.site.post_apply is None:
            return
        # The far side's own command ran instead of the one proposed: not "ok" for the
        # command this configuration names (afterapply.REPLACED).
        replaced = report.output.startswith(REPLACED)
        status = f"replaced, {report.post_apply}" if replaced else report.post_apply
        output = report.output[len(REPLACED) :] if replaced else report.output
        self.state.post_apply = {
            "status": status,
            "exit_status": report.exit_status,
            "output": output,
            "replaced": replaced,
            "snapshot": snapshot,
            "at": now,
        }
        good = report.post_apply in ("ok", "done-before")
        level = self.log.err if not good else self.log.warn if replaced else self.log.info
        level(
            "post-apply",
            site=self.site.name,
            snapshot=snapshot,
            status=status,
            exit_status=report.exit_status,
            output=_tail(output),
            note="the far side's --post-apply ran, not this site's post_apply"
            if replaced
            else None,
        )

    def _failed(self, push: SitePush, exc: Exception, seconds: float) -> None:
        state = self.state
        delay = self.backoff.next_delay()
        self._retry_at = time.monotonic() + delay
        state.failures = self.backoff.failures
        state.last_error = str(exc)
        state.last_error_at = time.time()
        if push.counters.plan_bytes is not None:
            state.plan_bytes = push.counters.plan_bytes
            state.bytes_pending = push.counters.pending
        unreachable = isinstance(exc, PushError) and exc.unreachable
        self.log.err(
            "site-unreachable" if unreachable else "push-failed",
            site=self.site.name,
            error=str(exc),
            attempt=state.failures,
            retry_in=round(delay, 3),
            sent=push.counters.sent_bytes,
            seconds=seconds,
        )
        self._set_phase("backoff", next_attempt=time.time() + delay)

    # -- bookkeeping ------------------------------------------------------------------------

    def _set_phase(self, phase: str, *, next_attempt: float | None, save: bool = True) -> None:
        changed = phase != self.state.phase
        moved = _moved(self.state.next_attempt, next_attempt)
        self.state.phase = phase
        self.state.next_attempt = next_attempt
        if save and (changed or moved):
            self._save()
        if changed:
            self.on_change()

    def _save(self) -> None:
        try:
            save_site(self.state_dir, self.state)
        except OSError as exc:
            self.log.err("state-write-failed", site=self.site.name, error=exc.strerror or exc)


def _problem(site: SiteConfig, outcome: SessionOutcome, *, source_ok: bool) -> str | None:
    """Why a session that ran to its end does not complete the site (None: it does)."""
    result, report = outcome.result, outcome.report
    if site.delete and result.root.hex() != outcome.offered:
        return f"the far side's tree is {result.root.hex()[:16]} after the apply, not the offer"
    return _report_problem(site, report, source_ok) if site.verify else None


def _report_problem(site: SiteConfig, report: Report | None, source_ok: bool) -> str | None:
    if report is None:
        return (
            "the far side cannot check parity after the apply (its syncd lacks the report "
            "capability: upgrade it)"
        )
    if report.verify != "ok":
        first = report.summary.splitlines()[0] if report.summary else ""
        # The source passed the same check before it was sent (sourcecheck.py): what
        # fails now is the far side's, and saying so sends the operator the right way.
        source = " (the source passed the same check before it was sent)" if source_ok else ""
        return f"parity check on the far side after the apply: {report.verify}{source}: {first}"
    if site.post_apply is None or report.post_apply in ("ok", "done-before"):
        return None
    if report.post_apply == "refused":
        return f"the far side refused the post-apply command: {report.output}"
    return f"post-apply command failed (exit status {report.exit_status}): {_tail(report.output)}"


def _tail(output: str, lines: int = 3) -> str:
    kept = [line for line in output.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def _moved(old: float | None, new: float | None) -> bool:
    if old is None or new is None:
        return old is not new
    return abs(old - new) > 1.0
