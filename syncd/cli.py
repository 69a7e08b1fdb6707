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

# Each module registers one subcommand; order is the order shown in --help.
COMMAND_MODULES = (
    "syncd.commands.scan",
    "syncd.commands.diff",
    "syncd.commands.push",
    "syncd.commands.serve",
    "syncd.commands.verify",
    "syncd.sample.command",
)

Runner = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncd",
        description="Verified, differential sync of oc-mirror caches and content trees.",
    )
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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
