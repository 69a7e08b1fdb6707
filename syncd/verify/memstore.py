"""A registry store held in dictionaries: for table tests of the pure checker.

Paths are the same relative paths a filesystem store reads (see `layout`), so a test
writes exactly the files it means (garbage links, a tag without `current/link`) and the
builder helpers write what a registry would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from syncd.verify import layout
from syncd.verify.digests import hex_of
from syncd.verify.store import LINK_LIMIT, BlobLocation, StoreError


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class MemStore:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}  # link files and other files, by relative path
        self.blob_bytes: dict[str, bytes] = {}  # blob data by digest
        self.unreadable: set[str] = set()  # relative paths (or digests) that raise

    # -- RegistryStore ---------------------------------------------------------------

    def repositories(self) -> list[str]:
        found = set()
        for rel in self.files:
            split = layout.split_repository_path(rel)
            if split is not None:
                found.add(split[0])
        return sorted(found)

    def tags(self, repo: str) -> list[str]:
        return self._names_under(layout.tags_dir(repo))

    def revisions(self, repo: str) -> list[str]:
        return self._names_under(layout.revisions_dir(repo))

    def read_link(self, rel: str) -> bytes | None:
        if rel in self.unreadable:
            raise StoreError("permission denied")
        data = self.files.get(rel)
        return None if data is None else data[: LINK_LIMIT + 1]

    def blob_size(self, digest: str) -> int | None:
        if digest in self.unreadable:
            raise StoreError("input/output error")
        data = self.blob_bytes.get(digest)
        return None if data is None else len(data)

    def read_blob(self, digest: str, limit: int) -> bytes | None:
        if digest in self.unreadable:
            raise StoreError("input/output error")
        data = self.blob_bytes.get(digest)
        return None if data is None else data[: limit + 1]

    def show(self, rel: str) -> str:
        return rel

    # -- BlobLocator (in-memory blobs have no file to hash) ---------------------------

    def blobs(self) -> Iterable[str]:
        return sorted(self.blob_bytes)

    def locate(self, digest: str) -> BlobLocation | None:
        return None

    # -- building trees --------------------------------------------------------------

    def put_blob(self, data: bytes, digest: str | None = None) -> str:
        """Store bytes under their digest (or under `digest`, to plant a corrupt blob)."""
        name = digest or sha256_digest(data)
        self.blob_bytes[name] = data
        return name

    def link(self, rel: str, digest: str) -> None:
        self.files[rel] = digest.encode()

    def link_layer(self, repo: str, digest: str) -> None:
        self.link(layout.layer_link(repo, digest), digest)

    def link_revision(self, repo: str, digest: str) -> None:
        self.link(layout.revision_link(repo, digest), digest)

    def link_tag(self, repo: str, tag: str, digest: str) -> None:
        self.link(layout.tag_link(repo, tag), digest)
        self.link(f"{layout.tags_dir(repo)}/{tag}/index/sha256/{hex_of(digest)}/link", digest)

    def _names_under(self, folder: str) -> list[str]:
        prefix = folder + "/"
        return sorted(
            {rel[len(prefix) :].split("/", 1)[0] for rel in self.files if rel.startswith(prefix)}
        )
