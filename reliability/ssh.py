"""ssh: unknown and changed host keys refused; a forced-command far side cannot be talked
into a shell, another root, or paths outside its root.

Nothing is mocked: a real OpenSSH sshd on 127.0.0.1 (tests/sshd.py, with everything a
server may allow switched on: only the key's options stand in the way), the real
`syncd push` CLI, OpenSSH's own `ssh`, `scp` and `sftp` clients, and `syncd serve`
started by sshd from README's authorized_keys line
`restrict,command="syncd serve --stdio --root R"`. Three classes of cases:

- host keys (reliability/ssh_hostkeys.py): every known_hosts state, through `syncd push`;
- forced command (reliability/ssh_forced.py): shells, commands, ptys, subsystems,
  scp/sftp, environment, forwardings; judged from the far process (/proc) and by effect,
  with controls showing the same asks are granted once `restrict` is dropped;
- paths (reliability/ssh_paths.py): pushes naming another root, the hostile campaign's
  wire cases carried through the forced-command login, a root holding the login's home.

Figures: cases held per class, marker files created (anything the far side was asked to
run would have made one: must be 0), bytes changed beside the wire cases' far roots
(must be 0), and, against advice, what `AcceptEnv *` lets a client do.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from reliability import ssh_forced, ssh_hostkeys, ssh_paths
from reliability.campaign import Context, Figure, Outcome
from reliability.sshbed import Bed, Check
from syncd.sample import TINY, generate_month
from tests.sshd import SSHServer


@dataclass(frozen=True, slots=True)
class Verdict:
    category: str
    name: str
    problem: str


def prepare(ctx: Context) -> Bed:
    source = ctx.scratch / "source"
    generate_month(source, 1, TINY, via_registry=False)
    shutil.rmtree(source / ".syncd", ignore_errors=True)
    server = SSHServer.start(ctx.scratch / "sshd", ssh_forced.PERMISSIVE)
    bed = Bed(ctx.scratch, server, source, ctx.quick)
    bed.markers.mkdir()
    return bed


def checks(bed: Bed) -> Iterator[Check]:
    every = [*ssh_hostkeys.checks(), *ssh_forced.checks(), *ssh_paths.checks(bed)]
    yield from (check for check in every if check.quick or not bed.quick)


def run_check(bed: Bed, check: Check) -> Verdict:
    try:
        problem = check.run(bed)
    except Exception as exc:  # the campaign's finding: name it, run the other cases
        problem = f"{type(exc).__name__}: {exc}"
    return Verdict(check.category, check.name, problem)


def run(ctx: Context) -> Outcome:
    bed = prepare(ctx)
    try:
        verdicts = [run_check(bed, check) for check in checks(bed)]
        against_advice = ssh_forced.accept_env_everything(bed)
    finally:
        bed.main.stop()
    return outcome(bed, verdicts, against_advice)


def outcome(bed: Bed, verdicts: list[Verdict], against_advice: bool) -> Outcome:
    result = Outcome("ssh")
    for category, count in Counter(v.category for v in verdicts).items():
        held = sum(1 for v in verdicts if v.category == category and not v.problem)
        result.figures.append(Figure(category, f"{held} of {count}", "all", held == count))
    markers = sorted(path.name for path in bed.markers.iterdir())
    result.figures += [
        Figure("cases", str(len(verdicts))),
        Figure("marker files created (commands that ran)", str(len(markers)), "0", not markers),
        Figure(
            "bytes changed outside the root (wire cases)",
            str(bed.bytes_outside),
            "0",
            bed.bytes_outside == 0,
        ),
        Figure(
            "against advice, sshd `AcceptEnv *`: a client's BASH_ENV ran code",
            "yes" if against_advice else "no",
        ),
    ]
    result.failures = [f"{v.category}: {v.name}: {v.problem}" for v in verdicts if v.problem]
    result.failures += [f"marker created: {name}" for name in markers]
    return result
