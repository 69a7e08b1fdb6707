"""Turn image plans into blobs in a sink: the cache itself, or images for skopeo to push.

Layers already in the cache (found by key in earlier months' configs) are reused rather
than generated again; their bytes would be the same, only slower to make.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from syncd.sample import images
from syncd.sample.images import Document
from syncd.sample.layers import Layer, build_layer, rng
from syncd.sample.plan import ImagePlan, PlatformPlan, release_version
from syncd.sample.regstore import ImageLinks, ManifestLinks, Storage
from syncd.sample.spec import SampleSpec


class BlobSink(Protocol):
    def put(self, digest: str, data: bytes) -> None:
        """Keep a new blob."""

    def adopt(self, digest: str) -> None:
        """An image uses a blob already in the cache."""


class StorageSink:
    """Writes blobs straight into the cache (direct mode)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def put(self, digest: str, data: bytes) -> None:
        self.storage.put_blob(digest, data)

    def adopt(self, digest: str) -> None:
        pass  # already there


class PushArea:
    """Images in skopeo's `dir:` format, to push in registry mode.

    `dir:` rather than an OCI layout because skopeo's oci: transport only finds OCI
    media types, and Docker schema 2 images must keep theirs. Blobs live once in a pool
    and are hard-linked into each image's folder.
    """

    def __init__(self, path: Path, storage: Storage) -> None:
        self.path = path
        self.storage = storage
        self.pool = path / "blobs"
        self.pool.mkdir(parents=True, exist_ok=True)
        self._count = 0

    def _pooled(self, digest: str) -> Path:
        return self.pool / digest.removeprefix("sha256:")

    def put(self, digest: str, data: bytes) -> None:
        path = self._pooled(digest)
        if not path.exists():
            path.write_bytes(data)

    def adopt(self, digest: str) -> None:
        # skopeo uploads a blob unless the target repository already links it, so a
        # reused layer must be readable here too.
        path = self._pooled(digest)
        if not path.exists():
            # Copied, never hard-linked: a new link to a cache file moves its ctime, and
            # oc-mirror leaves the blobs already in its cache untouched.
            shutil.copyfile(self.storage.blob_path(digest), path)

    def add_image(self, top: Document, children: Sequence[BuiltManifest]) -> Path:
        """A `dir:` image whose manifest is `top`; `children` are an index's instances."""
        self._count += 1
        folder = self.path / "images" / str(self._count)
        folder.mkdir(parents=True)
        (folder / "version").write_text("Directory Transport Version: 1.1\n")
        (folder / "manifest.json").write_bytes(top.data)
        for child in children:
            if child.document.descriptor.digest != top.descriptor.digest:
                name = child.document.descriptor.digest.removeprefix("sha256:") + ".manifest.json"
                (folder / name).write_bytes(child.document.data)
            for blob in child.blobs:
                target = folder / blob.removeprefix("sha256:")
                if not target.exists():
                    _link_or_copy(self._pooled(blob), target)
        return folder


def _link_or_copy(source: Path, target: Path) -> None:
    # A hard link costs nothing; across file systems fall back to copying.
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


@dataclass(frozen=True, slots=True)
class BuiltManifest:
    document: Document
    blobs: tuple[str, ...]  # config and layers


@dataclass(frozen=True, slots=True)
class BuiltImage:
    plan: ImagePlan
    top: Document  # the manifest, or the index over `manifests`
    manifests: tuple[BuiltManifest, ...]  # the present single-platform manifests

    @property
    def sparse(self) -> bool:
        return any(not platform.present for platform in self.plan.platforms)

    def links(self) -> ImageLinks:
        manifests = tuple(
            ManifestLinks(m.document.descriptor.digest, m.blobs) for m in self.manifests
        )
        return ImageLinks(self.plan.repo, self.plan.tag, self.top.descriptor.digest, manifests)


class Builder:
    def __init__(
        self, spec: SampleSpec, month: int, created: str, sink: BlobSink, known: dict[str, Layer]
    ) -> None:
        self.spec = spec
        self.month = month
        self.created = created
        self.sink = sink
        self.known = known  # stored layers by key
        self._unstored: dict[str, Layer] = {}  # layers of absent children: named, never kept

    def build(self, plan: ImagePlan) -> BuiltImage:
        built = [self._platform(plan, platform) for platform in plan.platforms]
        present = tuple(b for b, p in zip(built, plan.platforms, strict=True) if p.present)
        if not plan.indexed:
            return BuiltImage(plan, built[0].document, present)
        top = images.index(plan.family, [b.document.descriptor for b in built])
        self.sink.put(top.descriptor.digest, top.data)
        return BuiltImage(plan, top, present)

    def _platform(self, plan: ImagePlan, platform: PlatformPlan) -> BuiltManifest:
        layers = [self._layer(s.key, s.size, platform.present) for s in platform.layers]
        config = images.config(
            plan.family, platform.arch, layers, self._labels(plan, platform.arch), self.created
        )
        manifest = images.manifest(plan.family, config, layers, platform.arch)
        if platform.present:
            self.sink.put(config.descriptor.digest, config.data)
            self.sink.put(manifest.descriptor.digest, manifest.data)
        blobs = (config.descriptor.digest, *(layer.digest for layer in layers))
        return BuiltManifest(manifest, blobs)

    def _layer(self, key: str, size: int, store: bool) -> Layer:
        if key in self.known:
            if store:
                self.sink.adopt(self.known[key].digest)
            return self.known[key]
        if not store and key in self._unstored:
            return self._unstored[key]
        made = build_layer(self.spec.seed, key, size, self.spec.file_size)
        if store:
            self.sink.put(made.layer.digest, made.data)
            self.known[key] = made.layer
        else:
            self._unstored[key] = made.layer
        return made.layer

    def _labels(self, plan: ImagePlan, arch: str) -> dict[str, str]:
        commit = rng(self.spec.seed, "commit", plan.repo, plan.tag, arch).randbytes(20).hex()
        return {
            "name": plan.repo,
            "version": plan.tag,
            "architecture": arch,
            "vendor": "Red Hat, Inc.",
            "io.openshift.release": release_version(self.month),
            "vcs-ref": commit,
        }
