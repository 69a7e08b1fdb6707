"""What a content folder's archives say before any image is looked at.

See `archives` for disk-to-mirror's rules. An archive it fails on, or a member whose
path escapes, fails the whole run; names it ignores, a set with a number missing, an
archive cut at a member boundary and a tag link that a later archive overwrites do
not fail it by themselves (whatever they lost shows up in the images), so they are
warnings that say what they may have cost.
"""

from __future__ import annotations

import re
from pathlib import Path

from syncd.verify.archives import PICKED, ArchiveSet
from syncd.verify.problems import Code, error, warning
from syncd.verify.report import Finding

_NUMBERED = re.compile(r"mirror_(\d{6})\.tar")
_STOPS = "disk-to-mirror stops at this archive, so the upload fails"


def archive_findings(
    folder: Path, archives: ArchiveSet, everything: tuple[str, ...]
) -> list[Finding]:
    found: list[Finding] = []
    if not archives.picked:
        message = (
            f"{folder} holds no file disk-to-mirror picks (names matching "
            f"{PICKED.pattern!r}): it stops with `no tar archives ... found`"
        )
        found.append(
            Finding(error(Code.NO_ARCHIVES, message, str(folder)), everything, True, _STOPS)
        )
    for name in archives.near:
        message = f"{folder / name} does not match {PICKED.pattern!r}: disk-to-mirror ignores it"
        found.append(Finding(warning(Code.ARCHIVE_NAME, message, str(folder / name)), ()))
    found += _reads(folder, archives, everything)
    found += _gaps(folder, archives)
    for ref in archives.extraction.tainted:
        message = (
            f"{folder / ref.archive} holds member {ref.name!r}, whose path leads outside the "
            "folder it is extracted into: disk-to-mirror stops (`content filepath is tainted`)"
        )
        problem = error(Code.MEMBER_UNSAFE, message, str(folder / ref.archive))
        found.append(Finding(problem, everything, True, _STOPS))
    for over in archives.extraction.overwrites:
        message = (
            f"{over.later} overwrites the tag link {over.rel} that {over.first} carries, with "
            "another digest: the later archive's wins"
        )
        found.append(Finding(warning(Code.TAG_OVERWRITTEN, message, over.rel), ()))
    return found


def _reads(folder: Path, archives: ArchiveSet, everything: tuple[str, ...]) -> list[Finding]:
    found: list[Finding] = []
    unread = [p.name for p in archives.picked[len(archives.reads) :]]
    after = f"; {', '.join(unread)} after it would not be read" if unread else ""
    for read in archives.reads:
        path = str(folder / read.name)
        if read.index is None:
            message = f"disk-to-mirror picks {path}, which it cannot read: {read.error}{after}"
            problem = error(Code.ARCHIVE_UNREADABLE, message, path)
            found.append(Finding(problem, everything, True, _STOPS))
        elif read.index.issue is not None and read.index.issue.fatal:
            message = f"disk-to-mirror picks {path}: {read.index.issue.message}{after}"
            problem = error(Code.ARCHIVE_CORRUPT, message, path)
            found.append(Finding(problem, everything, True, _STOPS))
        elif read.index.issue is not None:
            message = (
                f"{path}: {read.index.issue.message} (disk-to-mirror reads it as a whole "
                "archive; the images that needed the rest are listed as broken)"
            )
            found.append(Finding(warning(Code.ARCHIVE_NO_END, message, path), ()))
    return found


def _gaps(folder: Path, archives: ArchiveSet) -> list[Finding]:
    numbers = sorted(
        int(match.group(1)) for p in archives.picked if (match := _NUMBERED.fullmatch(p.name))
    )
    present = set(numbers)
    found = []
    for number in range(1, max(numbers, default=0) + 1):
        if number in present:
            continue
        name = f"mirror_{number:06d}.tar"
        message = (
            f"{name} is missing from the archive set in {folder}: disk-to-mirror does not "
            "notice; whatever it held must already be in the cache (the images that lack "
            "it are listed as broken)"
        )
        found.append(Finding(warning(Code.ARCHIVE_GAP, message, str(folder / name)), ()))
    return found


def describe_archives(archives: ArchiveSet) -> str:
    names = [p.name for p in archives.picked]
    if not names:
        return "none"
    if len(names) == 1:
        return f"{names[0]} (1 archive)"
    return f"{names[0]} .. {names[-1]} ({len(names)} archives picked)"
