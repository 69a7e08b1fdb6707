"""Ctrl-C and SIGTERM stop a push, an export or an import at once, and say what was kept.

The first SIGINT or SIGTERM stops the command within `GRACE` seconds wherever it is
(scanning, connecting, sending at --bwlimit, staging, applying), and the command prints
one line: what stopped it, and what was kept (the far side's staged bytes, resumable;
an apply under way, journaled). The exit status is 128 + the signal: 130 for SIGINT,
143 for SIGTERM.

- Synchronous commands (export, import) get a signal handler that raises `Interrupted`
  in the main thread; the usual clean-ups run as for any error (the apply's journal and
  staging are made for exactly this: crash campaigns kill them anywhere).
- The push's event loop gets handlers that cancel its main task; the push closes its
  channel, so that the far side reads the end of its input and keeps what it staged.
- Either way a deadline thread ends the process `GRACE` s after the signal if the
  clean-up has not (a scan thread deep in a large file, a far side that does not hang
  up): it writes the same line and exits with the same status. What is left then is
  what a kill would leave, which is safe by design (staging and journal are durable,
  temporary files are discarded by the next run, the state lock goes with the process).
- A second signal ends the process at once, the same way.

A SIGINT that the shell set to be ignored (`syncd push ... &` in a script) is caught all
the same: a script's `kill -INT` means stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TypeVar

from syncd.exitcodes import ExitCode

GRACE = 1.5  # seconds between the signal and the process's end, at most
SIGNALS = (signal.SIGINT, signal.SIGTERM)
_T = TypeVar("_T")


STOPPABLE = frozenset({"push", "export", "import"})  # the commands this module serves


class EarlyStop(KeyboardInterrupt):
    """A signal before the command had set its own handlers: nothing was done yet."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _early(signum: int, frame: FrameType | None) -> None:
    raise EarlyStop(signum)


def stop_early(command: str | None) -> None:
    """From the CLI's first moment, for the STOPPABLE commands: SIGINT and SIGTERM raise
    EarlyStop, even where SIGINT was inherited ignored. Other commands keep Python's
    handling (serve, the daemon and the apply are made to survive SIGTERM's default)."""
    if command in STOPPABLE and threading.current_thread() is threading.main_thread():
        for signum in SIGNALS:
            signal.signal(signum, _early)


class Interrupted(BaseException):
    """The command was stopped by a signal; the message says what was kept.

    Not an Exception (as KeyboardInterrupt is not): raised by the signal handler wherever
    the main thread happens to be, it must not be caught by a handler meant for errors
    (a decoder's `except Exception` once reported a Ctrl-C as a malformed snapshot,
    exit 2), and no error path may note it as the apply's failure."""

    def __init__(self, signum: int, kept: str, stopper: Stopper | None = None) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}: {kept}")
        self.signum = signum
        self.exit_code = ExitCode(128 + signum)
        self._stopper = stopper

    def reported(self) -> None:
        """The line is out: should the exit still hang, the deadline only ends it."""
        if self._stopper is not None:
            self._stopper.reported = True


class Stopper:
    """The signals of one command run. `kept()` says what was kept, at any moment."""

    def __init__(self, command: str, kept: Callable[[], str]) -> None:
        self.command = command
        self.kept = kept
        self.signum: int | None = None
        self.reported = False
        self._deadline: threading.Timer | None = None

    @property
    def stopped(self) -> bool:
        return self.signum is not None

    def interrupted(self) -> Interrupted:
        assert self.signum is not None
        return Interrupted(self.signum, self.kept(), self)

    def _first(self, signum: int) -> None:
        """Record the signal and arm the deadline; a second signal ends the process."""
        if self.signum is not None:
            self._exit_now()
        self.signum = signum
        self._deadline = threading.Timer(GRACE, self._exit_now)
        self._deadline.daemon = True
        self._deadline.start()

    def _exit_now(self) -> None:
        """End the process with the line and status a clean stop would give."""
        signum = self.signum or signal.SIGTERM
        if self.reported:
            os._exit(128 + signum)
        try:
            line = f"syncd {self.command}: {Interrupted(signum, self.kept())}\n"
        except Exception:  # the process ends regardless
            line = f"syncd {self.command}: interrupted by {signal.Signals(signum).name}\n"
        with contextlib.suppress(OSError):
            os.write(2, line.encode(errors="replace"))
        os._exit(128 + signum)

    # -- synchronous commands ---------------------------------------------------------

    def _raise(self, signum: int, frame: FrameType | None) -> None:
        self._first(signum)
        raise self.interrupted()

    # -- the push's event loop --------------------------------------------------------

    def watch(self, task: asyncio.Task[object]) -> None:
        """Cancel `task` on the first signal (call from inside the running loop)."""
        loop = asyncio.get_running_loop()
        for signum in SIGNALS:
            loop.add_signal_handler(signum, self._cancel, signum, task)

    def _cancel(self, signum: int, task: asyncio.Task[object]) -> None:
        self._first(signum)
        task.cancel()

    def unwatch(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone already
            loop = asyncio.get_running_loop()
            for signum in SIGNALS:
                loop.remove_signal_handler(signum)


@contextlib.contextmanager
def stop_on_signals(command: str, kept: Callable[[], str]) -> Iterator[Stopper]:
    """For a synchronous command: SIGINT and SIGTERM raise `Interrupted` in the main
    thread (the previous handlers are back on leaving; after a signal the deadline stays
    armed until the process is gone, so that an exit that hangs still ends in time)."""
    stopper = Stopper(command, kept)
    if threading.current_thread() is not threading.main_thread():
        yield stopper  # signals reach the main thread only: nothing to catch here
        return
    previous = {signum: signal.signal(signum, stopper._raise) for signum in SIGNALS}
    try:
        yield stopper
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


async def in_daemon_thread(work: Callable[[], _T]) -> _T:
    """`work()` in a daemon thread: unlike asyncio.to_thread, interpreter exit does not
    wait for it, so a long scan never delays a stop (its temporary files are discarded by
    the next scan, and the state lock goes with the process)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def deliver(setter: Callable[[], None]) -> None:
        if not future.done():
            setter()

    def body() -> None:
        try:
            value = work()
        except BaseException as exc:  # handed to the awaiting task
            error = exc
            with contextlib.suppress(RuntimeError):  # the loop may be gone at exit
                loop.call_soon_threadsafe(deliver, lambda: future.set_exception(error))
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(deliver, lambda: future.set_result(value))

    threading.Thread(target=body, name="syncd-scan", daemon=True).start()
    return await future
