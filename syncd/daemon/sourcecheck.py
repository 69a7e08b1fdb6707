"""The daemon's check of its own source after each rescan: no broken source is pushed.

A push makes every far site equal the source, deletions included: a source whose
registry lost a tag link (an interrupted oc-mirror run, a hand-made mistake) would be
carried to every site, over a good far tree, and only the far side's own parity check
would notice, after the damage, blaming the far side. So after each scan the daemon
checks the source as `syncd verify ROOT` does (shallow: every chain, no blob hashing),
through the same entry point (`syncd.verify.verify_root`), and sites are sent nothing
while it fails: the error names the source and the broken images, in the log
(`event=source-broken`) and in `syncd status`. A tree with nothing to verify in it (no
registry storage, no content folder) is pushed as it is: the check has nothing to say.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from syncd.errors import SyncdError

SHOWN_IMAGES = 10  # broken images named in the log and in status


@dataclass(frozen=True, slots=True)
class SourceCheck:
    snapshot: str  # the scanned snapshot id the check was made for
    status: str  # "ok", "failed", "skipped" (nothing to verify) or "error"
    summary: str  # verify's last line, or why it could not run
    broken: tuple[str, ...]  # broken images, by name (at most SHOWN_IMAGES)
    broken_count: int
    at: float

    @property
    def holds(self) -> bool:
        """May this snapshot be pushed?"""
        return self.status in ("ok", "skipped")

    def problem(self, root: Path) -> str:
        """One line naming the source and what is broken in it."""
        names = ", ".join(self.broken)
        more = self.broken_count - len(self.broken)
        if more > 0:
            names += f" and {more} more"
        images = f"; broken: {names}" if names else ""
        return f"the source {root} fails its own parity check ({self.summary}){images}"

    def as_json(self) -> dict[str, object]:
        out = asdict(self)
        out["broken"] = list(self.broken)
        return out


def check_source(root: Path, snapshot: str, workers: int = 2) -> SourceCheck:
    """Verify `root` (shallow) as `syncd verify` would; never raises for the tree's sake."""
    # Imported here: verify's modules are loaded only once a scan has been done.
    from syncd.verify import VerifyOptions, verify_root  # noqa: PLC0415

    now = time.time()
    try:
        report = verify_root(root, VerifyOptions(workers=workers))
    except SyncdError as exc:
        status = "skipped" if "nothing to verify" in str(exc) else "error"
        return SourceCheck(snapshot, status, str(exc), (), 0, now)
    broken = [image.name for section in report.sections for image in section.images if not image.ok]
    summary = report.lines()[-1]
    if not report.ok and not broken:  # a section-wide problem: name its first error
        errors = [line.strip() for line in report.lines() if line.strip().startswith("error:")]
        summary = f"{summary}; {errors[0]}" if errors else summary
    return SourceCheck(
        snapshot,
        "ok" if report.ok else "failed",
        summary,
        tuple(broken[:SHOWN_IMAGES]),
        len(broken),
        now,
    )
