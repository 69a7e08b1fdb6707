"""The daemon: watch the root, rescan once it is quiet, hand each new snapshot to the sites.

    changes ──► quiet for `quiet` s ──► incremental scan ──► the source's own parity
                                                              check (sourcecheck.py)
                                                              │ holds: new snapshot id
                                  site workers (one task each) ◄┘  push, verify there,
                                                                   post-apply, backoff

Signals: SIGTERM/SIGINT stop (sessions are aborted, so the far sides keep what they
staged, and the process exits 0 within a few seconds); SIGHUP reloads the configuration
(a broken file is logged and the running configuration kept). systemd is told READY=1
once the watches are in place, STATUS= as things happen, and WATCHDOG=1 every half
watchdog interval from this event loop.

Scans run in a daemon thread, not the default executor: interpreter exit does not wait
for a daemon thread, so a long scan cannot delay a stop (its temporary files are
discarded by the next scan, and the state lock goes with the process).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Coroutine
from pathlib import Path

from syncd.daemon.backoff import Backoff
from syncd.daemon.config import ConfigError, DaemonConfig, SiteConfig, load_config
from syncd.daemon.logs import EventLog
from syncd.daemon.notify import Notifier
from syncd.daemon.scheduler import SiteWorker
from syncd.daemon.sitestate import save_daemon
from syncd.daemon.sourcecheck import SourceCheck, check_source
from syncd.daemon.watcher import Watcher
from syncd.errors import SyncdError
from syncd.interrupt import in_daemon_thread
from syncd.scan.api import ScanResult, scan_root
from syncd.state import StateDir, StateLocked

STOP_GRACE = 6.0  # seconds the sites get to close their sessions on SIGTERM
SCAN_RETRY = 30.0  # after a scan that could not run (state folder busy, root gone)


class Daemon:
    def __init__(
        self,
        config: DaemonConfig,
        log: EventLog,
        notifier: Notifier,
        watchdog: float | None = None,
    ) -> None:
        self.config = config
        self.log = log
        self.notifier = notifier
        self.watchdog = watchdog  # seconds between systemd's watchdog deadlines
        self.latest: str | None = None  # the newest snapshot id scanned
        self.source_check: SourceCheck | None = None  # of the newest scan
        self.scans = 0
        self.workers: dict[str, tuple[SiteWorker, asyncio.Task[None]]] = {}
        self._changed = asyncio.Event()
        self._last_change = time.monotonic()
        self._stop = asyncio.Event()
        self._signal: str | None = None
        self._watcher: Watcher | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._reloading = asyncio.Lock()  # one SIGHUP at a time
        self._background: set[asyncio.Task[None]] = set()

    @property
    def state(self) -> StateDir:
        return StateDir(self.config.root, self.config.state)

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (exit status 0) or an internal failure (1)."""
        self._install_signals()
        self.state.ensure()
        await self._start_watcher()
        for site in self.config.sites:
            self._start_worker(site)
        self.log.info(
            "start",
            config=self.config.path,
            root=self.config.root,
            sites=",".join(s.name for s in self.config.sites),
            pid=os.getpid(),
            watch="poll" if self._watcher and self._watcher.polling else "inotify",
        )
        self.notifier.ready(self._status())
        self._write_info()
        loops = [asyncio.create_task(self._scan_loop()), asyncio.create_task(self._watchdog())]
        self._mark_changed()  # the first scan, once the tree has been quiet
        await self._stop.wait()
        for loop in loops:
            loop.cancel()
        await self._shutdown()
        return 1 if self._failure is not None else 0

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self.stop, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self._spawn, self.reload)

    def _spawn(self, work: Callable[[], Coroutine[object, object, None]]) -> None:
        task = asyncio.ensure_future(work())
        self._background.add(task)  # keep a reference until it ends
        task.add_done_callback(self._background.discard)

    def stop(self, why: str = "request") -> None:
        if not self._stop.is_set():
            self._signal = why
            self._stop.set()

    def _fail(self, where: str, exc: BaseException) -> None:
        """An internal loop died: stop with status 1, so that systemd restarts us."""
        self.log.err("internal-error", where=where, error=f"{type(exc).__name__}: {exc}")
        self._failure = exc
        self.stop("failure")

    async def _shutdown(self) -> None:
        self.notifier.stopping()
        self.log.info("stopping", reason=self._signal)
        tasks = [task for _, task in self.workers.values()]
        for worker, _ in self.workers.values():
            worker.stop()
        if self._watcher is not None:
            self._watcher.stop()
        if self._watch_task is not None:
            tasks.append(self._watch_task)
        await _settle(tasks, STOP_GRACE)
        self._write_info(stopped=True)
        self.log.info("stopped", reason=self._signal)

    # -- watching and scanning ------------------------------------------------------------

    async def _start_watcher(self) -> None:
        state = self.state.path
        ignore = state if _inside(state, self.config.root) else None
        watcher = Watcher(
            self.config.root,
            ignore,
            self._mark_changed,
            poll_seconds=max(self.config.quiet, 30.0),
            quiet=self.config.quiet,
            on_fallback=lambda why: self.log.warn(
                "watch-fallback",
                error=why,
                hint="raise fs.inotify.max_user_watches; polling the tree meanwhile",
            ),
        )
        started = asyncio.Event()
        task = asyncio.create_task(self._guard("watcher", watcher.run(started)))
        waiting = asyncio.create_task(started.wait())
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        self._watcher, self._watch_task = watcher, task

    async def _guard(self, where: str, work: object) -> None:
        try:
            await work  # type: ignore[misc]
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any bug here must end in a restart
            self._fail(where, exc)

    def _mark_changed(self) -> None:
        self._last_change = time.monotonic()
        self._changed.set()

    async def _scan_loop(self) -> None:
        try:
            while True:
                await self._changed.wait()
                await self._until_quiet()
                self._changed.clear()
                await self._scan()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail("scan loop", exc)

    async def _until_quiet(self) -> None:
        while (left := self._last_change + self.config.quiet - time.monotonic()) > 0:
            await asyncio.sleep(left)

    async def _scan(self) -> None:
        root, state = self.config.root, self.state
        self.log.info("scan-start", root=root)
        self.notifier.status(f"scanning {root}")
        problems: list[str] = []
        try:
            result = await in_daemon_thread(
                lambda: scan_root(root, state, report=lambda p: problems.append(str(p)))
            )
        except (StateLocked, SyncdError, OSError) as exc:
            self.log.warn("scan-failed", root=root, error=str(exc), retry_in=SCAN_RETRY)
            self._last_change = time.monotonic() + SCAN_RETRY - self.config.quiet
            self._changed.set()
            self.notifier.status(self._status())
            return
        self.scans += 1
        check = None
        if result.summary.files:
            self.notifier.status(f"checking the source's parity ({root})")
            snapshot = result.summary.id_hex
            check = await in_daemon_thread(lambda: check_source(root, snapshot))
        self._scanned(result, problems, check)

    def _scanned(self, result: ScanResult, problems: list[str], check: SourceCheck | None) -> None:
        summary = result.summary
        for problem in problems[:20]:
            self.log.warn("scan-problem", problem=problem)
        self.log.info(
            "scan-done",
            snapshot=summary.id_hex,
            files=summary.files,
            bytes=summary.bytes,
            hashed=result.hashed_bytes,
            complete=summary.complete,
            problems=len(problems),
            seconds=result.seconds,
        )
        if summary.files == 0:
            # An empty root is far more often a missing mount or a wiped disk than a wish
            # to empty every site (which a push with delete would do): wait for content.
            self.log.warn("source-empty", root=self.config.root, hint="nothing is pushed")
            return
        new = summary.id_hex != self.latest
        self.latest = summary.id_hex
        self.source_check = check
        if check is not None and not check.holds:
            self.log.err(
                "source-broken",
                root=self.config.root,
                snapshot=summary.id_hex,
                error=check.problem(self.config.root),
                hint="nothing is pushed until the source passes (`syncd verify` shows all)",
            )
        elif new:
            if check is not None:
                self.log.info("source-verified", snapshot=summary.id_hex, result=check.summary)
            for worker, _ in self.workers.values():
                worker.new_snapshot()
        self._write_info()
        self.notifier.status(self._status())

    # -- sites ----------------------------------------------------------------------------

    def _start_worker(self, site: SiteConfig) -> None:
        config = self.config
        worker = SiteWorker(
            site,
            root=config.root,
            state_dir=self.state.path,
            snapshot_file=self.state.snapshot,
            latest=self._pushable,
            source_verified=lambda: (
                self.source_check is not None and self.source_check.status == "ok"
            ),
            backoff=Backoff(config.retry_first, config.retry_max),
            recheck=config.recheck,
            log=self.log,
            on_change=self._site_changed,
        )
        task = asyncio.create_task(self._guard(f"site {site.name}", worker.run()))
        self.workers[site.name] = (worker, task)

    def _pushable(self) -> str | None:
        """The snapshot sites may be sent: the newest, unless it fails its own check."""
        check = self.source_check
        if check is not None and check.snapshot == self.latest and not check.holds:
            return None
        return self.latest

    async def _stop_worker(self, name: str) -> None:
        worker, task = self.workers.pop(name)
        worker.stop()
        await _settle([task], STOP_GRACE)

    def _site_changed(self) -> None:
        self.notifier.status(self._status())

    # -- reload -----------------------------------------------------------------------------

    async def reload(self) -> None:
        """SIGHUP: read the file again; keep running on the old configuration if it is bad."""
        async with self._reloading:
            await self._reload()

    async def _reload(self) -> None:
        self.notifier.reloading()
        try:
            new = load_config(self.config.path)
        except ConfigError as exc:
            self.log.err("reload-failed", config=self.config.path, error=str(exc))
            self.notifier.ready(self._status())
            return
        old, self.config = self.config, new
        self.log.fmt = new.log_format
        moved = (old.root, old.state) != (new.root, new.state)
        if moved:
            await self._restart_watcher()
        for name in list(self.workers):
            if moved or new.site(name) != old.site(name) or old.recheck != new.recheck:
                await self._stop_worker(name)
        for site in new.sites:
            if site.name not in self.workers:
                self._start_worker(site)
        self.log.info("reload", config=new.path, sites=",".join(s.name for s in new.sites))
        self.notifier.ready(self._status())

    async def _restart_watcher(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        if self._watch_task is not None:
            await _settle([self._watch_task], STOP_GRACE)
        self.latest = None
        await self._start_watcher()
        self._mark_changed()

    # -- systemd ---------------------------------------------------------------------------

    async def _watchdog(self) -> None:
        interval = self.watchdog
        if interval is None:
            return
        while True:
            # Sent from this loop: if the loop stops turning, the pings stop.
            if not self.notifier.watchdog() and self.notifier.failed:
                self.log.warn("notify-failed", error=self.notifier.failed)
            await asyncio.sleep(interval / 2)

    def _status(self) -> str:
        snapshot = self.latest[:12] if self.latest else "none yet"
        sites = ", ".join(
            f"{name} {worker.state.phase}" for name, (worker, _) in sorted(self.workers.items())
        )
        return f"snapshot {snapshot}; {sites}"

    def _write_info(self, *, stopped: bool = False) -> None:
        info = {
            "pid": None if stopped else os.getpid(),
            "config": str(self.config.path),
            "root": str(self.config.root),
            "snapshot": self.latest,
            "source_check": self.source_check.as_json() if self.source_check else None,
            "scans": self.scans,
            "updated": time.time(),
            "stopped": stopped,
        }
        try:
            save_daemon(self.state.path, info)
        except OSError as exc:
            self.log.err("state-write-failed", error=exc.strerror or exc)


async def _settle(tasks: list[asyncio.Task[None]], grace: float) -> None:
    """Wait for `tasks` up to `grace` seconds, then cancel what is left (briefly)."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=grace)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=1.0)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def run_daemon(
    config: DaemonConfig, log: EventLog, notifier: Notifier, watchdog: float | None = None
) -> int:
    return asyncio.run(Daemon(config, log, notifier, watchdog).run())
