"""The shipped upload commands give oc-mirror what its disk-to-mirror needs (issue 14,
item 8): systemd/far/mirror-upload.example and examples/syncd.toml's `lab` site.

A stand-in `oc-mirror` on PATH checks its arguments the way oc-mirror v2's own code
reads them (openshift/oc-mirror, internal/pkg/cli/executor.go at 855b64a3): `-c` is
mandatory; `--from file://DIR` is the folder whose `mirror_NNNNNN.tar` archives are read
and whose `working-dir/` is used; `--cache-dir BASE` is the base under which the cache
lives at `.oc-mirror/.cache`; `--v2` selects the v2 flow; the destination is
`docker://...`. It is run against a real sample tree, as the far side runs it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.pushutil import PROJECT

FAKE_OC_MIRROR = r'''#!PYTHON
"""Checks oc-mirror v2 disk-to-mirror arguments as executor.go reads them."""
import pathlib, sys
args = sys.argv[1:]
def value(*names):
    for name in names:
        if name in args:
            return args[args.index(name) + 1]
    return None
problems = []
if "--v2" not in args:
    problems.append("no --v2")
isc = value("-c", "--config")
if not isc or not pathlib.Path(isc).is_file():
    problems.append(f"-c ISC is mandatory and must exist (got {isc!r})")
source = value("--from") or ""
if not source.startswith("file://"):
    problems.append(f"--from must be file://DIR (got {source!r})")
folder = pathlib.Path(source.removeprefix("file://"))
if not any(folder.glob("mirror_[0-9][0-9][0-9][0-9][0-9][0-9].tar")):
    problems.append(f"no mirror_NNNNNN.tar in --from {folder}")
if not (folder / "working-dir").is_dir():
    problems.append(f"no working-dir/ in --from {folder}")
base = value("--cache-dir")
if not base or not (pathlib.Path(base) / ".oc-mirror" / ".cache").is_dir():
    problems.append(f"--cache-dir {base!r} does not hold .oc-mirror/.cache")
if not args or not args[-1].startswith("docker://"):
    problems.append("the destination must be docker://...")
print("\n".join(problems) or "ok")
sys.exit(1 if problems else 0)
'''


def fake_oc_mirror(folder: Path) -> Path:
    folder.mkdir()
    script = folder / "oc-mirror"
    script.write_text(FAKE_OC_MIRROR.replace("PYTHON", sys.executable))
    script.chmod(0o755)
    return folder


def far_tree(tiny_months: dict[int, Path], far: Path) -> Path:
    shutil.copytree(tiny_months[1], far, symlinks=True, ignore=shutil.ignore_patterns(".syncd"))
    return far


def test_the_far_upload_example(tiny_months: dict[int, Path], tmp_path: Path) -> None:
    far = far_tree(tiny_months, tmp_path / "mirror")
    isc = tmp_path / "isc.yaml"
    isc.write_text("kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/v2alpha1\n")
    tools = fake_oc_mirror(tmp_path / "bin")
    env = {
        "PATH": f"{tools}:{os.environ['PATH']}",
        "SYNCD_ROOT": str(far),
        "SYNCD_SNAPSHOT": "0" * 64,
        "ISC": str(isc),
    }
    script = PROJECT / "systemd" / "far" / "mirror-upload.example"
    ran = subprocess.run(
        ["/bin/sh", str(script)], env=env, capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.strip() == "ok"


def test_the_lab_sites_proposed_command(tiny_months: dict[int, Path], tmp_path: Path) -> None:
    config = tomllib.loads((PROJECT / "examples" / "syncd.toml").read_text())
    lab = config["sites"]["lab"]
    far_root = lab["target"].partition(":")[2]  # /srv/mirror on the far host
    far = far_tree(tiny_months, tmp_path / "mirror")
    isc = tmp_path / "isc.yaml"
    isc.write_text("kind: ImageSetConfiguration\n")
    words = [
        word.replace(far_root, str(far)).replace("/etc/oc-mirror/isc.yaml", str(isc))
        for word in shlex.split(lab["post_apply"])
    ]
    assert words[0] == "oc-mirror"
    tools = fake_oc_mirror(tmp_path / "bin")
    ran = subprocess.run(
        [str(tools / "oc-mirror"), *words[1:]], capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stdout
