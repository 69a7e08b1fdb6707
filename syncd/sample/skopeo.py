"""skopeo against a loopback registry: pushing sample images, and the parity oracle.

The oracle pulls every repo:tag with real skopeo into a scratch directory. skopeo checks
every blob's digest as it copies, so a pull that succeeds proves the tag's whole chain
(tag, manifest, config, layers) is served and intact.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from syncd.sample.errors import ToolError
from syncd.sample.registry import Registry, list_images

PARALLEL = 3  # skopeo processes at once: enough to hide latency on two cores
_TIMEOUT = 600


@dataclass(frozen=True, slots=True)
class PullResult:
    image: str
    ok: bool
    error: str  # what skopeo printed when it failed; empty on success


@dataclass(frozen=True, slots=True)
class PushJob:
    source: Path  # the image in skopeo's dir: format
    destination: str  # repo:tag, or repo@digest for a manifest pushed without a tag
    all_platforms: bool  # an index: push it with every child


def skopeo_path() -> str:
    found = shutil.which("skopeo")
    if found is None:
        raise ToolError("skopeo is missing: install Debian's skopeo")
    return found


def push_all(registry: Registry, jobs: Sequence[PushJob]) -> None:
    """Copy each image into the registry, keeping digests; fail on the first error."""
    command = [skopeo_path(), "copy", "--insecure-policy", "--dest-tls-verify=false"]
    command.append("--preserve-digests")

    def push(job: PushJob) -> tuple[PushJob, subprocess.CompletedProcess[str]]:
        extra = ["--all"] if job.all_platforms else []
        source, target = f"dir:{job.source}", f"docker://{registry.host}/{job.destination}"
        return job, _run([*command, *extra, source, target])

    with ThreadPoolExecutor(PARALLEL) as pool:
        for job, done in pool.map(push, jobs):
            if done.returncode != 0:
                raise ToolError(f"skopeo could not push {job.destination}: {_said(done)}")


def pull_all(
    registry: Registry, images: Sequence[str] | None = None, *, all_arch: bool = False
) -> dict[str, PullResult]:
    """Pull every image (default: all the registry lists) with skopeo; report each."""
    names = list_images(registry) if images is None else list(images)
    command = [skopeo_path(), "copy", "--insecure-policy", "--src-tls-verify=false"]
    # Without --all skopeo picks one platform of an index; name it rather than rely on
    # the host's architecture.
    command += ["--all"] if all_arch else ["--override-arch", "amd64", "--override-os", "linux"]
    with tempfile.TemporaryDirectory(prefix="syncd-pull-") as scratch:

        def pull(numbered: tuple[int, str]) -> PullResult:
            number, image = numbered
            target = Path(scratch) / str(number)
            done = _run([*command, f"docker://{registry.host}/{image}", f"dir:{target}"])
            shutil.rmtree(target, ignore_errors=True)
            ok = done.returncode == 0
            return PullResult(image, ok, "" if ok else _said(done))

        with ThreadPoolExecutor(PARALLEL) as pool:
            results = list(pool.map(pull, enumerate(names)))
    return {result.image: result for result in results}


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as timeout:
        return subprocess.CompletedProcess(command, -1, "", f"timed out after {timeout.timeout} s")


def _said(done: subprocess.CompletedProcess[str]) -> str:
    text = (done.stderr or done.stdout or "").strip()
    return text or f"exit status {done.returncode}"
