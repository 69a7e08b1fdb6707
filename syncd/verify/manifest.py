"""Parse manifest blobs the way distribution's manifest store tells them apart.

`schemaVersion` must be 2. The `mediaType` field picks the kind; without one, a document
with `manifests` is an OCI index and any other an OCI image manifest (distribution does
the same). Any other media type is an error that names it. Only the fields verify needs
are read, and each is checked for shape so that a malformed document is reported, not
raised.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from syncd.verify.digests import match_digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})


class Kind(StrEnum):
    MANIFEST = "manifest"
    INDEX = "index"


class ManifestError(Exception):
    """The blob is not a manifest verify can follow; `unknown_type` names a media type."""

    def __init__(self, reason: str, unknown_type: str | None = None) -> None:
        super().__init__(reason)
        self.unknown_type = unknown_type


@dataclass(frozen=True, slots=True)
class Descriptor:
    digest: str
    size: int
    media_type: str = ""
    platform: str = ""  # "os/arch[/variant]" for an index entry that says
    urls: tuple[str, ...] = ()  # a foreign layer is fetched from these, not the registry


@dataclass(frozen=True, slots=True)
class Manifest:
    kind: Kind
    media_type: str
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    children: tuple[Descriptor, ...] = ()


def parse_manifest(data: bytes) -> Manifest:
    try:
        document = json.loads(data)
    except RecursionError:
        raise ManifestError("not JSON a registry could read (nested too deeply)") from None
    except ValueError as exc:  # includes UnicodeDecodeError
        raise ManifestError(f"not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ManifestError(f"a JSON {type(document).__name__}, not an object")
    version = document.get("schemaVersion")
    if version != 2:
        raise ManifestError(f"schemaVersion {version!r}, not 2 (schema 1 is not served)")
    media_type = document.get("mediaType", "")
    if not isinstance(media_type, str):
        raise ManifestError(f"mediaType is {media_type!r}, not a string")
    if not media_type:
        media_type = OCI_INDEX if "manifests" in document else OCI_MANIFEST
    if media_type in MANIFEST_TYPES:
        return _image_manifest(document, media_type)
    if media_type in INDEX_TYPES:
        return _index(document, media_type)
    raise ManifestError(f"unknown media type {media_type!r}", unknown_type=media_type)


def _image_manifest(document: dict[str, Any], media_type: str) -> Manifest:
    config = _descriptor(document.get("config"), "config")
    layers = document.get("layers")
    if not isinstance(layers, list):
        raise ManifestError("layers is missing or not a list")
    parsed = tuple(_descriptor(layer, f"layers[{n}]") for n, layer in enumerate(layers))
    return Manifest(Kind.MANIFEST, media_type, config=config, layers=parsed)


def _index(document: dict[str, Any], media_type: str) -> Manifest:
    children = document.get("manifests")
    if not isinstance(children, list):
        raise ManifestError("manifests is missing or not a list")
    parsed = tuple(_descriptor(child, f"manifests[{n}]") for n, child in enumerate(children))
    return Manifest(Kind.INDEX, media_type, children=parsed)


def _descriptor(value: object, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise ManifestError(f"{where} is missing or not an object")
    digest, size = value.get("digest"), value.get("size")
    if not isinstance(digest, str) or not match_digest(digest):
        raise ManifestError(f"{where} has digest {digest!r}, not sha256:<64 hex>")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestError(f"{where} has size {size!r}, not a byte count")
    media_type = value.get("mediaType")
    urls = value.get("urls")
    return Descriptor(
        digest,
        size,
        media_type if isinstance(media_type, str) else "",
        _platform(value.get("platform")),
        tuple(u for u in urls if isinstance(u, str)) if isinstance(urls, list) else (),
    )


def _platform(value: object) -> str:
    if not isinstance(value, dict):
        return ""
    parts = [value.get("os"), value.get("architecture"), value.get("variant")]
    return "/".join(p for p in parts if isinstance(p, str) and p)
