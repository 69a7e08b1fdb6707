"""One push session to one site: connect, offer the snapshot, collect the far side's REPORT.

This is `syncd push` without the terminal: the same transport (`open_channel`) and
session (`push_session`), asking the far side to check parity after the apply and to
run its post-apply command. `abort()` stops a session early and cleanly: it closes the
channel, so the far side reads the end of its input, keeps everything it staged
(durably), and the next session resumes from there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from protocol.errors import ProtocolError
from protocol.messages import Report, Result
from syncd.daemon.config import SiteConfig
from syncd.errors import SyncdError
from syncd.progress import Counting
from syncd.session.client import PushOptions, push_session
from syncd.session.wire import Channel
from syncd.snapshot import SnapshotReader
from syncd.transport.connect import open_channel
from syncd.transport.errors import ConnectError

CLOSE_GRACE = 5.0  # seconds an aborted session may take to close its channel


class PushError(SyncdError):
    """A session with a site failed; the message names the site's target."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True, slots=True)
class SessionOutcome:
    offered: str  # the snapshot id offered (hex)
    result: Result
    report: Report | None  # None: the far side cannot report (an older syncd)
    far_reports: bool
    wire_bytes: int
    payload_bytes: int


class SitePush:
    """One session; `run()` once, `abort()` from elsewhere to stop it early."""

    def __init__(
        self,
        site: SiteConfig,
        root: Path,
        snapshot: Path,
        on_plan: Callable[[int, int], None] | None = None,
        on_advance: Callable[[int], None] | None = None,
    ) -> None:
        self.site = site
        self.root = root
        self.snapshot = snapshot
        self.counters = Counting(on_plan=on_plan, on_advance=on_advance)
        self._channel: Channel | None = None
        self._aborted = False
        self._closing: asyncio.Task[None] | None = None

    async def run(self) -> SessionOutcome:
        try:
            self._channel = await self._connect()
        except ConnectError as exc:
            raise PushError(str(exc), unreachable=True) from None
        try:
            if self._aborted:
                raise PushError("stopped before the session began")
            return await self._session(self._channel)
        except (SyncdError, ProtocolError) as exc:
            if isinstance(exc, PushError):
                raise
            raise PushError(f"{self._channel.describe()}: {exc}{self._far_words()}") from None
        finally:
            await self._close()

    async def _connect(self) -> Channel:
        site = self.site
        return await open_channel(
            site.target,
            remote_syncd=site.remote_syncd,
            accept_new_host_key=site.accept_new_host_key,
            bwlimit=site.bwlimit,
        )

    async def _session(self, channel: Channel) -> SessionOutcome:
        options = PushOptions(
            root=self.root,
            delete=self.site.delete,
            remote_root=self.site.target.path,
            verify=self.site.verify,
            post_apply=self.site.post_apply,
        )
        with SnapshotReader(self.snapshot) as source:
            outcome = await push_session(channel, source, options, self.counters)
        return SessionOutcome(
            source.summary.id_hex,
            outcome.result,
            outcome.report,
            outcome.far_reports,
            outcome.wire_bytes_sent + outcome.wire_bytes_received,
            outcome.payload_bytes,
        )

    def abort(self) -> None:
        """Stop early: closing the channel ends the session (reads see the end, writes
        fail), and the far side keeps what it staged."""
        self._aborted = True
        if self._channel is not None and self._closing is None:
            self._closing = asyncio.ensure_future(self._channel.close())

    async def _close(self) -> None:
        if self._channel is None:
            return
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._channel.close())
        # Bounded: a far side that does not hang up in time is left to notice on its own
        # (our end of the connection goes away with us at the latest).
        with contextlib.suppress(TimeoutError, SyncdError, OSError):
            await asyncio.wait_for(asyncio.shield(self._closing), CLOSE_GRACE)

    def _far_words(self) -> str:
        if self._channel is None:
            return ""
        lines = [line for line in self._channel.diagnostics().splitlines() if line.strip()]
        return f" (far side: {lines[-1]})" if lines else ""
