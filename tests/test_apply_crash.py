"""Crash safety of the apply: stop it at every step, kill it at random, and resume.

The far tree starts at sample month 1 with month 2's pieces staged (as a finished push
leaves it). After each stop, registry storage is read the way distribution serves it:
every tag it would list must resolve completely, and every entry must be exactly as
month 1 or month 2 has it (nothing partial is ever visible). Then `resume_pending` must
finish the apply. At a few stops the real docker-registry + skopeo oracle pulls every
listed tag.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.apply import ApplyHooks, Staging, apply_target, resume_pending
from syncd.sample import list_images, pull_all
from syncd.sample.ocmirror import CACHE
from syncd.state import StateDir
from tests.conftest import RegistryFactory
from tests.scanutil import PROJECT
from tests.test_apply_support import (
    Checker,
    Source,
    copy_tree,
    listed_tags,
    make_source,
    records_of,
    registry_problems,
    scan_id,
    stage_transfer,
)


class Stop(Exception):
    """Raised from the hook: the apply stops right before a step."""


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder on tmpfs when there is one: the every-step test copies the tree a hundred
    times, and directory operations on tmpfs cost a tenth of what they cost on disk."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path_factory.mktemp("crash")
        return
    folder = Path(tempfile.mkdtemp(prefix="syncd-crash-", dir=shm))
    yield folder
    shutil.rmtree(folder)


@pytest.fixture
def where(scratch: Path, request: pytest.FixtureRequest) -> Path:
    folder: Path = scratch / request.node.name
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def month1(scratch: Path) -> Source:
    return make_source(scratch / "month1", 1)


@pytest.fixture(scope="module")
def month2(scratch: Path, month1: Source) -> Source:
    copy_tree(month1.root, scratch / "month2")
    return make_source(scratch / "month2", 2, first=2)


@pytest.fixture(scope="module")
def base(scratch: Path, month1: Source, month2: Source) -> Path:
    """The far tree at month 1, with everything month 2 needs staged."""
    far = scratch / "base"
    copy_tree(month1.root, far)
    stage_transfer(month2, far).close()
    return far


@pytest.fixture(scope="module")
def steps(scratch: Path, base: Path, month2: Source) -> list[str]:
    """What each step of the full apply does, step 1 first."""
    far = scratch / "count"
    copy_tree(base, far, with_state=True)
    seen: list[str] = []
    run_apply(far, month2, ApplyHooks(lambda step, what: seen.append(what)))
    assert scan_id(far) == month2.id
    shutil.rmtree(far)
    return seen


def run_apply(far: Path, month2: Source, hooks: ApplyHooks | None = None) -> None:
    state = StateDir(far)
    with Staging.open(state) as staging, records_of(month2) as snapshot:
        apply_target(far, state, month2.id, snapshot.record, staging, delete=True, hooks=hooks)


def stop_at(k: int) -> ApplyHooks:
    def hook(step: int, what: str) -> None:
        if step == k:
            raise Stop(what)

    return ApplyHooks(hook)


def stopped_copy(base: Path, where: Path, month2: Source, k: int) -> Path:
    far = where / f"stop-{k}"
    copy_tree(base, far, with_state=True)
    with pytest.raises(Stop):
        run_apply(far, month2, stop_at(k))
    return far


def finish(far: Path, month2: Source) -> None:
    result = resume_pending(far, StateDir(far))
    assert result is not None and result.resumed
    assert result.root == month2.id  # the id of the final scan
    assert resume_pending(far, StateDir(far)) is None


def test_every_listed_tag_resolves_at_every_stop(
    where: Path, base: Path, month1: Source, month2: Source, steps: list[str]
) -> None:
    checker = Checker(month1, month2)
    assert len(steps) > 50  # the plan has steps in every phase
    for k in range(1, len(steps) + 1):
        far = stopped_copy(base, where, month2, k)
        checker.check(far, f"stopped before step {k}: {steps[k - 1]}")
        finish(far, month2)
        shutil.rmtree(far)


def sampled_stops(steps: list[str]) -> list[int]:
    """Stops inside each registry phase: data, links, tags, deletions, and the last."""
    markers = ("/blobs/", "/_layers/", "/_manifests/tags/", "deleting ")
    found = {next(k for k, what in enumerate(steps, 1) if m in what) for m in markers}
    return sorted({*found, len(steps)})


@pytest.mark.needs_registry
def test_docker_registry_serves_every_listed_tag_at_sampled_stops(
    where: Path,
    base: Path,
    month1: Source,
    month2: Source,
    steps: list[str],
    registry_factory: RegistryFactory,
) -> None:
    always = listed_tags(month1.root) & listed_tags(month2.root)
    for k in sampled_stops(steps):
        far = stopped_copy(base, where, month2, k)
        registry = registry_factory(far / CACHE, read_only=True)
        images = list_images(registry)
        assert always <= set(images), f"before step {k}"
        failed = {name: r.error for name, r in pull_all(registry, images).items() if not r.ok}
        assert failed == {}, f"stopped before step {k}: {steps[k - 1]}"
        registry.stop()
        finish(far, month2)


_CHILD = """
import sys
from pathlib import Path
from syncd.apply import ApplyHooks, Staging, apply_target
from syncd.snapshot import SnapshotReader
from syncd.state import StateDir

far, snapshot_path, target = Path(sys.argv[1]), Path(sys.argv[2]), bytes.fromhex(sys.argv[3])

def report(step, what):
    print(step, flush=True)

print(0, flush=True)
state = StateDir(far)
with Staging.open(state) as staging, SnapshotReader(snapshot_path) as snapshot:
    apply_target(far, state, target, snapshot.record, staging, delete=True,
                 hooks=ApplyHooks(report))
print("done", flush=True)
"""


def kill_during_apply(far: Path, month2: Source, after_line: int) -> bool:
    """Run the apply in a child and SIGKILL it once it printed `after_line`; killed?

    The child may finish first only when the kill comes after its last step."""
    command = [sys.executable, "-c", _CHILD, str(far), str(month2.snapshot), month2.id.hex()]
    env = dict(os.environ, PYTHONPATH=str(PROJECT))
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as child:
        assert child.stdout is not None
        for line in child.stdout:
            if line.strip() == str(after_line):
                # The child goes on running meanwhile: the kill lands wherever it is.
                os.kill(child.pid, signal.SIGKILL)
                break
        child.wait()
        return child.returncode == -signal.SIGKILL


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_kill_9_at_random_points_then_resume(
    where: Path, base: Path, month1: Source, month2: Source, steps: list[str], seed: int
) -> None:
    checker = Checker(month1, month2)
    # Line 0 is printed before the apply starts: a kill then lands in the scan, the
    # piece checks or the journal write, before any live change.
    after = random.Random(seed).choice([0, *range(1, len(steps) + 1)]) if seed > 1 else 0
    far = where / "far"
    copy_tree(base, far, with_state=True)
    killed = kill_during_apply(far, month2, after)
    assert killed or after == len(steps)  # only the last step can finish before the kill
    checker.check(far, f"killed after line {after}")
    if resume_pending(far, StateDir(far)) is None:
        run_apply(far, month2)  # no journal: the kill came before any live change
    assert scan_id(far) == month2.id
    assert registry_problems(far) == []
