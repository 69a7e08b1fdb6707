"""verify campaign: >= 200 real-life breakages, verify's verdict against disk-to-mirror's.

Made once: month 1 and month 2 of a TINY sample (small archives, so month 2 spans
several). The pristine far root is what a far side holds before month 2's upload:
month 1's cache and working-dir (what the last disk-to-mirror left), and month 2's
archives in content/. Each case copies it, applies one breakage (reliability/
verify_cases.py) with a seeded choice, and asks two questions:
- the oracle (reliability/d2m.py): does disk-to-mirror, modelled from unarchive.go,
  Go's tar reader, the collectors and a real docker-registry and skopeo, succeed?
- `syncd verify ROOT --config ISC` (in-process), with and without --deep: OK or FAILED?
A false OK (verify OK, the upload fails) and a false alarm (verify FAILED, the upload
succeeds) are both failures of the campaign; verify must also never raise. Shallow
verify reads no layer bytes, so for a flipped byte inside a layer only --deep is held
to the oracle.
"""

from __future__ import annotations

import shutil
import tarfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

from reliability.campaign import Context, Figure, Outcome
from reliability.d2m import run_oracle
from reliability.verify_cases import DEEP_ONLY, KINDS, Case
from syncd.errors import SyncdError
from syncd.sample import TINY, generate_month
from syncd.verify import VerifyOptions, verify_root

PER_KIND = 8  # the full run: 30 kinds x 8 = 240 cases
QUICK_KINDS = 8  # the suite's slice: this many kinds, seeded, pristine always among them
SPEC = replace(TINY, archive_size=96 << 10)


def pristine_far(scratch: Path) -> tuple[Path, str]:
    """The far root before month 2's upload, and month 2's image set config."""
    near = scratch / "near"
    generate_month(near, 1, SPEC, via_registry=False)
    far = scratch / "far"
    shutil.copytree(near, far, symlinks=True)
    generate_month(near, 2, SPEC, via_registry=False)
    for old in far.glob("content/mirror_*.tar"):
        old.unlink()
    config = ""
    for archive in sorted(near.glob("content/mirror_*.tar")):
        shutil.copy2(archive, far / "content" / archive.name)
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                extracted = tar.extractfile(member) if member.name.startswith("isc_") else None
                if extracted is not None:
                    config = extracted.read().decode()
    return far, config


def cases(ctx: Context) -> list[str]:
    kinds = sorted(KINDS)
    if not ctx.quick:
        return [kind for kind in kinds for _ in range(PER_KIND)]
    chosen = ctx.rng("kinds").sample([k for k in kinds if k != "pristine"], QUICK_KINDS - 1)
    return ["pristine", *chosen]


def judge(far: Path, config: str, kind: str, number: int, ctx: Context) -> dict[str, object]:
    root = ctx.scratch / f"case-{number}"
    shutil.copytree(far, root, symlinks=True)
    case = Case(root, config, ctx.rng(f"case-{number}"))
    KINDS[kind](case)
    isc = ctx.scratch / f"case-{number}.yaml"
    isc.write_text(case.config)
    oracle = run_oracle(case.content, root, case.config, ctx.scratch)
    verdicts: dict[bool, bool | str] = {}
    for deep in (False, True):
        try:
            verdicts[deep] = verify_root(root, VerifyOptions(deep=deep, config=isc, workers=1)).ok
        except SyncdError as exc:
            verdicts[deep] = f"error: {exc}"
    shutil.rmtree(root, ignore_errors=True)
    return {
        "number": number,
        "kind": kind,
        "oracle": oracle.ok,
        "failure": oracle.failure,
        "shallow": verdicts[False],
        "deep": verdicts[True],
    }


def run(ctx: Context) -> Outcome:
    outcome = Outcome("verify")
    far, config = pristine_far(ctx.scratch)
    results = [judge(far, config, kind, n, ctx) for n, kind in enumerate(cases(ctx))]
    false_ok = [r for r in results if r["deep"] is True and not r["oracle"]]
    false_alarm = [r for r in results if r["deep"] is False and r["oracle"]]
    crashed = [r for r in results if isinstance(r["deep"], str) or isinstance(r["shallow"], str)]
    shallow_held = [r for r in results if r["kind"] not in DEEP_ONLY]
    shallow_agree = sum(r["shallow"] == r["oracle"] for r in shallow_held)
    oracle_ok = sum(bool(r["oracle"]) for r in results)
    by_kind = Counter(str(r["kind"]) for r in results)
    outcome.figures += [
        Figure(
            "cases",
            str(len(results)),
            "report" if ctx.quick else ">= 200",
            ctx.quick or len(results) >= 200,
        ),
        Figure("kinds of breakage", str(len(by_kind))),
        Figure("oracle: upload succeeds / fails", f"{oracle_ok} / {len(results) - oracle_ok}"),
        Figure(
            "verify --deep agrees",
            f"{len(results) - len(false_ok) - len(false_alarm)} of {len(results)}",
        ),
        Figure("false OK (--deep)", str(len(false_ok)), "0", not false_ok),
        Figure("false alarms (--deep)", str(len(false_alarm)), "0", not false_alarm),
        Figure(
            "shallow verify agrees (layer-byte cases aside)",
            f"{shallow_agree} of {len(shallow_held)}",
            f"{len(shallow_held)} of {len(shallow_held)}",
            shallow_agree == len(shallow_held),
        ),
        Figure("verify raised", str(len(crashed)), "0", not crashed),
    ]
    for r in false_ok + false_alarm + crashed:
        outcome.failures.append(
            f"case {r['number']} ({r['kind']}): oracle {'OK' if r['oracle'] else 'FAILED'} "
            f"({r['failure']}), verify --deep {r['deep']}, shallow {r['shallow']}"
        )
    for r in shallow_held:
        if r["shallow"] != r["oracle"] and r not in false_ok + false_alarm:
            outcome.failures.append(
                f"case {r['number']} ({r['kind']}): shallow verify {r['shallow']}, "
                f"oracle {r['oracle']} ({r['failure']})"
            )
    return outcome
