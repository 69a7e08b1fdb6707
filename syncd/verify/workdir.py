"""The working-dir parts disk-to-mirror needs, as docs/FACTS.md lists them.

disk-to-mirror extracts the archives' `working-dir/` members into `<from>/working-dir`,
so a part counts as present when it has a file either in the archives or on disk
already. Each part is required only when the image set asks for its kind of content.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from syncd.verify.isc import ImageSetKinds, catalog_name

WORKING_DIR = "working-dir"
_FILTERED = "filtered-catalogs"


@dataclass(frozen=True, slots=True)
class Need:
    part: str  # as shown: "working-dir/hold-release/"
    why: str  # what disk-to-mirror does with it
    kind: str  # which images depend on it: "release", "catalog:<reference>" or "helm"


def needs(kinds: ImageSetKinds) -> list[Need]:
    found: list[Need] = []
    if kinds.release:
        found += [
            Need(
                f"{WORKING_DIR}/hold-release/",
                "the image set mirrors a platform release, and disk-to-mirror reads the "
                "release's payload metadata from there",
                "release",
            ),
            Need(
                f"{WORKING_DIR}/signatures/",
                "the image set mirrors a platform release, and disk-to-mirror uploads the "
                "release signatures from there",
                "release",
            ),
        ]
    found += [
        Need(
            f"{WORKING_DIR}/operator-catalogs/{catalog_name(ref)}/.../{_FILTERED}/",
            f"the image set mirrors operators from {ref}, and disk-to-mirror rebuilds that "
            "catalog from its filtered declarative config there",
            f"catalog:{ref}",
        )
        for ref in kinds.catalogs
    ]
    if kinds.helm:
        found.append(
            Need(
                f"{WORKING_DIR}/helm/",
                "the image set mirrors helm charts, and disk-to-mirror uploads the charts "
                "and their images from there",
                "helm",
            )
        )
    return found


class WorkingDirView:
    """The working-dir disk-to-mirror will see: archive members and files on disk."""

    def __init__(self, disk: Path, member_names: Iterable[str]) -> None:
        self.disk = disk
        prefix = WORKING_DIR + "/"
        self.members = [name[len(prefix) :] for name in member_names if name.startswith(prefix)]

    def has(self, need: Need) -> bool:
        if need.kind.startswith("catalog:"):
            name = catalog_name(need.kind.removeprefix("catalog:"))
            return self._any(f"operator-catalogs/{name}/", _in_filtered)
        part = need.part.removeprefix(WORKING_DIR + "/")
        return self._any(part, lambda _rel: True)

    def _any(self, prefix: str, accept: Callable[[str], bool]) -> bool:
        if any(rel.startswith(prefix) and accept(rel) for rel in self.members):
            return True
        top = self.disk / prefix
        for folder, _dirs, files in os.walk(top):
            rel = Path(folder).relative_to(self.disk).as_posix() + "/"
            if files and accept(rel + files[0]):
                return True
        return False


def _in_filtered(rel: str) -> bool:
    return f"/{_FILTERED}/" in rel
