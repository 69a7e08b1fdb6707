"""Image configs, manifests and indexes as bytes, in both media-type families.

A registry stores these JSON documents as blobs and names them by digest, so they are
serialized once, deterministically, and never re-encoded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from syncd.sample.layers import Layer, sha256_digest


@dataclass(frozen=True, slots=True)
class Family:
    """The media types of one manifest format: OCI or Docker schema 2."""

    name: str
    manifest: str
    index: str
    config: str
    layer: str


OCI = Family(
    "oci",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.oci.image.layer.v1.tar+gzip",
)
DOCKER = Family(
    "docker",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.container.image.v1+json",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
)
FAMILIES = {family.name: family for family in (OCI, DOCKER)}

# The config's history names each layer's key; the next month reads it back to reuse
# layers already in the cache instead of generating their bytes again.
HISTORY_PREFIX = "/bin/sh -c #(nop) ADD file:"
HISTORY_SUFFIX = " in / "


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    arch: str | None = None  # set for an index entry

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.arch is not None:
            out["platform"] = {"architecture": self.arch, "os": "linux"}
        return out


@dataclass(frozen=True, slots=True)
class Document:
    """A JSON blob and the descriptor that names it."""

    descriptor: Descriptor
    data: bytes


def _document(media_type: str, body: dict[str, object], arch: str | None = None) -> Document:
    data = json.dumps(body, indent=2).encode() + b"\n"
    return Document(Descriptor(media_type, sha256_digest(data), len(data), arch), data)


def config(
    family: Family, arch: str, layers: Sequence[Layer], labels: dict[str, str], created: str
) -> Document:
    body: dict[str, object] = {
        "architecture": arch,
        "os": "linux",
        "created": created,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/bash"],
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [
            {"created": created, "created_by": HISTORY_PREFIX + layer.key + HISTORY_SUFFIX}
            for layer in layers
        ],
    }
    return _document(family.config, body)


def manifest(family: Family, config_doc: Document, layers: Sequence[Layer], arch: str) -> Document:
    body: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": family.manifest,
        "config": config_doc.descriptor.as_json(),
        "layers": [Descriptor(family.layer, lay.digest, lay.size).as_json() for lay in layers],
    }
    return _document(family.manifest, body, arch)


def index(family: Family, children: Sequence[Descriptor]) -> Document:
    body: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": family.index,
        "manifests": [child.as_json() for child in children],
    }
    return _document(family.index, body)
