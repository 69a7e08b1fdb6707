"""Operator images as disk-to-mirror derives them, from the cache and working-dir.

Modelled on openshift/oc-mirror (commit 855b64a3; read, not copied):
internal/pkg/operator/filtered_collector.go (`collectOperator`, `filterOperator`,
`isAlreadyFiltered`) and common.go (`catalogDigest`, `cachedCatalog`,
`prepareD2MCopyBatch`). For each catalog, disk-to-mirror reads the catalog's digest
from the cache (`<path>:<tag>`, or the digest the config names), then looks in
`working-dir/operator-catalogs/<name>/<digest>/filtered-catalogs/<filter>/` for a
`digest` file equal to the digest of the rebuilt catalog cached as `<path>:<filter>`;
its `declarative-config` lists the bundles and their related images. Without such a
folder it filters the catalog again, pulling it from its registry: the internet.
Copied: the rebuilt catalog `<path>:<filter>`, each bundle and related image as
`<path>:<tag>` or `<path>:sha256-<hex>`. A catalog's `platforms` filter all of them.

Approximation: oc-mirror names `<filter>` by an md5 of its Go JSON encoding of the
operator entry, which verify does not reproduce: every filtered catalog whose digest
matches its rebuilt catalog in the cache is used (normally exactly one). Full
catalogs and catalogs in OCI layouts are copied as named, without their contents.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import yaml

from syncd.verify.derive import Collect, Opened, cache_name
from syncd.verify.imageref import DOCKER, ImageRef, RefError, parse_ref
from syncd.verify.imageset import Operator

_INTERNET = "disk-to-mirror would filter the catalog again from its registry (the internet)"


def collect_operators(run: Collect) -> None:
    for operator in run.config.operators:
        ref = run.parse(operator.catalog, "operators")
        if ref is None:
            continue
        if ref.transport != DOCKER:
            run.out.notes.append(f"catalog {operator.catalog}: OCI catalogs are not derived")
            continue
        _catalog(run, operator, ref)


def _catalog(run: Collect, operator: Operator, ref: ImageRef) -> None:
    path = operator.target_catalog or ref.path
    tag = operator.target_tag or ref.tag
    digest = ref.digest if ref.by_digest_only else _hex(run.cache.resolve(path, tag))
    if not digest:
        run.out.errors.append(
            f"catalog {operator.catalog}: {cache_name(path, tag)} is not in the cache, and "
            "disk-to-mirror reads the catalog's digest there"
        )
        return
    filters = operator.platforms
    if operator.full and not operator.packages:
        run.out.notes.append(f"catalog {operator.catalog}: full catalogs' bundles are not derived")
        run.add(cache_name(path, tag), "catalog", operator.catalog, filters)
        return
    base = f"operator-catalogs/{ref.component}/{digest}/filtered-catalogs"
    chosen = [name for name in run.wd.names(base) if _matches(run, base, name, path)]
    if not chosen:
        run.out.opened.append(_missing(base, operator.catalog))
        run.out.errors.append(
            f"catalog {operator.catalog}: no filtered catalog in working-dir/{base}/ whose "
            f"`digest` file names a rebuilt catalog in the cache ({path}:<filter>); {_INTERNET}"
        )
        return
    for name in chosen:
        run.add(cache_name(path, name), "catalog", operator.catalog, filters)
        for image in _related(run, f"{base}/{name}/declarative-config"):
            _related_image(run, image, filters)


def _matches(run: Collect, base: str, name: str, path: str) -> bool:
    recorded = run.open(f"{base}/{name}/digest", "the rebuilt catalog's digest")
    if recorded is None:
        return False
    cached = _hex(run.cache.resolve(path, name))
    text = recorded.decode("ascii", "replace").strip()
    return bool(cached) and _hex(text) == cached


def _missing(base: str, catalog: str) -> Opened:
    return Opened(f"{base}/<filter>/digest", False, f"the filtered catalog of {catalog}")


def _hex(digest: str | None) -> str:
    return (digest or "").removeprefix("sha256:")


def _related(run: Collect, folder: str) -> Iterator[str]:
    """Bundle images and their related images, from the filtered declarative config."""
    for rel in run.wd.files(folder):
        data = run.open(rel, "the filtered declarative config")
        if data is None:
            continue
        for document in _documents(rel, data):
            if document.get("schema") != "olm.bundle":
                continue
            if isinstance(document.get("image"), str):
                yield document["image"]
            for item in document.get("relatedImages") or ():
                if isinstance(item, dict) and isinstance(item.get("image"), str):
                    yield item["image"]


def _documents(rel: str, data: bytes) -> Iterator[dict[str, Any]]:
    text = data.decode("utf-8", "replace")
    try:
        if rel.endswith((".yaml", ".yml")):
            found: list[Any] = list(yaml.safe_load_all(text))
        else:
            decoder, found, position = json.JSONDecoder(), [], 0
            while position < len(text):
                while position < len(text) and text[position].isspace():
                    position += 1
                if position < len(text):
                    value, position = decoder.raw_decode(text, position)
                    found.append(value)
    except (ValueError, yaml.YAMLError):
        return
    yield from (item for item in found if isinstance(item, dict))


def _related_image(run: Collect, image: str, filters: tuple[str, ...]) -> None:
    try:
        ref = parse_ref(image)
    except RefError:
        run.out.notes.append(f"related image {image!r} skipped: not a reference")
        return
    tag = ref.tag or f"{ref.algorithm}-{ref.digest}"
    run.add(cache_name(ref.path, tag), "operator", image, filters)
