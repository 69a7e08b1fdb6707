"""What the crash, power-loss and disk-full campaigns share: sample months 1 and 2, far
roots at month 1, the CLI as a child process, and the checks after an interruption.

The checks are the apply tests' own (tests/test_apply_support.py): every tag the far
registry lists resolves completely (read the way distribution serves it), the listed tags
lie between month 1's and month 2's, and every entry is exactly as month 1 or month 2 has
it (nothing partial visible).

Each month also holds tar archives of more than a megabyte under `bulk/` (the TINY
sample's files are all smaller): the far side assembles such files in place as their
pieces arrive (syncd/apply/incoming.py), a path the campaigns must cover too. Month 2
changes one member of the first archive, adds one, and adds a second archive sharing
members with the first.
"""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from tests.pushutil import pull_every_tag, snapshot_id, syncd_env
from tests.test_apply_support import (
    Checker,
    Source,
    copy_tree,
    make_source,
    registry_problems,
    scan_id,
)

TIMEOUT = 300.0
SMALL_VOLUMES = ("--volume-size", "400k", "--max-file-size", "200k")  # several volumes


@dataclass(frozen=True)
class Months:
    one: Source
    two: Source
    checker: Checker


BULK_MEMBERS = 12  # first.tar: 12 members of 90 kB, just over ASSEMBLE_MIN
BULK_MEMBER_SIZE = 90_000  # under SMALL_VOLUMES' largest file
BULK_MTIME = 1_700_000_000


def make_months(folder: Path) -> Months:
    """Months 1 and 2 of the TINY sample with their bulk archives, scanned, under
    `folder`."""
    one = make_source(folder / "month1", 1)
    add_bulk(one.root, 1)
    one = Source(one.root, scan_id(one.root))
    copy_tree(one.root, folder / "month2")
    two = make_source(folder / "month2", 2, first=2)
    add_bulk(two.root, 2)
    two = Source(two.root, scan_id(two.root))
    return Months(one, two, Checker(one, two))


def add_bulk(root: Path, month: int) -> None:
    """The archives of `bulk/` as month `month` has them (same bytes every time)."""
    members = [
        random.Random(f"bulk-{n}").randbytes(BULK_MEMBER_SIZE) for n in range(BULK_MEMBERS + 3)
    ]
    first = members[:BULK_MEMBERS]
    if month >= 2:
        first[2] = members[BULK_MEMBERS]
        first.append(members[BULK_MEMBERS + 1])
        second = [members[BULK_MEMBERS + 2], members[1], members[BULK_MEMBERS + 1]]
        write_tar(root / "bulk" / "second.tar", second)
    write_tar(root / "bulk" / "first.tar", first)


def write_tar(path: Path, members: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as archive:
        for number, data in enumerate(members):
            info = tarfile.TarInfo(f"member-{number}.bin")
            info.size, info.mtime, info.mode = len(data), BULK_MTIME, 0o644
            archive.addfile(info, io.BytesIO(data))
    os.utime(path, (BULK_MTIME, BULK_MTIME))


def far_at_month1(months: Months, far: Path) -> Path:
    """A far root holding month 1, scanned (its state folder as a far side keeps it)."""
    copy_tree(months.one.root, far)
    scan_id(far)
    return far


def month2_volumes(months: Months, base: Path, scratch: Path) -> tuple[Path, ...]:
    """Month 2 exported onto small volumes against the receipt of `base` (month 1)."""
    receipt = scratch / "receipt"
    done = run_syncd("receipt", "--root", base, "--to", receipt)
    assert done.returncode == 0, done.stderr
    media = scratch / "media"
    args = ("--receipt", receipt, *SMALL_VOLUMES)
    done = run_syncd("export", months.two.root, "--to", media, *args)
    assert done.returncode == 0, done.stderr
    volumes = tuple(sorted(media.glob("*/vol-*")))
    assert len(volumes) >= 2, f"expected several volumes, got {volumes}"
    return volumes


def copy_far(base: Path, far: Path) -> Path:
    """A copy of a far root with its state folder (staging, journal, progress)."""
    copy_tree(base, far, with_state=True)
    return far


def problems(months: Months, far: Path, where: str) -> list[str]:
    """What is wrong with an interrupted far tree (empty when it is consistent)."""
    unresolved = registry_problems(far, months.one.root, months.two.root)
    if unresolved:  # named one by one (the checker's assertion names only the first)
        return [f"{where}: {problem}" for problem in unresolved]
    try:
        months.checker.check(far, where)
    except AssertionError as exc:
        return [str(exc).splitlines()[0] or where]
    return []


def oracle_problems(far: Path, where: str) -> list[str]:
    """docker-registry serves the far cache; skopeo pulls every listed tag."""
    try:
        failed = pull_every_tag(far)
    except AssertionError as exc:
        return [f"{where}: {exc}"]
    return [f"{where}: skopeo cannot pull {name}: {error}" for name, error in failed.items()]


def equals(far: Path, source: Source, where: str) -> list[str]:
    """The far tree's fresh scan must be the source's snapshot."""
    got = snapshot_id(far)
    if got == source.id.hex():
        return []
    return [f"{where}: far tree is {got[:16]}, not {source.id.hex()[:16]}"]


def run_syncd(
    *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`syncd ARGS` in a child process (its output captured)."""
    command = [sys.executable, "-m", "syncd", *map(str, args)]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=syncd_env(env),
        timeout=TIMEOUT,
        check=False,
    )


def start_syncd(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`syncd ARGS` started in the background, for a kill at a random moment."""
    command = [sys.executable, "-m", "syncd", *map(str, args)]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=syncd_env(env),
    )
