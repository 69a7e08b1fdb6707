"""The `syncd` command line: parses arguments and dispatches to one command module.

Exit codes are shared by every command (see `syncd.exitcodes`).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Callable, Sequence

from protocol.errors import ProtocolError
from syncd import __version__
from syncd.errors import SyncdError
from syncd.exitcodes import ExitCode
from syncd.interrupt import EarlyStop, Interrupted, stop_early
from syncd.jsonout import error_json
from syncd.safetext import escape_lines, guard_std_streams

# Each module registers one subcommand; order is the order shown in --help. Only the
# module of the command being run is imported: start-up is part of every command's cost
# (serve, verify), and the transports' and the sample generator's imports are heavy.
COMMANDS = {
    "scan": "syncd.commands.scan",
    "diff": "syncd.commands.diff",
    "push": "syncd.commands.push",
    "serve": "syncd.commands.serve",
    "verify": "syncd.commands.verify",
    "export": "syncd.commands.export",
    "import": "syncd.commands.imports",
    "receipt": "syncd.commands.receipt",
    "show": "syncd.commands.show",
    "audit": "syncd.commands.audit",
    "daemon": "syncd.commands.daemon",
    "status": "syncd.commands.status",
    "sample": "syncd.sample.command",
}
COMMAND_MODULES = tuple(COMMANDS.values())

Runner = Callable[[argparse.Namespace], int]


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv`: with just its command's module when it names one."""
    parser = argparse.ArgumentParser(
        prog="syncd",
        description="Verified, differential sync of oc-mirror caches and content trees.",
    )
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    words = list(sys.argv[1:] if argv is None else argv)
    chosen = _command_in(words)
    if chosen is None and "--version" in words:
        return parser  # --version exits while parsing: no command module is needed
    for name, module in COMMANDS.items():
        if chosen is None or name == chosen:
            importlib.import_module(module).register(sub)
    return parser


def _command_in(words: Sequence[str]) -> str | None:
    first = next((w for w in words if not w.startswith("-")), None)
    return first if first in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    command = _command_in(list(sys.argv[1:] if argv is None else argv))
    # Ctrl-C and SIGTERM stop push, export and import from the first moment, even where
    # the shell set SIGINT to be ignored (a background job); once they start they set
    # handlers that clean up and say what was kept (syncd/interrupt.py).
    stop_early(command)
    # Whatever a command prints may quote the far side or a medium: no control character
    # reaches the terminal raw (syncd/safetext.py).
    with guard_std_streams():
        try:
            parser = build_parser(argv)
            args = parser.parse_args(argv)
        except KeyboardInterrupt as exc:
            return _stopped(command or "", exc)
        return _run(args)


def _stopped(command: str, exc: KeyboardInterrupt) -> int:
    """Ctrl-C in a command that sets no handler, or a signal before a command that does
    had set it (EarlyStop: nothing was done yet)."""
    early = isinstance(exc, EarlyStop)
    signum = exc.signum if isinstance(exc, EarlyStop) else signal.SIGINT
    what = f"syncd {command}" if command else "syncd"
    said = " as it began: nothing was changed" if early else ""
    print(f"{what}: interrupted by {signal.Signals(signum).name}{said}", file=sys.stderr)
    return 128 + signum


def _run(args: argparse.Namespace) -> int:
    run: Runner = args.run
    try:
        return run(args)
    except Interrupted as exc:
        # Not an error: one line saying what stopped it and what was kept.
        print(f"syncd {args.command}: {escape_lines(str(exc))}", file=sys.stderr)
        if getattr(args, "json", False):
            print(error_json(args.command, str(exc), int(exc.exit_code)))
        sys.stderr.flush()
        exc.reported()
        return int(exc.exit_code)
    except SyncdError as exc:
        return _failed(args, str(exc), int(exc.exit_code))
    except ProtocolError as exc:
        return _failed(args, f"protocol: {exc}", int(ExitCode.FAILED))
    except KeyboardInterrupt as exc:
        return _stopped(args.command, exc)
    except BrokenPipeError:
        return int(ExitCode.OK)


def _failed(args: argparse.Namespace, message: str, code: int) -> int:
    """One line on stderr naming the command; with --json, the same as a JSON object on
    stdout too, so that a script reading stdout learns why (docs/JSON.md)."""
    lines = escape_lines(message).splitlines() or [""]
    # Continuation lines are indented, so that a far side's text can never pass for a
    # line of our own.
    shown = [lines[0]] + [line if line[:1].isspace() else f"  {line}" for line in lines[1:]]
    print(f"syncd {args.command}: error: " + "\n".join(shown), file=sys.stderr)
    if getattr(args, "json", False):
        print(error_json(args.command, message, code))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
