"""Which export a volume may start an import of (SPEC.md 9.6): no mix-up rolls a site back.

Media get mixed up: a `--full` export of another tree lands in the drawer, an old month's
disk is plugged in again, a far side's state folder is lost. The far side judges each
volume of an export other than the one in progress by:

- its date: an export created more than a day after this host's clock is refused,
  naming both times (a wrong clock, or a hostile date that would otherwise outrank
  every genuine export for good); a record of ours dated that far ahead is disregarded;
- the import in progress: only a newer export of the same site and the same lineage
  (the exporting source, VolumeHeader.lineage) supersedes it; a volume of another
  source or site is refused while it is in progress (`--supersede` drops it);
- the export last applied here: a volume of an older export would roll the root back,
  and is refused unless `--allow-rollback`.

The export last applied is kept twice: in the state folder's import record, and on the
root directory itself, as the extended attribute `user.syncd.applied` (AppliedMark),
so that a reset state folder (`rm -rf ROOT/.syncd`) does not forget it. A file system
without user extended attributes (some network file systems) keeps only the first:
README says what a reset then forgets.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from protocol.codec import pack, unpack
from protocol.errors import ProtocolError
from protocol.media import VolumeHeader

if TYPE_CHECKING:
    from syncd.media.progress import ImportProgress

XATTR = "user.syncd.applied"
FUTURE_SLACK_NS = 86_400 * 10**9  # a day: clocks of the two sides may differ this much
_ID_SIZE = 16


def describe_time(ns: int) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ns // 10**9))
    except (OverflowError, OSError, ValueError):
        return f"{ns} ns after 1970"


def too_far_ahead(created_ns: int, now_ns: int) -> bool:
    return created_ns > now_ns + FUTURE_SLACK_NS


def future_problem(what: str, created_ns: int, now_ns: int) -> str | None:
    """Why `what` (made at created_ns) is refused as dated ahead of this host's clock."""
    if not too_far_ahead(created_ns, now_ns):
        return None
    return (
        f"{what} was made at {describe_time(created_ns)}, more than a day after this host's "
        f"clock ({describe_time(now_ns)}): check both hosts' clocks"
    )


@dataclass(frozen=True, slots=True)
class AppliedMark:
    """The export last applied to a root, noted on the root directory itself."""

    export_id: str
    created_ns: int
    site: bytes | None
    lineage: bytes | None

    @classmethod
    def of(cls, progress: ImportProgress) -> AppliedMark:
        return cls(progress.export_id, progress.created_ns, progress.site, progress.lineage)

    def write(self, root: Path) -> None:
        """Best effort: a file system without user extended attributes keeps none."""
        data = pack([1, self.export_id, self.created_ns, self.site, self.lineage])
        with contextlib.suppress(OSError):
            os.setxattr(root, XATTR, data, follow_symlinks=False)

    @classmethod
    def read(cls, root: Path) -> AppliedMark | None:
        """The mark on `root`, or None (none, unreadable, or not one of ours)."""
        try:
            value = unpack(os.getxattr(root, XATTR, follow_symlinks=False))
        except (OSError, ProtocolError):
            return None
        if not (isinstance(value, list) and len(value) == 5 and value[0] == 1):
            return None
        _, export_id, created, site, lineage = value
        if not (isinstance(export_id, str) and type(created) is int):
            return None
        if not (_optional_id(site) and _optional_id(lineage)):
            return None
        return cls(export_id, created, site, lineage)


def _optional_id(value: object) -> bool:
    return value is None or (isinstance(value, bytes) and len(value) == _ID_SIZE)


@dataclass(frozen=True, slots=True)
class Allowances:
    """What the operator allowed on the command line."""

    rollback: bool = False  # --allow-rollback
    supersede: bool = False  # --supersede


def start_problem(
    header: VolumeHeader,
    progress: ImportProgress | None,
    mark: AppliedMark | None,
    allowed: Allowances,
    now_ns: int | None = None,
) -> str | None:
    """Why a volume of `header`'s export may not start an import here (None: it may).

    `progress` is the import record (its own export is handled by the caller), `mark`
    the root's note of the export last applied."""
    now = time.time_ns() if now_ns is None else now_ns
    problem = future_problem("its export", header.created_ns, now)
    if problem is not None:
        return problem
    pending = progress is not None and not progress.applied
    if progress is not None and pending and not too_far_ahead(progress.created_ns, now):
        problem = _superseding(header, progress, allowed)
        if problem is not None:
            return problem
    last = _last_applied(progress, mark, now)
    if last is None or allowed.rollback:
        return None
    if (header.created_ns, header.export_id) >= (last.created_ns, last.export_id):
        return None
    return (
        f"it would roll this root back: its export {header.export_id} was made at "
        f"{describe_time(header.created_ns)}, before export {last.export_id} (made at "
        f"{describe_time(last.created_ns)}), which this root applied; give "
        "--allow-rollback to apply it all the same"
    )


def _superseding(header: VolumeHeader, progress: ImportProgress, allowed: Allowances) -> str | None:
    seen = ", ".join(str(n) for n in sorted(progress.seen)) or "none"
    in_progress = (
        f"export {progress.export_id} is being imported here (volumes seen: {seen} of "
        f"{progress.volumes})"
    )
    if allowed.supersede:
        return None
    if (header.site, header.lineage) != (progress.site, progress.lineage):
        return (
            f"{in_progress}, and export {header.export_id} comes from another source or was "
            "made for another site: finish that import, or give --supersede to drop it for "
            "this one"
        )
    if (header.created_ns, header.export_id) <= (progress.created_ns, progress.export_id):
        return (
            f"it belongs to export {header.export_id}, older than {in_progress}; give "
            "--supersede to drop that import for this one"
        )
    return None


def _last_applied(
    progress: ImportProgress | None, mark: AppliedMark | None, now_ns: int
) -> AppliedMark | None:
    """The newest export known to be applied here, of those dated sensibly."""
    known = [mark] if mark is not None else []
    if progress is not None and progress.applied:
        known.append(AppliedMark.of(progress))
    known = [m for m in known if not too_far_ahead(m.created_ns, now_ns)]
    return max(known, key=lambda m: (m.created_ns, m.export_id), default=None)
