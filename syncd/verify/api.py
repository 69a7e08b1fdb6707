"""`verify_root`: the entry point for `syncd verify`, the daemon and `serve`."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from syncd.errors import UsageError
from syncd.state import StateDir
from syncd.verify.content import ContentOptions, check_content
from syncd.verify.deep import run_deep
from syncd.verify.discover import cache_for, discover, is_oc_mirror_cache
from syncd.verify.fsstore import FsStore
from syncd.verify.hashing import Hasher
from syncd.verify.registry import Policy, check_registry
from syncd.verify.report import Section, VerifyReport
from syncd.verify.sections import build_section


@dataclass(frozen=True, slots=True)
class VerifyOptions:
    deep: bool = False  # hash every blob
    sparse_index: bool | None = None  # None: allowed in oc-mirror's cache and content only
    against: Path | None = None  # a snapshot file the tree must equal
    cache_dir: Path | None = None  # oc-mirror's --cache-dir base, for content folders
    state: Path | None = None  # state folder for the --against scan (default ROOT/.syncd)
    workers: int = os.cpu_count() or 1  # hashing threads
    config: Path | None = None  # the ImageSetConfiguration the upload will use (-c)


def verify_root(root: Path, options: VerifyOptions | None = None) -> VerifyReport:
    """Check every registry tree and content folder under `root`."""
    options = options or VerifyOptions()
    if not root.is_dir():
        raise UsageError(f"{root}: not a directory")
    started = time.monotonic()
    found = discover(root)
    if not (found.registries or found.contents or options.against):
        raise UsageError(
            f"nothing to verify under {root}: no docker/registry/v2 storage and no "
            "content folder (mirror_NNNNNN.tar or working-dir/)"
        )
    hasher = Hasher(options.workers)
    caches = {folder: cache_for(folder, root, options.cache_dir) for folder in found.contents}
    # A cache that a content folder uploads from is judged through that folder: only
    # what the upload copies from it counts. Any other registry tree is checked whole.
    used = {cache for cache in caches.values() if cache is not None}
    sections = [_registry(v2, options, hasher) for v2 in found.registries if v2 not in used]
    content = ContentOptions(deep=options.deep, config=options.config)
    for folder, cache in caches.items():
        sections.append(check_content(folder, cache, content, hasher))
    if options.against is not None:
        sections.append(_against(root, options))
    return VerifyReport(
        root=str(root),
        deep=options.deep,
        sections=tuple(sections),
        seconds=time.monotonic() - started,
        blobs_checked=sum(section.blobs_checked for section in sections),
        bytes_hashed=sum(section.bytes_hashed for section in sections),
    )


def _against(root: Path, options: VerifyOptions) -> Section:
    # Imported only when asked: the scanner is most of verify's import time otherwise.
    from syncd.verify.against import check_against  # noqa: PLC0415

    assert options.against is not None
    return check_against(root, options.against, StateDir(root, options.state))


def _registry(v2: Path, options: VerifyOptions, hasher: Hasher) -> Section:
    sparse = options.sparse_index
    if sparse is None:
        sparse = is_oc_mirror_cache(v2)
    store = FsStore(v2)
    try:
        result = check_registry(store, Policy(sparse_index=sparse, track_blobs=options.deep))
        hashed = run_deep(result, store, hasher) if options.deep else 0
    finally:
        store.close()
    policy = "allowed (oc-mirror's cache)" if sparse else "not allowed"
    if options.sparse_index:
        policy = "allowed (--allow-sparse-index)"
    facts = [("sparse indexes", policy)]
    return build_section("registry", str(v2), facts, result, hashed=hashed)
