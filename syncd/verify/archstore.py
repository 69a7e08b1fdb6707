"""A registry store over a content folder's archives, layered over the cache beside it.

This is the registry disk-to-mirror will have: it extracts the archives' `docker/
registry/v2` members into its cache, over what the cache already holds. Repositories,
tags and revisions are the archives' own (the tree mirror-to-disk put there, whole);
links and blobs come from the archives first, then from the cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from syncd.verify import layout
from syncd.verify.archives import ArchiveSet, MemberRef
from syncd.verify.digests import is_hex
from syncd.verify.fsstore import FsStore
from syncd.verify.store import LINK_LIMIT, BlobLocation

PREFIX = layout.V2 + "/"


class ArchiveStore:
    def __init__(self, archives: ArchiveSet, cache: FsStore | None) -> None:
        self.archives = archives
        self.cache = cache
        self._members = archives.extraction.registry
        self._tags: dict[str, set[str]] = {}
        self._revisions: dict[str, set[str]] = {}
        for rel in self._members:
            self._index(rel)

    def _index(self, rel: str) -> None:
        split = layout.split_repository_path(rel)
        if split is None:
            return
        repo, rest = split
        parts = rest.split("/")
        if len(parts) > 1 and parts[0] == "tags":
            self._tags.setdefault(repo, set()).add(parts[1])
        elif len(parts) > 2 and parts[:2] == ["revisions", "sha256"]:
            self._revisions.setdefault(repo, set()).add(parts[2])
        else:
            self._tags.setdefault(repo, set())

    # -- RegistryStore ---------------------------------------------------------------

    def repositories(self) -> list[str]:
        return sorted(self._tags.keys() | self._revisions.keys())

    def tags(self, repo: str) -> list[str]:
        return sorted(self._tags.get(repo, ()))

    def revisions(self, repo: str) -> list[str]:
        return sorted(self._revisions.get(repo, ()))

    def read_link(self, rel: str) -> bytes | None:
        ref = self._members.get(rel)
        if ref is not None:
            return self.archives.read(ref, LINK_LIMIT + 1)
        return self.cache.read_link(rel) if self.cache else None

    def blob_size(self, digest: str) -> int | None:
        ref = self._members.get(layout.blob_data(digest))
        if ref is not None:
            return ref.size
        return self.cache.blob_size(digest) if self.cache else None

    def read_blob(self, digest: str, limit: int) -> bytes | None:
        ref = self._members.get(layout.blob_data(digest))
        if ref is not None:
            return self.archives.read(ref, limit + 1)
        return self.cache.read_blob(digest, limit) if self.cache else None

    def show(self, rel: str) -> str:
        ref = self._members.get(rel)
        if ref is not None:
            return f"{ref.archive}:{ref.name}"
        if self.cache is None:
            return f"{PREFIX}{rel} (in no archive, and no cache was found)"
        path = self.cache.show(rel)
        if os.path.lexists(path):
            return path
        return f"{PREFIX}{rel} (in no archive, nor in the cache at {self.cache.v2})"

    # -- BlobLocator -------------------------------------------------------------------

    def blobs(self) -> Iterator[str]:
        """The blobs the archives carry (the cache's are the cache's own business)."""
        for rel in self._members:
            parts = rel.split("/")
            blob = len(parts) == 5 and parts[:2] == ["blobs", "sha256"] and parts[4] == "data"
            if blob and is_hex(parts[3]) and parts[3].startswith(parts[2]):
                yield "sha256:" + parts[3]

    def locate(self, digest: str) -> BlobLocation | None:
        ref: MemberRef | None = self._members.get(layout.blob_data(digest))
        if ref is not None:
            where = str(self.archives.folder / ref.archive)
            folder = self.archives.dir
            fd = folder.fd if folder is not None else -1
            return BlobLocation(where, ref.offset, ref.size, fd, ref.archive)
        return self.cache.locate(digest) if self.cache else None
