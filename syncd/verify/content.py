"""Will `oc-mirror --from file://<folder>` succeed? One content folder's checks.

- the archive set is numbered 000001..N without gaps, and every archive reads to its
  end marker (see `tarindex`);
- the registry disk-to-mirror will have after extracting (archives over the cache, see
  `archstore`) serves every tag and revision of the archives' repositories tree;
- `openshift/graph-image:latest` resolves there when the content carries a release;
- the working-dir parts disk-to-mirror reads are present for the kinds of images the
  image set config asks for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from syncd.verify import archives as sets
from syncd.verify.archives import Archive, ArchiveSet
from syncd.verify.archstore import ArchiveStore
from syncd.verify.deep import run_deep
from syncd.verify.fsstore import FsStore
from syncd.verify.hashing import Hasher
from syncd.verify.isc import ImageSetKinds, catalog_repository, parse_image_set_config
from syncd.verify.problems import Code, error, warning
from syncd.verify.registry import Checker, Policy, RegistryResult
from syncd.verify.report import Finding, Section
from syncd.verify.sections import build_section
from syncd.verify.store import StoreError
from syncd.verify.workdir import WorkingDirView, needs

GRAPH = ("openshift/graph-image", "latest")
GRAPH_NAME = "openshift/graph-image:latest"
RELEASE_REPOS = ("openshift/release-images", "openshift/release")
_ISC_LIMIT = 1 << 20
_STOPS = "disk-to-mirror stops extracting at this archive, so the upload fails"
_LOST = (
    "the images whose blobs or links are in neither the archives nor the cache: likely "
    "what the lost part held"
)


@dataclass(frozen=True, slots=True)
class ContentOptions:
    sparse_index: bool
    deep: bool


def check_content(
    folder: Path, cache: Path | None, options: ContentOptions, hasher: Hasher
) -> Section:
    """`cache` is the `docker/registry/v2` folder disk-to-mirror will extract into."""
    numbered, ignored = sets.find_archives(folder)
    with ArchiveSet(numbered) as archive_set:
        store = ArchiveStore(archive_set, FsStore(cache) if cache else None)
        kinds, isc_findings = _kinds(archive_set, store)
        result = _check_images(store, Policy(options.sparse_index, track_blobs=options.deep), kinds)
        hashed = run_deep(result, store, hasher) if options.deep else 0
        everything = tuple(sorted(result.images))
        lost = tuple(sorted(result.broken()))  # what a lost archive would show up as
        extra = [
            *_set_findings(folder, numbered, ignored, everything, lost),
            *_archive_findings(archive_set, everything, lost),
            *isc_findings,
            *_working_dir_findings(folder, archive_set, kinds, everything),
            *_graph_findings(result, kinds, everything),
        ]
    facts = [
        ("archives", _describe_set(numbered)),
        ("cache", str(cache) if cache else "none found"),
        ("content", _describe_kinds(kinds)),
    ]
    return build_section("content", str(folder), facts, result, extra, hashed=hashed)


def _check_images(store: ArchiveStore, policy: Policy, kinds: ImageSetKinds) -> RegistryResult:
    checker = Checker(store, policy)
    images = checker.listed_images()
    if kinds.release and kinds.graph and GRAPH not in images:
        images.append(GRAPH)  # looked up by name, from the cache if not in the archives
    return checker.run(images)


# -- the archive set -------------------------------------------------------------------


def _set_findings(
    folder: Path,
    numbered: list[Archive],
    ignored: list[str],
    everything: tuple[str, ...],
    lost: tuple[str, ...],
) -> list[Finding]:
    found: list[Finding] = []
    if not numbered:
        message = f"{folder} holds no mirror_NNNNNN.tar archives: there is nothing to upload"
        found.append(
            Finding(error(Code.NO_ARCHIVES, message, str(folder)), everything, True, "no archives")
        )
    for number in sets.missing_numbers([a.number for a in numbered]):
        path = folder / sets.archive_name(number)
        message = (
            f"{path.name} is missing from the archive set in {folder} "
            f"({_describe_set(numbered)}): disk-to-mirror does not notice a missing archive, "
            "and whatever it held is lost unless the cache already has it"
        )
        found.append(Finding(error(Code.ARCHIVE_GAP, message, str(path)), lost, note=_LOST))
    for name in ignored:
        message = (
            f"{folder / name} is not named mirror_NNNNNN.tar (six digits): disk-to-mirror "
            "ignores it"
        )
        found.append(Finding(warning(Code.ARCHIVE_NAME, message, str(folder / name)), ()))
    return found


def _archive_findings(
    archive_set: ArchiveSet, everything: tuple[str, ...], lost: tuple[str, ...]
) -> list[Finding]:
    found: list[Finding] = []
    for read in archive_set.reads:
        path = str(read.archive.path)
        if read.index is None:
            problem = error(Code.ARCHIVE_UNREADABLE, f"cannot read {path}: {read.error}", path)
            found.append(Finding(problem, everything, True, _STOPS))
        elif read.index.issue is not None and read.index.issue.fatal:
            problem = error(Code.ARCHIVE_CORRUPT, f"{path}: {read.index.issue.message}", path)
            found.append(Finding(problem, everything, True, _STOPS))
        elif read.index.issue is not None:
            problem = error(Code.ARCHIVE_NO_END, f"{path}: {read.index.issue.message}", path)
            found.append(Finding(problem, lost, note=_LOST))
    for archive, name in archive_set.unsafe:
        message = (
            f"{archive} holds member {name!r}, whose path would escape the folder it is "
            "extracted into"
        )
        found.append(Finding(error(Code.MEMBER_UNSAFE, message, str(archive)), ()))
    return found


# -- the image set config and the working-dir ------------------------------------------------


def _kinds(archive_set: ArchiveSet, store: ArchiveStore) -> tuple[ImageSetKinds, list[Finding]]:
    configs = sorted(
        name for name in archive_set.members if name.startswith("isc_") and "/" not in name
    )
    repos = store.repositories()
    if not repos and archive_set.reads:
        message = (
            "the archives hold no docker/registry/v2/repositories tree: no image can be uploaded"
        )
        return ImageSetKinds(), [Finding(error(Code.NO_REPOSITORIES, message), ())]
    if not configs:
        message = (
            "the archives hold no image set config (isc_*): mirror-to-disk writes it just "
            "before the blobs, so archives may be missing from the set; which working-dir "
            "parts are needed is guessed from the repositories"
        )
        kinds = ImageSetKinds(release=any(r in RELEASE_REPOS for r in repos), graph=True)
        return kinds, (
            [Finding(warning(Code.ISC_MISSING, message), ())] if archive_set.reads else []
        )
    try:
        text = archive_set.read(archive_set.members[configs[-1]], _ISC_LIMIT)
    except StoreError as exc:
        message = f"cannot read the image set config {configs[-1]}: {exc}"
        return ImageSetKinds(release=True, graph=True), [
            Finding(warning(Code.ISC_MISSING, message), ())
        ]
    return parse_image_set_config(text.decode("utf-8", "replace")), []


def _working_dir_findings(
    folder: Path, archive_set: ArchiveSet, kinds: ImageSetKinds, everything: tuple[str, ...]
) -> list[Finding]:
    view = WorkingDirView(folder / "working-dir", archive_set.members)
    found: list[Finding] = []
    for need in needs(kinds):
        if view.has(need):
            continue
        message = (
            f"{need.part} is missing (not in the archives, not in {folder / 'working-dir'}): "
            f"{need.why}"
        )
        problem = error(Code.WORKDIR_MISSING, message, str(folder / need.part))
        found.append(Finding(problem, _images_of_kind(need.kind, everything), False, _COLLECT))
    return found


_COLLECT = "disk-to-mirror collects these images from it, and stops when it cannot"


def _images_of_kind(kind: str, everything: tuple[str, ...]) -> tuple[str, ...]:
    if kind == "release":
        repos: tuple[str, ...] = RELEASE_REPOS
    elif kind.startswith("catalog:"):
        repos = (catalog_repository(kind.removeprefix("catalog:")),)
    else:
        return ()  # helm charts are not images of the cache
    return tuple(name for name in everything if _repo_of(name) in repos)


def _graph_findings(
    result: RegistryResult, kinds: ImageSetKinds, everything: tuple[str, ...]
) -> list[Finding]:
    if not (kinds.release and kinds.graph) or not result.is_broken(GRAPH_NAME):
        return []
    problem = error(
        Code.GRAPH_UNRESOLVED,
        f"{GRAPH_NAME} does not resolve from the archives and the cache (its own problems "
        "are listed with it): disk-to-mirror stops with `error processing graph image in "
        "local cache: reading manifest latest in localhost:55000/openshift/graph-image: "
        "manifest unknown`",
        GRAPH_NAME,
    )
    note = "the release collection fails, and with it the whole run"
    return [Finding(problem, everything, True, note)]


# -- words -----------------------------------------------------------------------------


def _repo_of(image: str) -> str:
    if "@" in image:
        return image.split("@", 1)[0]
    return image.rsplit(":", 1)[0]


def _describe_set(numbered: list[Archive]) -> str:
    if not numbered:
        return "none"
    first, last = numbered[0].path.name, numbered[-1].path.name
    if len(numbered) == 1:
        return f"{first} (1 archive)"
    return f"{first} .. {last} ({len(numbered)} archives)"


def _describe_kinds(kinds: ImageSetKinds) -> str:
    words = [
        word
        for word, present in (
            ("release", kinds.release),
            ("graph", kinds.release and kinds.graph),
            (f"{len(kinds.catalogs)} catalogs", bool(kinds.catalogs)),
            ("helm", kinds.helm),
            ("additional images", kinds.additional),
        )
        if present
    ]
    return ", ".join(words) or "no image set config read"
