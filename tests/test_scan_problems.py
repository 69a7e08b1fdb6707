"""Bad input to `syncd scan`: named by path, the scan goes on (or stops with --strict),
never a traceback. Runs the real CLI in a child process."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scanutil import run_cli


@pytest.fixture
def messy() -> Iterator[Path]:
    # Not under pytest's tmp_path: its parents are private to root, and one test runs
    # the scan as an unprivileged user who must reach the tree.
    base = Path(tempfile.mkdtemp(prefix="syncd-messy-"))
    base.chmod(0o755)
    root = base / "messy"
    root.mkdir()
    (root / "good.txt").write_bytes(b"fine")
    os.mkfifo(root / "fifo")
    os.mknod(root / "device", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "socket"))
    (root / "loop-a").symlink_to("loop-b")
    (root / "loop-b").symlink_to("loop-a")
    os.mkdir(os.fsencode(root) + b"/bad-\xff-name")
    (root / "fake.tar").write_bytes(b"this is not a tar archive" * 40)
    (root / "secret").write_bytes(b"only root reads this")
    (root / "secret").chmod(0o600)
    (root / "closed").mkdir()
    (root / "closed" / "inside").write_bytes(b"x")
    (root / "closed").chmod(0o700)
    root.chmod(0o755)
    try:
        yield root
    finally:
        sock.close()
        shutil.rmtree(base)


def problem_lines(stderr: str) -> dict[str, str]:
    """'syncd scan: error: PATH: message' lines, by path."""
    found = {}
    for line in stderr.splitlines():
        level, _, rest = line.removeprefix("syncd scan: ").partition(": ")
        path, _, message = rest.partition(": ")
        found[path] = f"{level}: {message}"
    return found


def test_every_problem_is_named_and_the_scan_goes_on(messy: Path) -> None:
    result = run_cli("scan", str(messy), "--json")
    assert "Traceback" not in result.stderr
    assert result.returncode == 1
    problems = problem_lines(result.stderr)
    assert problems["fifo"] == "error: skipped: fifo"
    assert problems["device"] == "error: skipped: device"
    assert problems["socket"] == "error: skipped: socket"
    assert problems["loop-a"].startswith("warning: symlink loop")
    assert problems["bad-\\xff-name"] == "error: name is not valid UTF-8"
    assert problems["fake.tar"].startswith("warning: not a tar archive")
    # good.txt, fake.tar, and (we are root) secret and closed/inside
    assert '"files": 4' in result.stdout
    assert '"complete": false' in result.stdout


def test_unreadable_entries_as_an_unprivileged_user(messy: Path) -> None:
    state = messy.parent / "state-nobody"
    state.mkdir()
    os.chown(state, 65534, 65534)
    result = run_cli("scan", str(messy), "--state", str(state), user="nobody")
    assert "Traceback" not in result.stderr, result.stderr
    problems = problem_lines(result.stderr)
    assert problems["secret"] == "error: cannot read: Permission denied"
    assert problems["closed"] == "error: cannot open directory: Permission denied"
    assert result.returncode == 1
    # The state is usable and the next scan finds (and names) the same problems again.
    again = problem_lines(run_cli("scan", str(messy), "--state", str(state), user="nobody").stderr)
    assert again == problems


def test_strict_stops_at_the_first_problem_and_keeps_no_snapshot(messy: Path) -> None:
    result = run_cli("scan", str(messy), "--strict")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "stopped at the first problem (--strict)" in result.stderr
    assert not (messy / ".syncd" / "snapshot").exists()


def test_truncated_tar_is_named_and_still_recorded(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "mirror_000001.tar", "w") as archive:
        for i in range(3):
            member = tmp_path / f"m{i}"
            member.write_bytes(os.urandom(20_000))
            archive.add(member, arcname=f"docker/registry/v2/blobs/m{i}")
            member.unlink()
    path = tmp_path / "mirror_000001.tar"
    os.truncate(path, 30_000)  # inside the second member's data
    result = run_cli("scan", str(tmp_path), "--json")
    assert "Traceback" not in result.stderr
    message = problem_lines(result.stderr)["mirror_000001.tar"]
    assert message.startswith("warning: truncated tar archive: member at offset")
    assert '"files": 1' in result.stdout
    assert result.returncode == 1


def test_missing_root_is_a_one_line_error(tmp_path: Path) -> None:
    result = run_cli("scan", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"syncd scan: error: {tmp_path / 'nope'}: not a directory"


@pytest.mark.parametrize(
    ("blocker", "words"),
    [("lock", "cannot lock state folder"), ("snapshot.tmp", "snapshot.tmp")],
)
@pytest.mark.parametrize("command", ["scan", "push"])
def test_an_unwritable_state_folder_is_named_not_a_traceback(
    tmp_path: Path, blocker: str, words: str, command: str
) -> None:
    """A state file that cannot be opened (here a directory sits in its place, as a
    read-only or full file system would refuse it): one line naming it, exit 2."""
    root = tmp_path / "src"
    (root / ".syncd" / blocker).mkdir(parents=True)
    (root / "file").write_bytes(b"data")
    args = (str(root), "--json") if command == "scan" else (str(root), str(tmp_path / "far"))
    result = run_cli(command, *args)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr, result.stderr
