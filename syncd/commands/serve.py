"""`syncd serve --stdio --root DIR`: the far side of a push, on stdin/stdout.

This is what OpenSSH runs, also as a forced command (authorized_keys
`restrict,command="syncd serve --stdio --root /srv/mirror"`): the root is fixed here,
and a client asking for any other root is refused. A root holding the login's home
directory or syncd's own installation is refused before anything is created
(syncd/session/rootguard.py). A root behind a symlink is served at its real path. The
session (syncd/session/server.py) takes the root's lock and finishes an interrupted
apply first, so that a failure there still reaches the client as ERROR. stdout carries
only the protocol; everything for humans goes to stderr.

SIGHUP and SIGTERM (an SSH session killed, the link gone, a service stopped) end the
session as a dropped link does: nothing more is read, every blob that arrived whole is
kept and made durable, an apply under way is finished. A second signal kills.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from protocol.connection import MIN_PEER_FRAME
from protocol.errors import ProtocolError
from protocol.messages import Result
from syncd.apply.room import StagingLimit
from syncd.commands.stagingmax import add_staging_max
from syncd.commands.targetflags import add_target_policy, target_policy
from syncd.errors import UsageError
from syncd.exitcodes import ExitCode
from syncd.gate.options import add_inspect_options, gate_policy, positive_duration
from syncd.roots import real_root
from syncd.safetext import EscapingFormatter
from syncd.session.afterapply import PostApplyPolicy
from syncd.session.hangup import HangUp
from syncd.session.rootguard import refuse_unsafe_root, root_names
from syncd.session.server import HANDSHAKE_TIMEOUT, ServeOptions, serve_session
from syncd.session.wire import PeerError
from syncd.state import StateDir
from syncd.targetguard import refuse_unknown_target
from syncd.transport.stdio import open_stdio

log = logging.getLogger("syncd.serve")
FORCE_HINT = "--force (`syncd push --force`; in a forced command, `serve ... --force`)"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "serve",
        help="the far side of a push (run by OpenSSH)",
        description="Serve one push on stdin/stdout for the tree at --root. Normally run "
        "by OpenSSH, often as an authorized_keys forced command.",
    )
    parser.add_argument("--stdio", action="store_true", required=True, help="speak on stdin/stdout")
    parser.add_argument("--root", type=Path, required=True, help="the far tree to keep in step")
    parser.add_argument("--state", type=Path, help="state folder (default: ROOT/.syncd)")
    parser.add_argument(
        "--handshake-timeout",
        type=positive_duration,
        default=HANDSHAKE_TIMEOUT,
        metavar="DURATION",
        help="end a session whose client has sent no HELLO within DURATION (e.g. 90s, "
        f"2m; default {HANDSHAKE_TIMEOUT:g}s): a stalled one would hold the root's lock",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="serve a root that holds other files and looks like no oc-mirror root, "
        "registry storage or syncd root (refused otherwise: a push deletes what its "
        "source lacks)",
    )
    add_target_policy(parser)
    add_staging_max(parser)
    after = parser.add_mutually_exclusive_group()
    after.add_argument(
        "--post-apply",
        metavar="CMD",
        help="after an apply whose parity check passes, run CMD (sh -c, in ROOT) when the "
        "client asks for the post-apply command; once per snapshot. The client cannot "
        "choose another command",
    )
    after.add_argument(
        "--allow-post-apply",
        action="store_true",
        help="run the post-apply command the client proposes (this lets the client's key "
        "run commands here: prefer --post-apply CMD)",
    )
    add_inspect_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EscapingFormatter("syncd serve: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    root = real_root(args.root)
    refuse_unsafe_root(root)
    state = StateDir(root, args.state)
    refuse_unknown_target(root, state, force=args.force, flag=FORCE_HINT)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create root {root}: {exc.strerror}") from exc
    policy = PostApplyPolicy(args.allow_post_apply, args.post_apply or None)
    options = ServeOptions(
        root,
        state,
        MIN_PEER_FRAME + 64 * 1024,
        policy,
        handshake_timeout=args.handshake_timeout,
        staging_limit=StagingLimit(args.staging_max),
        root_names=root_names(args.root),
        policy=target_policy(args),
        gate=gate_policy(args),
    )
    try:
        result = asyncio.run(_serve(options))
    except (ProtocolError, PeerError) as exc:
        # Expected ends of a session (a bad or hostile peer): one line, no traceback.
        log.error("session ended: %s", exc)  # noqa: TRY400
        return int(ExitCode.FAILED)
    log.info("%s: snapshot %s", result.status, result.root.hex()[:16])
    return int(ExitCode.OK)


async def _serve(options: ServeOptions) -> Result:
    channel = await open_stdio()
    try:
        with HangUp(channel) as guarded:
            return await serve_session(guarded, options)
    finally:
        await channel.close()
