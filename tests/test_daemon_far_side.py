"""The far side's REPORT: its parity check after the apply, and who decides what runs.

`syncd serve` runs as a local child here (the transport does not matter to the policy).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from syncd.sample import TINY, generate_month
from syncd.scan.api import scan_root
from syncd.session.client import PushOptions, PushOutcome, push_session
from syncd.snapshot import SnapshotReader
from syncd.state import StateDir
from syncd.transport.local import open_local
from tests.pushutil import far_syncd


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("far-side") / "src"
    generate_month(root, 1, TINY, via_registry=False)
    scan_root(root, StateDir(root))
    return root


def push(
    source: Path,
    far: Path,
    remote: list[str],
    *,
    verify: bool = True,
    post: str | None = None,
    delete: bool = True,
) -> PushOutcome:
    async def run() -> PushOutcome:
        channel = await open_local(far, remote_syncd=remote)
        try:
            options = PushOptions(source, delete, str(far), verify=verify, post_apply=post)
            with SnapshotReader(StateDir(source).snapshot) as snapshot:
                return await push_session(channel, snapshot, options)
        finally:
            await channel.close()

    return asyncio.run(run())


def test_a_proposed_command_is_refused_unless_allowed(source: Path, tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    outcome = push(source, tmp_path / "far", far_syncd(tmp_path), post=f"touch {ran}")
    report = outcome.report
    assert outcome.result.status == "applied" and report is not None
    assert report.verify == "ok" and report.summary.startswith("OK:")
    assert report.post_apply == "refused" and "--allow-post-apply" in report.output
    assert not ran.exists()


def test_an_allowed_command_runs_once_per_snapshot(source: Path, tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    command = f'echo "$SYNCD_SNAPSHOT" >> {ran}; echo uploaded; echo to-stderr >&2'
    remote = far_syncd(tmp_path, "--allow-post-apply")
    first = push(source, tmp_path / "far", remote, post=command)
    assert first.report is not None and first.report.post_apply == "ok"
    assert first.report.exit_status == 0
    assert first.report.output.split() == ["uploaded", "to-stderr"]
    again = push(source, tmp_path / "far", remote, post=command)
    assert again.result.status == "up-to-date"
    assert again.report is not None and again.report.post_apply == "done-before"
    assert ran.read_text().split() == [first.result.root.hex()]


def test_the_far_sides_own_command_wins(source: Path, tmp_path: Path) -> None:
    fixed, proposed = tmp_path / "fixed", tmp_path / "proposed"
    remote = far_syncd(tmp_path, "--post-apply", f"touch {fixed}")
    outcome = push(source, tmp_path / "far", remote, post=f"touch {proposed}")
    assert outcome.report is not None and outcome.report.post_apply == "ok"
    assert fixed.exists() and not proposed.exists()
    # Reported as replaced, not as the proposed command's success (issue 14, item 8).
    assert outcome.report.output.startswith("[replaced] ")
    own = push(source, tmp_path / "far2", remote, post="")  # asked for its own: no note
    assert own.report is not None and not own.report.output.startswith("[replaced]")


def test_a_failed_command_is_reported_and_runs_again(source: Path, tmp_path: Path) -> None:
    count = tmp_path / "count"
    remote = far_syncd(tmp_path, "--post-apply", f"echo x >> {count}; echo oops; exit 3")
    for runs in (1, 2):
        outcome = push(source, tmp_path / "far", remote, post="")
        report = outcome.report
        assert report is not None and report.post_apply == "failed"
        assert report.exit_status == 3 and report.output.strip() == "oops"
        assert count.read_text().split() == ["x"] * runs


def test_a_broken_far_tree_fails_the_check_and_skips_the_command(
    source: Path, tmp_path: Path
) -> None:
    far, ran = tmp_path / "far", tmp_path / "ran"
    shutil.copytree(source, far, ignore=shutil.ignore_patterns(".syncd"))
    # A registry tree of its own (not the cache an upload reads, where verify judges only
    # what the upload copies), so every tag of it counts.
    tag = far / "registry/docker/registry/v2/repositories/x/y/_manifests/tags/t/current"
    tag.mkdir(parents=True)
    (tag / "link").write_text("sha256:" + "1" * 64)
    remote = far_syncd(tmp_path, "--post-apply", f"touch {ran}")
    outcome = push(source, far, remote, post="")
    # delete is on: the far-only tag is gone after the apply, and parity holds.
    assert outcome.report is not None and outcome.report.verify == "ok" and ran.exists()
    ran.unlink()
    tag.mkdir(parents=True)
    (tag / "link").write_text("sha256:" + "1" * 64)
    kept = push(source, far, remote, post="", delete=False)
    assert kept.report is not None and kept.report.verify == "failed"
    assert "x/y:t" in kept.report.summary
    assert kept.report.post_apply == "skipped" and not ran.exists()


def test_no_report_unless_asked(source: Path, tmp_path: Path) -> None:
    outcome = push(source, tmp_path / "far", far_syncd(tmp_path), verify=False)
    assert outcome.far_reports and outcome.report is None
    assert outcome.result.status == "applied"
