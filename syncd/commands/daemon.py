"""`syncd daemon --config FILE`: watch a root and keep its sites in step (syncd/daemon/).

A configuration with any problem stops the daemon before it starts (exit 2), with one
line naming the file, the line, the section and the key. Runs in the foreground; under
systemd (Type=notify) it reports readiness and pings the watchdog.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path

from syncd.daemon.config import DEFAULT_PATH, DaemonConfig, load_config
from syncd.daemon.sitestate import state_folder
from syncd.errors import UsageError
from syncd.state import StateDir, StateLocked


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "daemon",
        help="watch a root and push each new snapshot to every site, verified there",
        description="Watch the configured root; once the tree has been quiet, rescan it and "
        "push the snapshot to every site that is reachable and inside its time window, "
        "concurrently, retrying failures with backoff. Each site checks parity after the "
        "apply and, when that holds, runs its post-apply command once per snapshot. "
        "SIGHUP reloads the configuration; SIGTERM stops cleanly.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_PATH,
        metavar="FILE",
        help=f"the TOML configuration (default: {DEFAULT_PATH}; see examples/syncd.toml)",
    )
    parser.add_argument(
        "--check", action="store_true", help="check the configuration and exit (0 when usable)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)  # ConfigError: the CLI prints it and exits 2
    if args.check:
        print(f"{config.path}: ok ({len(config.sites)} sites, root {config.root})")
        return 0
    # Imported after the configuration is known to be good: the daemon's imports
    # (transports, watchfiles) are not needed to refuse a bad file.
    from syncd.daemon.logs import EventLog  # noqa: PLC0415
    from syncd.daemon.notify import (  # noqa: PLC0415
        Notifier,
        forget_environment,
        watchdog_interval,
    )
    from syncd.daemon.service import run_daemon  # noqa: PLC0415

    with one_daemon(config):
        notifier = Notifier.from_environment()
        watchdog = watchdog_interval()
        forget_environment()
        log = EventLog(fmt=config.log_format)
        try:
            return run_daemon(config, log, notifier, watchdog)
        finally:
            notifier.close()


@contextlib.contextmanager
def one_daemon(config: DaemonConfig) -> Iterator[None]:
    """One daemon per configuration: it holds the lock of its state folder's `daemon/`
    (where it keeps its records) for as long as it runs; a second one refuses to start,
    naming the first (two would push the same sites at once and overwrite each other's
    records)."""
    folder = state_folder(StateDir(config.root, config.state).path)
    try:
        with StateDir(config.root, folder).lock():
            yield
    except StateLocked as exc:
        raise UsageError(
            f"another syncd daemon ({exc.holder}) already runs this configuration "
            f"(its records are in {folder}): stop it first (systemctl stop syncd)"
        ) from None
