"""Link drops, in the crash campaign: a push whose link drops at a random byte keeps
every blob that reached the far side whole, and the rerun sends only the rest.

The far side is reached through reliability/linkrelay.py, which relays the stream to
`syncd serve`, counts what reached it (the blobs that passed whole, and the bytes of the
one the drop cut) and drops the link after N bytes: the far side's input ends (`eof`),
it also gets SIGHUP (`hup`), or - over SSH - the sshd session above it is killed
(`sshd`). N is drawn uniformly over the bytes a whole push sends (a calibration run).

After each drop the far tree must be consistent (it was not changed: nothing was
applied, or the apply was finished), and the rerun of the same push must reach month 2.
Its payload, the bytes it resent, is compared with what had not reached the far side
(`remaining`: the push's payload less every blob byte that arrived, whole or cut):

- resent <= remaining + the cut blob's bytes that had arrived: no blob that arrived whole
  is ever sent again (otherwise a failure);
- resent / remaining, summed over all drops, is reported (target <= 1.05): the only
  waste is the part of the one blob the drop cut, which is sent again whole.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from reliability.farside import Months, equals, problems, run_syncd
from syncd.faults import ENV
from tests.pushutil import PROJECT

RECORD_WAIT = 60.0  # seconds for the relay to write its record after the push ended

MODES = ("eof", "hup")


@dataclass
class Drops:
    count: int = 0
    resent: int = 0
    remaining: int = 0
    cut_waste: int = 0  # resent beyond what remained: parts of cut blobs
    by_mode: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.resent / self.remaining if self.remaining else 1.0


def relay_command(record: Path, drop_at: int, mode: str, *, ssh: bool) -> str:
    """The far syncd command: this Python running the relay in front of `-m syncd`."""
    python = shlex.quote(sys.executable)
    relay = f"{python} -m reliability.linkrelay --record {shlex.quote(str(record))}"
    relay += f" --drop-at {drop_at} --mode {mode} -- {python} -m syncd"
    if ssh:  # OpenSSH passes no environment through: the command line sets it
        relay = f"env {ENV}= PYTHONPATH={PROJECT} {relay}"
    return relay


def push_through(
    source: Path, far: str, record: Path, drop_at: int, mode: str, env: dict[str, str]
) -> tuple[int, str]:
    """The push of `source` through the relay: its exit code and stderr."""
    ssh = far.startswith("ssh://")
    remote = relay_command(record, drop_at, mode, ssh=ssh)
    record.unlink(missing_ok=True)
    done = run_syncd("push", source, far, "--remote-syncd", remote, env=env)
    return done.returncode, done.stderr


def relay_record(record: Path) -> dict[str, int | bool]:
    """What the relay saw. The push can end before its relay does (with sshd killed, the
    client's connection ends at once while the relay still waits for serve), so this
    waits for the relay to write its record: reading it earlier found the last drop's
    record, or an empty file."""
    deadline = time.monotonic() + RECORD_WAIT
    while not record.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"linkdrop: the relay wrote no record in {RECORD_WAIT} s")
        time.sleep(0.05)
    seen: dict[str, int | bool] = json.loads(record.read_text())
    return seen


def far_syncd(*, ssh: bool) -> str:
    """This Python's syncd, as the far side's command (over SSH with its environment:
    OpenSSH passes none through)."""
    command = f"{shlex.quote(sys.executable)} -m syncd"
    return f"env {ENV}= PYTHONPATH={PROJECT} {command}" if ssh else command


def payload_of(source: Path, far: str, env: dict[str, str]) -> tuple[int, str]:
    """A push's payload bytes (the blobs it sent), or -1 and why it failed."""
    remote = far_syncd(ssh=far.startswith("ssh://"))
    done = run_syncd("push", source, far, "--json", "--remote-syncd", remote, env=env)
    if done.returncode != 0:
        return -1, done.stderr.strip()
    return int(json.loads(done.stdout)["payload_bytes"]), ""


def calibrate(source: Path, far: str, record: Path, env: dict[str, str]) -> tuple[int, int]:
    """(bytes a whole push sends to the far side, its payload) through the relay."""
    code, stderr = push_through(source, far, record, -1, "eof", env)
    if code != 0:
        raise SystemExit(f"linkdrop: the calibration push failed: {stderr}")
    seen = relay_record(record)
    return int(seen["forwarded"]), int(seen["whole_blob_bytes"])


def one_drop(
    months: Months,
    far: Path,
    target: str,
    record: Path,
    drop_at: int,
    mode: str,
    total: int,
    env: dict[str, str],
    drops: Drops,
) -> None:
    where = f"link dropped ({mode}) after {drop_at} bytes"
    push_through(months.two.root, target, record, drop_at, mode, env)
    seen = relay_record(record)
    if not seen["dropped"]:
        drops.failures += equals(far, months.two, f"{where}: not dropped")
        return
    drops.failures += problems(months, far, where)
    resent, why = payload_of(months.two.root, target, env)
    if resent < 0:
        drops.failures.append(f"{where}: rerun failed: {why}")
        return
    drops.failures += equals(far, months.two, f"{where}, after the rerun")
    cut = int(seen["cut_blob_bytes"])
    remaining = max(0, total - int(seen["whole_blob_bytes"]) - cut)
    if resent > remaining + cut:
        drops.failures.append(
            f"{where}: the rerun sent {resent} bytes, but only {remaining} had not arrived "
            f"(+{cut} of the cut blob): blobs that arrived whole were lost"
        )
    drops.count += 1
    drops.resent += resent
    drops.remaining += remaining
    drops.cut_waste += max(0, resent - remaining)
    drops.by_mode[mode] = drops.by_mode.get(mode, 0) + 1
    print(f"crash: {where}: resent {resent} of {remaining} remaining", file=sys.stderr)
