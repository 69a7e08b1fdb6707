"""Turn a registry check (and findings about the folder around it) into a report section."""

from __future__ import annotations

from collections.abc import Sequence

from syncd.verify.problems import Severity
from syncd.verify.registry import RegistryResult
from syncd.verify.report import Finding, ImageEntry, Section


def build_section(
    kind: str,
    path: str,
    facts: Sequence[tuple[str, str]],
    result: RegistryResult | None,
    extra: Sequence[Finding] = (),
    *,
    hashed: int = 0,
    details: Sequence[tuple[str, object]] = (),
) -> Section:
    """Findings: the folder's own first (`extra`), then the images' problems."""
    images = result.images if result else {}
    findings = list(extra)
    chain = _chain_findings(result) if result else []
    findings += sorted(
        chain, key=lambda f: (f.problem.severity is not Severity.ERROR, f.problem.path)
    )
    numbers = {id(finding): n for n, finding in enumerate(findings)}
    by_image: dict[str, list[int]] = {name: [] for name in images}
    for finding in findings:
        for name in finding.images:
            by_image.setdefault(name, []).append(numbers[id(finding)])
    entries = []
    for name in sorted(by_image):
        listed = sorted(set(by_image[name]))
        ok = not any(findings[n].problem.is_error for n in listed)
        untagged = result is not None and name in result.orphans
        if untagged and ok and not listed:
            continue  # a sound revision no tag names: counted, not listed
        entries.append(ImageEntry(name, ok, tuple(listed)))
    return Section(
        kind=kind,
        path=path,
        facts=tuple(facts),
        images=tuple(entries),
        findings=tuple(findings),
        blobs_checked=result.blobs_checked if result else 0,
        bytes_hashed=(result.bytes_hashed if result else 0) + hashed,
        details=tuple(details),
    )


def _chain_findings(result: RegistryResult) -> list[Finding]:
    users: dict[str, list[str]] = {key: [] for key in result.problems}
    for name, outcome in result.images.items():
        for key in outcome.problems:
            users[key].append(name)
    return [Finding(problem, tuple(sorted(users[key]))) for key, problem in result.problems.items()]
