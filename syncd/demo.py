"""`python -m syncd.demo`: the main job on a generated sample, end to end.

Generates month 1 of an oc-mirror-like tree (cache + content) on a "connected" side,
pushes it with `syncd push` to an empty far root, then generates month 2 (oc-mirror's
differential archive) and pushes again: the far side asks for exactly what it lacks.
After each push, `syncd verify` checks the far tree's parity and the real oracle agrees:
Debian's docker-registry serves the far cache and skopeo pulls every image from it.
Then the same two months travel to a second far site on removable media: export
volumes with a parity volume, show what they carry, lose one data volume on the way
(it is rebuilt from the parity volume), import the rest (in reverse order), write a
receipt, export month 2 against it, import, and the same parity checks; the far side's
audit log lists both applies. Each step prints the command it runs; `--only push`
or `--only media` runs one half.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from syncd.sample import SMALL, Registry, generate_month, list_images, preset, pull_all
from syncd.units import format_bytes

CACHE = Path(".oc-mirror/.cache")


def syncd(*args: str) -> subprocess.CompletedProcess[str]:
    print(f"\n$ syncd {shlex.join(args)}", flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "syncd", *args], capture_output=True, text=True, check=False
    )
    sys.stdout.write(result.stdout if "--json" not in args else _short_json(result.stdout))
    sys.stderr.write(result.stderr)
    return result


def syncd_quiet(*args: str) -> subprocess.CompletedProcess[str]:
    """`syncd ARGS`, printed as run; its output left to the caller."""
    print(f"\n$ syncd {shlex.join(args)}", flush=True)
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args], capture_output=True, text=True, check=False
    )


def _short_json(text: str) -> str:
    data = json.loads(text)
    data.pop("changes", None)
    data.pop("problems", None)
    return json.dumps(data, indent=1) + "\n"


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def parity(root: Path) -> bool:
    """docker-registry serves the cache; skopeo pulls every tag: the real oracle."""
    with Registry(root / CACHE, read_only=True) as registry:
        images = list_images(registry)
        results = pull_all(registry, images)
    failed = [r for r in results.values() if not r.ok]
    print(f"skopeo pulled {len(images) - len(failed)}/{len(images)} images from {root / CACHE}")
    for result in failed:
        print(f"  FAILED {result.image}: {result.error}")
    return not failed


def run(workdir: Path, preset_name: str) -> int:
    spec = preset(preset_name) if preset_name else SMALL
    site, far = workdir / "connected", workdir / "far-site"
    step("Month 1: oc-mirror fills the cache and writes content/mirror_*.tar")
    generate_month(site, 1, spec)
    step("Push month 1 to an empty far site")
    if syncd("push", str(site), str(far), "--json").returncode != 0:
        return 1
    if not far_parity(far):
        return 1
    month1 = workdir / "month1.snapshot"
    shutil.copy(site / ".syncd" / "snapshot", month1)

    step("Month 2: new images; oc-mirror writes a differential archive")
    report = generate_month(site, 2, spec)
    print(
        f"oc-mirror's month-2 archives: {format_bytes(report.archive_bytes)} "
        f"(new cache blobs: {format_bytes(report.new_cache_bytes)})"
    )
    syncd("scan", str(site))
    step("What the far side lacks now (syncd diff against the month-1 snapshot)")
    syncd("diff", str(site / ".syncd" / "snapshot"), str(month1), "--json")
    step("Push month 2: only what the far side lacks moves")
    if syncd("push", str(site), str(far), "--json").returncode != 0:
        return 1
    return 0 if far_parity(far) else 1


def run_media(workdir: Path, preset_name: str) -> int:
    """The same two months for a site with no link: volumes out, a receipt back."""
    spec = preset(preset_name) if preset_name else SMALL
    site, far, usb = workdir / "connected", workdir / "far-site", workdir / "usb"
    step("Month 1: oc-mirror fills the cache and writes content/mirror_*.tar")
    generate_month(site, 1, spec)
    if not media_month(site, far, usb / "m1", None):
        return 1
    step("Far side: write a receipt (its fresh snapshot) for the connected side")
    receipt = usb / "receipt-1"
    if syncd("receipt", "--root", str(far), "--to", str(receipt)).returncode != 0:
        return 1
    step("Month 2: new images; oc-mirror writes a differential archive")
    generate_month(site, 2, spec)
    return 0 if media_month(site, far, usb / "m2", receipt) else 1


def media_month(site: Path, far: Path, media: Path, receipt: Path | None) -> bool:
    """Export onto 16 MB volumes plus one parity volume (against `receipt`: exactly what
    the far side lacks), lose the first data volume, import the rest in reverse order
    (the lost one is rebuilt from parity), check parity of the far tree."""
    basis = ["--receipt", str(receipt)] if receipt else []
    against = receipt.name if receipt else "no receipt yet"
    step(f"Export onto 16 MB volumes and one parity volume, against {against}")
    exported = syncd(
        "export", str(site), "--to", str(media), "--volume-size", "16M", "--parity", "1", *basis
    )
    if exported.returncode != 0:
        return False
    folder = next(media.iterdir())
    step("What the export carries (its signed transfer manifest, first lines)")
    shown = syncd_quiet("show", str(folder))
    print("\n".join(shown.stdout.splitlines()[:12]) + "\n  ...")
    lost = folder / "vol-0001"
    step(f"A disk is lost on the way: {lost.name} never arrives")
    shutil.rmtree(lost)
    step("Far side: import the other volumes in reverse order; vol-0001 is rebuilt from parity")
    volumes = sorted(folder.glob("vol-*"), reverse=True)
    imported = syncd("import", *map(str, volumes), "--root", str(far))
    if imported.returncode != 0 or "rebuilt from parity" not in imported.stdout:
        return False
    syncd("audit", "--root", str(far))
    return far_parity(far)


def far_parity(far: Path) -> bool:
    step("Parity of the far side: syncd verify, then the real oracle")
    state = far.parent / f"{far.name}-verify-state"
    verified = syncd("verify", str(far), "--state", str(state)).returncode == 0
    return parity(far) and verified


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m syncd.demo", description=__doc__)
    parser.add_argument(
        "--workdir", type=Path, help="where to put the sample (default: a temp dir)"
    )
    parser.add_argument("--preset", default="small", help="sample size: tiny, small or large")
    parser.add_argument("--only", choices=sorted(HALVES), help="run one half only")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="syncd-demo-"))
    if workdir.exists() and any(workdir.iterdir()):
        print(f"demo: {workdir} is not empty; give an empty or new --workdir", file=sys.stderr)
        return 2
    print(f"demo workdir: {workdir}")
    status = 0
    for name in [args.only] if args.only else list(HALVES):
        print(f"\n######## {name}: {HALVES[name][1]}", flush=True)
        status = status or HALVES[name][0](workdir / name, args.preset)
    print("\ndemo: " + ("OK" if status == 0 else "FAILED"))
    return status


HALVES: dict[str, tuple[Callable[[Path, str], int], str]] = {
    "push": (run, "months 1 and 2 pushed to a far root"),
    "media": (run_media, "months 1 and 2 carried on removable media, receipts back"),
}


if __name__ == "__main__":
    raise SystemExit(main())
