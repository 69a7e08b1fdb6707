"""One month of an oc-mirror user's life: mirror-to-disk into the cache and content/.

Month 1 starts from nothing. Month k adds what plan.plan_month(k) describes on top of
month k-1 and rewrites content/ as a differential mirror-to-disk would. Everything a
month writes carries that month's fixed time, so a spec, a seed and a month number give
the same bytes and mtimes on any machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from syncd.errors import UsageError
from syncd.sample import cosign, ocmirror, stamp, workingdir
from syncd.sample.build import BuiltImage
from syncd.sample.fill import fill_direct, fill_via_registry, tools_present
from syncd.sample.layers import rng
from syncd.sample.plan import (
    RELEASE_IMAGES_REPO,
    month_time,
    operator_repos,
    plan_month,
    release_version,
    rfc3339,
)
from syncd.sample.regstore import Storage
from syncd.sample.spec import SampleSpec
from syncd.sample.tarformat import Owner


@dataclass(frozen=True, slots=True)
class MonthReport:
    month: int
    images: tuple[str, ...]  # every repo:tag in the cache but signature tags, sorted
    new_blobs: tuple[str, ...]  # digests whose data files this month added to the cache
    new_cache_bytes: int
    archives: tuple[Path, ...]
    archive_bytes: int
    history_file: Path

    def as_json(self) -> dict[str, object]:
        return {
            "month": self.month,
            "images": list(self.images),
            "new_blobs": list(self.new_blobs),
            "new_cache_bytes": self.new_cache_bytes,
            "archives": [str(path) for path in self.archives],
            "archive_bytes": self.archive_bytes,
            "history_file": str(self.history_file),
        }


def generate_month(
    root: Path, month: int, spec: SampleSpec, *, via_registry: bool | None = None
) -> MonthReport:
    """Write month `month` into `root`; month 1 needs an empty root, month k month k-1.

    `via_registry=None` pushes through docker-registry when it and skopeo are installed.
    """
    _check_month(root, month)
    registry_mode = tools_present() if via_registry is None else via_registry
    ocmirror.remove_archives(root / ocmirror.CONTENT)  # first thing, as oc-mirror does
    when = month_time(month)
    before = {top: stamp.take(top) for top in (root / ".oc-mirror", root / ocmirror.CONTENT)}
    storage = Storage.under(root / ocmirror.CACHE)
    blobs_before = storage.blob_digests()
    fill = fill_via_registry if registry_mode else fill_direct
    cache = root / ocmirror.CACHE
    built = fill(cache, spec, month, rfc3339(when), plan_month(spec, month))
    _signatures_and_rebuilt_catalog(storage, spec, month, built)
    archives, history = _mirror_to_disk(root, spec, month, built, before)
    if month == 1:
        _set_mtime(root, month)  # the root itself was made this month
    new_blobs = sorted(storage.blob_digests() - blobs_before)
    return MonthReport(
        month=month,
        images=tuple(name for name in storage.images() if not name.endswith(".sig")),
        new_blobs=tuple(new_blobs),
        new_cache_bytes=sum(storage.blob_path(d).stat().st_size for d in new_blobs),
        archives=tuple(archives),
        archive_bytes=sum(path.stat().st_size for path in archives),
        history_file=history,
    )


def _mirror_to_disk(
    root: Path,
    spec: SampleSpec,
    month: int,
    built: list[BuiltImage],
    before: dict[Path, stamp.Snapshot],
) -> tuple[list[Path], Path]:
    """Rewrite content/ as mirror-to-disk does after filling the cache."""
    cache, content = root / ocmirror.CACHE, root / ocmirror.CONTENT
    when = month_time(month)
    facts = _facts(spec, month, built, Storage.under(cache))
    ocmirror.write_working_dir(content, workingdir.files(facts))
    for top, snapshot in before.items():
        stamp.apply(top, snapshot, _nanoseconds(month))  # archive headers carry these mtimes
    isc = workingdir.image_set_config(facts)
    owner = Owner(spec.owner_uid, spec.owner_name)
    run = ocmirror.Run(when, spec.archive_size, owner, rng(spec.seed, "go-maps", month))
    archives, added = ocmirror.write_archives(cache, content, isc, run)
    history = ocmirror.append_history(content, run, added)
    # content/ itself always changed: its archives were removed and written again.
    stamp.apply(content, before[content], _nanoseconds(month), always=frozenset({content}))
    return archives, history


def _signatures_and_rebuilt_catalog(
    storage: Storage, spec: SampleSpec, month: int, built: list[BuiltImage]
) -> None:
    """What mirror-to-disk adds around the images: Red Hat's cosign signatures (here of
    the operators under repository names of 32 characters or more, whose signature tags
    need PAX records; Red Hat signs the others too, left out to keep the tiny sample's
    file count, and so its media indexes, small), and the filtered catalog it rebuilt,
    tagged by its filter (here the same index, under that tag)."""
    for image in built:
        if image.plan.role == "operator" and len(image.plan.repo) >= 32:
            cosign.sign(storage, spec.seed, image.plan.repo, image.top.descriptor.digest)
        if image.plan.role == "catalog":
            tag = workingdir.filter_tag(spec.seed, month)
            storage.link_tag(image.plan.repo, tag, image.top.descriptor.digest)


def _nanoseconds(month: int) -> int:
    return int(month_time(month).timestamp()) * 1_000_000_000


def _set_mtime(path: Path, month: int) -> None:
    os.utime(path, ns=(_nanoseconds(month), _nanoseconds(month)))


def _check_month(root: Path, month: int) -> None:
    if month < 1:
        raise UsageError(f"month must be 1 or more, not {month}")
    if month == 1:
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise UsageError(f"month 1 needs an empty or missing root, and {root} is not empty")
        root.mkdir(parents=True, exist_ok=True)
        return
    histories = ocmirror.history_files(root / ocmirror.CONTENT)
    wanted = ocmirror.HISTORY_PREFIX + rfc3339(month_time(month - 1))
    if not histories:
        raise UsageError(f"month {month} needs month {month - 1} in {root}: no history file found")
    if histories[-1].name != wanted:
        raise UsageError(
            f"month {month} needs month {month - 1} in {root}: its newest history file is "
            f"{histories[-1].name}, not {wanted}"
        )


def _facts(
    spec: SampleSpec, month: int, built: list[BuiltImage], storage: Storage
) -> workingdir.MonthFacts:
    by_role: dict[str, list[BuiltImage]] = {}
    for image in built:
        by_role.setdefault(image.plan.role, []).append(image)
    prefix = f"{release_version(month)}-x86_64-"
    repositories = storage.repositories()
    return workingdir.MonthFacts(
        seed=spec.seed,
        month=month,
        version=release_version(month),
        release_digest=by_role["release"][0].top.descriptor.digest,
        catalog_digest=by_role["catalog"][0].top.descriptor.digest,
        components={
            image.plan.tag.removeprefix(prefix): image.top.descriptor.digest
            for image in by_role["component"]
        },
        operators=operator_repos(spec),
        additional=[
            name.removeprefix("additional/")
            for name in storage.images()
            if name.startswith("additional/")
        ],
        mirrored=[image.plan.name for image in built],
        releases={
            tag.removesuffix("-x86_64"): digest
            for tag, digest in storage.tags(RELEASE_IMAGES_REPO).items()
            if not tag.endswith(".sig")
        },
        operator_images=_latest_operators(spec, storage),
        repositories=repositories,
    )


def _latest_operators(spec: SampleSpec, storage: Storage) -> list[str]:
    """Each operator's newest version: what a heads-only filtered catalog lists."""
    found = []
    for repo in operator_repos(spec):
        tags = [tag for tag in storage.tags(repo) if not tag.endswith(".sig")]
        if tags:
            found.append(f"{repo}:{max(tags, key=lambda t: int(t.rsplit('.', 1)[-1]))}")
    return found
