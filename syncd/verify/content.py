"""Will `oc-mirror --v2 -c ISC --from file://<folder> docker://REGISTRY` succeed?

One content folder, as disk-to-mirror handles it (openshift/oc-mirror, commit 855b64a3;
internal/pkg/cli/executor.go `RunDiskToMirror`):
1. extract the archives it picks into the cache and working-dir (`archives`); an
   archive it fails on fails the run;
2. derive the images to copy from the image set config and working-dir (`derive`);
   a collection error fails the run;
3. copy each image from the cache (its tag, manifest, every chosen instance, config,
   layers, and cosign signature tags present), which `registry.check_selected` checks
   over the archives laid over the cache (`archstore`).
The verdict rests on those three and on nothing else: images in the archives or the
cache that the config does not derive are listed as not uploaded, never as broken.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from syncd.errors import UsageError
from syncd.verify import layout
from syncd.verify.archives import ArchiveSet
from syncd.verify.archstore import ArchiveStore
from syncd.verify.contentfind import archive_findings, describe_archives
from syncd.verify.deep import run_deep
from syncd.verify.derive import Derivation, derive
from syncd.verify.digests import parse_link
from syncd.verify.fsstore import FsStore
from syncd.verify.hashing import Hasher
from syncd.verify.imageset import ConfigError, ImageSetConfig, parse_config
from syncd.verify.problems import Code, error, info, warning
from syncd.verify.registry import Policy, check_selected
from syncd.verify.report import Finding, Section
from syncd.verify.sections import build_section
from syncd.verify.store import StoreError
from syncd.verify.wdview import ExtractedWorkingDir

_ISC_LIMIT = 1 << 20
_COLLECT = "the collection fails, and disk-to-mirror copies nothing"


@dataclass(frozen=True, slots=True)
class ContentOptions:
    deep: bool
    config: Path | None = None  # the ImageSetConfiguration the upload will be given


@dataclass(frozen=True, slots=True)
class ConfigUsed:
    config: ImageSetConfig | None
    source: str  # which file, for the report
    findings: tuple[Finding, ...]


class CacheResolver:
    """Tags of the registry disk-to-mirror serves after extracting (archives over cache)."""

    def __init__(self, store: ArchiveStore) -> None:
        self.store = store

    def resolve(self, repo: str, tag: str) -> str | None:
        try:
            digest = parse_link(self.store.read_link(layout.tag_link(repo, tag)) or b"")
            if digest is None or self.store.blob_size(digest) is None:
                return None
            linked = self.store.read_link(layout.revision_link(repo, digest))
        except StoreError:
            return None
        return digest if linked is not None else None


def check_content(
    folder: Path, cache: Path | None, options: ContentOptions, hasher: Hasher
) -> Section:
    """`cache` is the `docker/registry/v2` folder disk-to-mirror will extract into."""
    cache_store = FsStore(cache) if cache else None
    try:
        with ArchiveSet(folder) as archives:
            section = _check(archives, ArchiveStore(archives, cache_store), options, hasher)
    finally:
        if cache_store is not None:
            cache_store.close()
    return section


def _check(
    archives: ArchiveSet, store: ArchiveStore, options: ContentOptions, hasher: Hasher
) -> Section:
    folder, cache = archives.folder, store.cache.v2 if store.cache else None
    used = choose_config(options.config, archives)
    derivation = Derivation()
    if used.config is not None and archives.stopped is None and archives.reads:
        derivation = derive(used.config, ExtractedWorkingDir(archives), CacheResolver(store))
    policy = Policy(sparse_index=False, track_blobs=options.deep, signatures=True)
    selected = [(*_split(d.image), d.platforms) for d in derivation.images]
    result = check_selected(store, policy, selected)
    hashed = run_deep(result, store, hasher, every_blob=False) if options.deep else 0
    everything = tuple(sorted(result.images))
    findings = [
        *archive_findings(folder, archives, everything),
        *used.findings,
        *_collection_findings(derivation, everything),
        *_outside_findings(store, derivation),
    ]
    facts = [
        ("archives", describe_archives(archives)),
        ("cache", str(cache) if cache else "none found"),
        ("config", used.source),
        ("images derived", str(len(derivation.images))),
    ]
    details = _details(archives, used, derivation, result.broken())
    return build_section(
        "content", str(folder), facts, result, findings, hashed=hashed, details=details
    )


def choose_config(given: Path | None, archives: ArchiveSet) -> ConfigUsed:
    """The config given with --config, else the newest archived `isc_*`, said as such."""
    if given is not None:
        try:
            text = given.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise UsageError(f"cannot read the image set config {given}: {exc.strerror}") from None
        try:
            return ConfigUsed(parse_config(text, str(given)), str(given), ())
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
    archived = sorted(archives.extraction.isc, key=lambda ref: ref.name)
    if not archived:
        message = (
            "no image set config: none was given with --config, and the archives hold no "
            "isc_* (mirror-to-disk writes it last, into the last archive); pass the config "
            "the upload will use with --config"
        )
        return ConfigUsed(
            None, "none", (Finding(error(Code.ISC_MISSING, message), (), True, _COLLECT),)
        )
    newest = archived[-1]
    shown = f"{newest.name} in {newest.archive}"
    source = f"{shown} (the newest archived; the upload uses the one given to oc-mirror with -c)"
    said = warning(
        Code.ISC_FALLBACK,
        f"no --config given: the images are derived from the archived {shown}; oc-mirror "
        "ignores it and uses the config given with -c, so pass that one with --config",
    )
    try:
        text = archives.read(newest, _ISC_LIMIT).decode("utf-8", "replace")
        config = parse_config(text, shown)
    except (StoreError, ConfigError) as exc:
        problem = error(Code.ISC_INVALID, f"cannot use the archived {shown}: {exc}")
        return ConfigUsed(None, source, (Finding(problem, (), True, _COLLECT),))
    return ConfigUsed(config, source, (Finding(said, ()),))


def _collection_findings(derivation: Derivation, everything: tuple[str, ...]) -> list[Finding]:
    found = [
        Finding(error(Code.COLLECTION_FAILED, message), everything, True, _COLLECT)
        for message in derivation.errors
    ]
    found += [Finding(warning(Code.MODEL_APPROXIMATE, note), ()) for note in derivation.notes]
    if derivation.blocked:
        names = ", ".join(sorted(d.image for d in derivation.blocked))
        message = f"{len(derivation.blocked)} images are blocked by blockedImages: {names}"
        found.append(Finding(info(Code.BLOCKED, message), ()))
    return found


def _outside_findings(store: ArchiveStore, derivation: Derivation) -> list[Finding]:
    """Tags the archives carry that the config does not derive: not uploaded."""
    derived = {d.image for d in derivation.images}
    outside = sorted(
        f"{repo}:{tag}"
        for repo in store.repositories()
        for tag in store.tags(repo)
        if f"{repo}:{tag}" not in derived and not tag.endswith(".sig")
    )
    if not outside:
        return []
    shown = ", ".join(outside[:5]) + (f" and {len(outside) - 5} more" if len(outside) > 5 else "")
    message = (
        f"{len(outside)} tags in the archives are outside the image set and will not be "
        f"uploaded (not checked): {shown}"
    )
    return [Finding(info(Code.NOT_UPLOADED, message), ())]


def _details(
    archives: ArchiveSet, used: ConfigUsed, derivation: Derivation, broken: set[str]
) -> list[tuple[str, object]]:
    picked = []
    for read in archives.reads:
        verdict = (
            "unreadable"
            if read.fatal
            else ("cut short" if read.index and read.index.issue else "ok")
        )
        picked.append({"name": read.name, "verdict": verdict, "error": read.error})
    derived = [
        {
            "image": d.image,
            "kind": d.kind,
            "origin": d.origin,
            "platforms": sorted(d.platforms) if d.platforms is not None else None,
            "verdict": "BROKEN" if d.image in broken or derivation.errors else "ok",
        }
        for d in derivation.images
    ]
    return [
        ("config", used.source),
        ("archives_picked", picked),
        ("archives_ignored", archives.near),
        ("derived", derived),
        ("blocked", sorted(d.image for d in derivation.blocked)),
        (
            "working_dir_opened",
            [
                {"path": f"working-dir/{o.path}", "present": o.present, "for": o.why}
                for o in derivation.opened
            ],
        ),
    ]


def _split(image: str) -> tuple[str, str]:
    repo, _, tag = image.rpartition(":")
    return repo, tag
