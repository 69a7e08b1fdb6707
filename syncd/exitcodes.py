"""Exit codes shared by every syncd command."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    # The command finished but something is wrong or was skipped (problems were reported).
    PROBLEMS = 1
    # Bad usage, bad input or a fatal error: nothing was changed.
    FAILED = 2
    INTERRUPTED = 130  # SIGINT (Ctrl-C): 128 + 2
    TERMINATED = 143  # SIGTERM: 128 + 15
