"""distribution's filesystem storage layout, written and read directly.

Paths follow distribution's registry/storage/paths.go (docs/FACTS.md): blob bytes under
`blobs/sha256/<hex[:2]>/<hex>/data`; per repository, `_layers` links for every config
and layer it may serve, `_manifests/revisions` links for every manifest (an index and its
children alike), and per tag an `index` link for each manifest it has named plus the
`current/link` that GET reads. A link file holds `sha256:<hex>` without a newline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from syncd.sample.images import HISTORY_PREFIX, HISTORY_SUFFIX
from syncd.sample.layers import Layer

V2 = Path("docker/registry/v2")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HISTORY = re.compile(re.escape(HISTORY_PREFIX) + r"(\S+)" + re.escape(HISTORY_SUFFIX))


@dataclass(frozen=True, slots=True)
class ManifestLinks:
    digest: str
    blobs: tuple[str, ...]  # config and layers: the repository's `_layers` links


@dataclass(frozen=True, slots=True)
class ImageLinks:
    """What one tag needs in a repository: its present manifests, and the index if any."""

    repo: str
    tag: str
    top: str  # the digest the tag names
    manifests: tuple[ManifestLinks, ...]


class Storage:
    """One registry's storage: `root` is the `docker/registry/v2` directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def under(cls, rootdirectory: Path) -> Storage:
        """The storage of a registry whose filesystem rootdirectory is `rootdirectory`."""
        return cls(rootdirectory / V2)

    def blob_path(self, digest: str) -> Path:
        hexpart = _hex(digest)
        return self.root / "blobs" / "sha256" / hexpart[:2] / hexpart / "data"

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def put_blob(self, digest: str, data: bytes) -> None:
        path = self.blob_path(digest)
        if not path.exists():
            _write_new(path, data)

    def read_blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    def repo_dir(self, repo: str) -> Path:
        return self.root / "repositories" / repo

    def publish(self, image: ImageLinks) -> None:
        """Write the links in the order a registry would: blobs, revisions, then the tag."""
        repo = self.repo_dir(image.repo)
        for manifest in image.manifests:
            for blob in manifest.blobs:
                _write_link(repo / "_layers" / _digest_dir(blob) / "link", blob)
            self.link_revision(image.repo, manifest.digest)
        self.link_revision(image.repo, image.top)
        self.link_tag(image.repo, image.tag, image.top)

    def link_revision(self, repo: str, digest: str) -> None:
        path = self.repo_dir(repo) / "_manifests" / "revisions" / _digest_dir(digest) / "link"
        _write_link(path, digest)

    def link_tag(self, repo: str, tag: str, digest: str) -> None:
        tag_dir = self.repo_dir(repo) / "_manifests" / "tags" / tag
        _write_link(tag_dir / "index" / _digest_dir(digest) / "link", digest)
        _write_link(tag_dir / "current" / "link", digest)

    def repositories(self) -> list[str]:
        """Repository names: every directory holding `_manifests`, as the catalog lists."""
        base = self.root / "repositories"
        names = []
        for folder, dirs, _files in os.walk(base):
            if "_manifests" in dirs:
                names.append(Path(folder).relative_to(base).as_posix())
            dirs[:] = [d for d in dirs if not d.startswith("_")]
        return sorted(names)

    def tags(self, repo: str) -> dict[str, str]:
        """Tag -> digest for the tags whose `current/link` exists."""
        tags_dir = self.repo_dir(repo) / "_manifests" / "tags"
        found = {}
        for tag_dir in sorted(tags_dir.iterdir()) if tags_dir.is_dir() else ():
            link = tag_dir / "current" / "link"
            if link.is_file():
                found[tag_dir.name] = read_link(link)
        return found

    def images(self) -> list[str]:
        return sorted(f"{repo}:{tag}" for repo in self.repositories() for tag in self.tags(repo))

    def revisions(self, repo: str) -> list[str]:
        revisions = self.repo_dir(repo) / "_manifests" / "revisions" / "sha256"
        if not revisions.is_dir():
            return []
        return sorted(read_link(entry / "link") for entry in revisions.iterdir())

    def blob_digests(self) -> set[str]:
        return {"sha256:" + path.parent.name for path in self._blob_files()}

    def _blob_files(self) -> Iterator[Path]:
        return (self.root / "blobs" / "sha256").glob("*/*/data")

    def remove_uploads(self) -> None:
        """Drop `_uploads` folders a registry leaves behind: oc-mirror's cache has none."""
        for folder, dirs, _files in os.walk(self.root / "repositories"):
            if "_uploads" in dirs:
                shutil.rmtree(Path(folder) / "_uploads")
                dirs.remove("_uploads")


def read_link(path: Path) -> str:
    text = path.read_text()
    if not _DIGEST.fullmatch(text):
        raise ValueError(f"{path}: not a link (want sha256:<hex>, no newline)")
    return text


def layer_keys(storage: Storage) -> dict[str, Layer]:
    """Layers already stored, by the key each image config's history names them with."""
    known: dict[str, Layer] = {}
    for repo in storage.repositories():
        for digest in storage.revisions(repo):
            known.update(_manifest_layers(storage, digest))
    return known


def _manifest_layers(storage: Storage, digest: str) -> dict[str, Layer]:
    if not storage.has_blob(digest):
        return {}
    body = json.loads(storage.read_blob(digest))
    if "config" not in body or not storage.has_blob(body["config"]["digest"]):
        return {}  # an index, or a manifest whose config is absent
    config = json.loads(storage.read_blob(body["config"]["digest"]))
    found = {}
    layers, diff_ids = body["layers"], config["rootfs"]["diff_ids"]
    for layer, diff_id, step in zip(layers, diff_ids, config.get("history", []), strict=False):
        match = _HISTORY.fullmatch(step.get("created_by", ""))
        if match and storage.has_blob(layer["digest"]):
            key = match.group(1)
            found[key] = Layer(key, layer["digest"], layer["size"], diff_id)
    return found


def _hex(digest: str) -> str:
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return digest.removeprefix("sha256:")


def _digest_dir(digest: str) -> str:
    return "sha256/" + _hex(digest)


def _write_link(path: Path, digest: str) -> None:
    if path.is_file() and path.read_bytes() == digest.encode():
        return  # nothing to do; mtimes are settled afterwards by the stamp pass
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(digest.encode())


def _write_new(path: Path, data: bytes) -> None:
    # Through a temporary name, so an interrupted run never leaves a short `data` file.
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)
