"""The verify report: by image, then what is wrong where, then a summary.

Each section is one registry tree, one content folder, or the comparison with a
snapshot. A finding is a problem and the images it breaks; `whole` marks a finding that
breaks every image of its section at once (a corrupt archive stops disk-to-mirror), so
it is said once at the top of the section rather than under every image.
"""

from __future__ import annotations

from dataclasses import dataclass

from syncd.units import format_bytes
from syncd.verify.problems import Code, Problem, Severity

_SHOWN_NAMES = 5  # images named after a problem before "and N more"
_SHOWN_FINDINGS = 50  # section-level findings printed before "and N more"


@dataclass(frozen=True, slots=True)
class Finding:
    problem: Problem
    images: tuple[str, ...]  # the images it breaks (or, for a warning, concerns)
    whole: bool = False  # it breaks every image of the section
    note: str = ""  # how it breaks them, when that is not through their own chain

    def as_json(self, number: int) -> dict[str, object]:
        out: dict[str, object] = {"id": number, **self.problem.as_json()}
        out["images"] = list(self.images)
        if self.whole:
            out["breaks_every_image"] = True
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True, slots=True)
class ImageEntry:
    name: str  # repo:tag, or repo@digest for a revision no tag names
    ok: bool
    findings: tuple[int, ...]  # indexes into the section's findings

    def as_json(self) -> dict[str, object]:
        return {"image": self.name, "ok": self.ok, "problems": list(self.findings)}


@dataclass(frozen=True, slots=True)
class Section:
    kind: str  # "registry", "content" or "against"
    path: str
    facts: tuple[tuple[str, str], ...]
    images: tuple[ImageEntry, ...]
    findings: tuple[Finding, ...]
    blobs_checked: int = 0
    bytes_hashed: int = 0
    details: tuple[tuple[str, object], ...] = ()  # kind-specific JSON (a content folder's)

    @property
    def ok(self) -> bool:
        return not any(f.problem.is_error for f in self.findings)

    def count(self, severity: Severity) -> int:
        return sum(f.problem.severity is severity for f in self.findings)

    def as_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "path": self.path,
            "ok": self.ok,
            "facts": dict(self.facts),
            "images": [image.as_json() for image in self.images],
            "problems": [f.as_json(n) for n, f in enumerate(self.findings)],
            "blobs_checked": self.blobs_checked,
            "bytes_hashed": self.bytes_hashed,
            **dict(self.details),
        }

    def lines(self) -> list[str]:
        facts = "; ".join(f"{label}: {value}" for label, value in self.facts)
        out = [f"{self.kind} {self.path}" + (f"  ({facts})" if facts else "")]
        out += self._top_lines()
        for image in self.images:
            out += self._image_lines(image)
        out += self._warning_lines()
        broken = sum(not image.ok for image in self.images)
        if self.images:
            out.append(
                f"  {len(self.images)} images: {len(self.images) - broken} ok, {broken} broken"
            )
        return out

    def _top_lines(self) -> list[str]:
        """Errors not tied to one image's chain: archive and working-dir findings."""
        top = [f for f in self.findings if f.problem.is_error and _section_wide(f)]
        out: list[str] = []
        for finding in top[:_SHOWN_FINDINGS]:
            out.append(f"  error: {finding.problem.message}")
            if finding.whole and finding.images:
                count = len(finding.images)
                out.append(f"         breaks every image here ({count}): {finding.note}")
            elif finding.whole:
                out.append(f"         breaks the whole upload: {finding.note}")
            elif finding.images:
                out.append(f"         breaks {_names(finding.images)}: {finding.note}")
        if len(top) > _SHOWN_FINDINGS:
            out.append(f"  ... and {len(top) - _SHOWN_FINDINGS} more errors (see --json)")
        return out

    def _image_lines(self, image: ImageEntry) -> list[str]:
        warnings = sum(not self.findings[n].problem.is_error for n in image.findings)
        note = f"  ({warnings} warning{'s' if warnings > 1 else ''})" if warnings else ""
        if image.ok:
            return [f"  ok      {image.name}{note}"]
        out = [f"  BROKEN  {image.name}{note}"]
        for number in image.findings:
            finding = self.findings[number]
            if not finding.problem.is_error or _section_wide(finding):
                continue  # warnings below; section-wide errors above
            out.append(f"          error: {finding.problem.message}")
            others = tuple(name for name in finding.images if name != image.name)
            if others:
                out.append(f"                 also breaks {_names(others)}")
        if len(out) == 1:
            out.append("          (by the errors listed above)")
        return out

    def _warning_lines(self) -> list[str]:
        warnings = [f for f in self.findings if not f.problem.is_error]
        sparse = [f for f in warnings if f.problem.code is Code.CHILD_SPARSE]
        if len(sparse) > _SHOWN_NAMES:  # routine in oc-mirror's cache: count them
            warnings = [f for f in warnings if f.problem.code is not Code.CHILD_SPARSE]
        out = []
        for finding in warnings:
            concerns = f" (concerns {_names(finding.images)})" if finding.images else ""
            out.append(f"  {finding.problem.severity.value}: {finding.problem.message}{concerns}")
        if len(sparse) > _SHOWN_NAMES:
            out.append(
                f"  warning: {len(sparse)} sparse indexes name absent platforms, as "
                "oc-mirror's cache allows (listed with --json)"
            )
        return out


@dataclass(frozen=True, slots=True)
class VerifyReport:
    root: str
    deep: bool
    sections: tuple[Section, ...]
    seconds: float
    blobs_checked: int
    bytes_hashed: int

    @property
    def ok(self) -> bool:
        return all(section.ok for section in self.sections)

    def summary(self) -> dict[str, object]:
        images = [image for section in self.sections for image in section.images]
        return {
            "images_ok": sum(image.ok for image in images),
            "images_broken": sum(not image.ok for image in images),
            "errors": sum(s.count(Severity.ERROR) for s in self.sections),
            "warnings": sum(s.count(Severity.WARNING) for s in self.sections),
            "blobs_checked": self.blobs_checked,
            "bytes_hashed": self.bytes_hashed,
            "seconds": round(self.seconds, 3),
        }

    def as_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "root": self.root,
            "deep": self.deep,
            "sections": [section.as_json() for section in self.sections],
            "summary": self.summary(),
        }

    def brief(self, limit: int) -> list[str]:
        """What a far side may send back (REPORT): the verdict, counts, image names,
        problem codes, paths relative to the root and digests, never a message (a
        message may describe what a file holds). At most `limit` problem lines."""
        s = self.summary()
        out = [
            f"{'OK' if self.ok else 'FAILED'}: {s['images_ok']} images ok, "
            f"{s['images_broken']} broken; {s['errors']} errors, {s['warnings']} warnings"
        ]
        errors = [f for section in self.sections for f in section.findings if f.problem.is_error]
        for finding in errors[:limit]:
            problem = finding.problem
            words = ["error", problem.code.value, _relative(problem.path, self.root)]
            words += [problem.digest] if problem.digest else []
            if finding.images:
                words.append(f"(breaks {_names(finding.images)})")
            out.append(" ".join(word for word in words if word))
        if len(errors) > limit:
            out.append(f"... and {len(errors) - limit} more errors")
        return out

    def lines(self) -> list[str]:
        out: list[str] = []
        for section in self.sections:
            out += section.lines()
        s = self.summary()
        out.append(
            f"{'OK' if self.ok else 'FAILED'}: {s['images_ok']} images ok, "
            f"{s['images_broken']} broken; {s['errors']} errors, {s['warnings']} warnings; "
            f"{s['blobs_checked']} blobs checked, {format_bytes(self.bytes_hashed)} hashed "
            f"in {self.seconds:.2f} s" + (" (deep)" if self.deep else "")
        )
        return out


def _relative(path: str, root: str) -> str:
    prefix = root.rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) else path


def _section_wide(finding: Finding) -> bool:
    """Said once at the top of a section: not a link in one image's own chain."""
    return finding.whole or bool(finding.note) or not finding.images


def _names(images: tuple[str, ...]) -> str:
    shown = ", ".join(images[:_SHOWN_NAMES])
    more = len(images) - _SHOWN_NAMES
    count = f"{len(images)} image{'s' if len(images) > 1 else ''}"
    return f"{count}: {shown}" + (f" and {more} more" if more > 0 else "")
