"""Errors that end a command with a clear message and no traceback.

Anything raised as a `SyncdError` is printed as one line by the CLI; its text must name
what is wrong (the path, the volume, the host) so that the user can act on it.
"""

from __future__ import annotations

from syncd.exitcodes import ExitCode


class SyncdError(Exception):
    exit_code: ExitCode = ExitCode.FAILED


class UsageError(SyncdError):
    """The command line or a configuration names something that cannot be used."""


class ScanAborted(SyncdError):
    """--strict scan stopped at the first problem."""

    exit_code = ExitCode.PROBLEMS


class SnapshotFileError(SyncdError):
    """A snapshot or state file is missing, truncated or corrupt."""
