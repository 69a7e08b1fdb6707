"""The far operator's options for what a target may hold: `serve`, `import`, and `push`
to a local path (which runs `serve` itself) share them (syncd/apply/canon.py)."""

from __future__ import annotations

import argparse

from syncd.apply.canon import TargetPolicy


def add_target_policy(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-outside-symlinks",
        action="store_true",
        help="accept symlinks whose target leaves the root (absolute, or '..' above it); "
        "refused by default: anything following them would read or write outside the tree",
    )
    parser.add_argument(
        "--preserve-modes",
        action="store_true",
        help="apply file and directory modes as the target has them, setuid, setgid, "
        "sticky and group/other write included (default: mode & 0755)",
    )


def target_policy(args: argparse.Namespace) -> TargetPolicy:
    return TargetPolicy(args.allow_outside_symlinks, args.preserve_modes)


def policy_flags(args: argparse.Namespace) -> list[str]:
    """The same options as `serve` flags, for a push that starts `serve` itself."""
    flags = []
    if args.allow_outside_symlinks:
        flags.append("--allow-outside-symlinks")
    if args.preserve_modes:
        flags.append("--preserve-modes")
    return flags
