"""The far side after an apply: check parity on its own tree, then maybe run a command.

A client may ask (HELLO `verify`, `post_apply`; SPEC.md, REPORT) for the far side's own
parity check after the RESULT, and for its post-apply command (typically oc-mirror's
upload into the site registry) once that check holds. The answer is a REPORT.

Who decides what runs: the far side's operator, never the client. The SSH key that
lets a connected host push is usually pinned to `syncd serve` by a forced command, so
that a stolen key can change one tree and nothing else. If `serve` ran whatever command
a client named, that key would become a shell on the far host. So a command proposed
by the client runs only under `serve --allow-post-apply` (the operator accepts that the
key may run commands), and `serve --post-apply CMD` fixes the command in the far side's
own arguments, ignoring what the client proposes.

Once per snapshot: the run is recorded in the state folder before it starts and after it
ends (`post-apply.json`, written atomically). A command that succeeded for a snapshot id
is not run again for it; one that failed, or was interrupted by a crash, runs again the
next time a client asks for that snapshot (the daemon retries with backoff).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from protocol.messages import REPORT_OUTPUT_MAX, REPORT_SUMMARY_MAX, Hello, Report, Result
from syncd.apply.durable import write_atomically
from syncd.errors import SyncdError
from syncd.state import StateDir
from syncd.transport.tail import TailBuffer

log = logging.getLogger("syncd.serve")

RECORD_NAME = "post-apply.json"
# The first line of REPORT's output when the far side's own command (--post-apply) ran in
# place of one the client proposed: the status says how that command did; this line says
# it was not the client's (SPEC.md, REPORT), so that no one reads "ok" as "mine ran".
REPLACED = "[replaced] this far side ran its own post-apply command, not the one proposed\n"
_SHOWN_PROBLEMS = 8  # problem lines quoted in a failed check's summary


@dataclass(frozen=True, slots=True)
class PostApplyPolicy:
    """What this far side's operator allows (`serve --allow-post-apply / --post-apply`)."""

    allow_client_command: bool = False
    command: str | None = None  # fixed by the operator; wins over the client's


@dataclass(frozen=True, slots=True)
class AfterApplyRequest:
    """What the client's HELLO asked for."""

    verify: bool
    post_apply: str | None  # None: not asked; "": the far side's own command

    @property
    def asked(self) -> bool:
        return self.verify or self.post_apply is not None

    @classmethod
    def from_hello(cls, hello: Hello) -> AfterApplyRequest:
        # Types were checked by the protocol connection when the HELLO arrived.
        verify = hello.params.get("verify") is True
        post_apply = hello.params.get("post_apply")
        return cls(verify, post_apply if isinstance(post_apply, str) else None)


@dataclass(frozen=True, slots=True)
class _Check:
    status: str
    summary: str


async def after_apply(
    root: Path, state: StateDir, result: Result, request: AfterApplyRequest, policy: PostApplyPolicy
) -> Report:
    """Check parity and run the post-apply command as `request` and `policy` say."""
    check = await asyncio.to_thread(_verify, root)
    log.info("verify after the apply: %s", check.summary.splitlines()[0])
    if request.post_apply is None:
        return Report(result.root, check.status, check.summary, "skipped", 0, "")
    if check.status != "ok":
        why = "not run: the parity check did not pass"
        return Report(result.root, check.status, check.summary, "skipped", 0, why)
    command = _chosen_command(request, policy)
    if command is None:
        why = _refusal(request, policy)
        log.warning("post-apply: %s", why)
        return Report(result.root, check.status, check.summary, "refused", 0, why)
    status, code, output = await _run_once(root, state, result.root, command)
    if _replaced(request, policy):
        log.warning("post-apply: the command the client proposed was replaced by --post-apply")
        output = REPLACED + output[-(REPORT_OUTPUT_MAX - len(REPLACED)) :]
    return Report(result.root, check.status, check.summary, status, code, output)


def _replaced(request: AfterApplyRequest, policy: PostApplyPolicy) -> bool:
    """The client proposed a command of its own and the operator's ran instead."""
    return bool(policy.command and request.post_apply and request.post_apply != policy.command)


def _verify(root: Path) -> _Check:
    # Imported here: most sessions ask for no check, and serve's start-up is on every push.
    from syncd.verify import VerifyOptions, verify_root  # noqa: PLC0415

    try:
        report = verify_root(root, VerifyOptions(workers=2))
    except SyncdError as exc:
        return _Check("error", _clip(f"the check could not run: {exc}", REPORT_SUMMARY_MAX))
    # Verdicts, names and digests only: nothing of what the far side's files hold goes
    # back (the tree came from the connected side, and a link may point anywhere).
    summary = "\n".join(report.brief(_SHOWN_PROBLEMS))
    return _Check("ok" if report.ok else "failed", _clip(summary, REPORT_SUMMARY_MAX))


def _chosen_command(request: AfterApplyRequest, policy: PostApplyPolicy) -> str | None:
    if policy.command:
        return policy.command
    if policy.allow_client_command and request.post_apply:
        return request.post_apply
    return None


def _refusal(request: AfterApplyRequest, policy: PostApplyPolicy) -> str:
    if policy.allow_client_command:
        return "no command: the client named none and this far side has no --post-apply"
    return (
        "this far side runs no client-proposed command (start `syncd serve` with "
        "--post-apply CMD, or --allow-post-apply)"
    )


# -- running the command once per snapshot ---------------------------------------------


def _record_path(state: StateDir) -> Path:
    return state.path / RECORD_NAME


def _load_record(state: StateDir) -> dict[str, object]:
    try:
        data = json.loads(_record_path(state).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_record(state: StateDir, record: dict[str, object]) -> None:
    write_atomically(_record_path(state), (json.dumps(record, indent=1) + "\n").encode())


async def _run_once(
    root: Path, state: StateDir, snapshot: bytes, command: str
) -> tuple[str, int, str]:
    record = _load_record(state)
    if record.get("snapshot") == snapshot.hex() and record.get("exit_status") == 0:
        log.info("post-apply: already succeeded for %s; not run again", snapshot.hex()[:16])
        output = record.get("output")
        return "done-before", 0, output if isinstance(output, str) else ""
    started = {"snapshot": snapshot.hex(), "command": command, "started": time.time()}
    _save_record(state, {**started, "exit_status": None})  # a crash mid-run reads as failed
    log.info("post-apply: running %s", command)
    code, output = await _run(root, snapshot, command)
    _save_record(state, {**started, "exit_status": code, "finished": time.time(), "output": output})
    log.info("post-apply: exit status %d", code)
    return ("ok" if code == 0 else "failed"), code, output


async def _run(root: Path, snapshot: bytes, command: str) -> tuple[int, str]:
    """Run `command` with `sh -c` in `root`: no input; its output kept (the tail), never
    on our stdout, which is the protocol stream."""
    env = dict(os.environ, SYNCD_ROOT=str(root), SYNCD_SNAPSHOT=snapshot.hex())
    env.pop("SSH_ORIGINAL_COMMAND", None)
    try:
        child = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            cwd=root,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # the client hanging up does not signal it
        )
    except OSError as exc:
        return 127, f"cannot start /bin/sh for the post-apply command: {exc.strerror}"
    assert child.stdout is not None
    tail = TailBuffer(REPORT_OUTPUT_MAX)
    await tail.pump(child.stdout.read)
    code = await child.wait()
    text = tail.text()
    return (128 - code if code < 0 else code), text[-REPORT_OUTPUT_MAX:]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
