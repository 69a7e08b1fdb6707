"""The `syncd` command line: parses arguments and dispatches to one command module.

Exit codes are shared by every command (see `syncd.exitcodes`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from protocol.errors import ProtocolError
from syncd import __version__
from syncd.errors import SyncdError
from syncd.exitcodes import ExitCode

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
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    run: Runner = args.run
    try:
        return run(args)
    except SyncdError as exc:
        print(f"syncd {args.command}: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except ProtocolError as exc:
        print(f"syncd {args.command}: error: protocol: {exc}", file=sys.stderr)
        return int(ExitCode.FAILED)
    except KeyboardInterrupt:
        print(f"syncd {args.command}: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        return int(ExitCode.OK)


if __name__ == "__main__":
    raise SystemExit(main())
