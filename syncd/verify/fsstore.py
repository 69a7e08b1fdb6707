"""A registry store over distribution's filesystem storage (`.../docker/registry/v2`).

Every read resolves beneath the `v2` folder's descriptor and follows no symlink (see
`beneath`): a link or a blob's `data` that is a symlink is reported as one, and what it
points at is never opened, so nothing outside the tree is read or reported. A registry
would follow it; verify says so instead of guessing what it would find. Reads use
os-level calls on str paths: a shallow verify reads one small file per link it follows.
"""

from __future__ import annotations

import errno
import stat
from collections.abc import Iterator
from pathlib import Path

from syncd.verify import layout
from syncd.verify.beneath import Beneath, why
from syncd.verify.digests import is_hex
from syncd.verify.store import LINK_LIMIT, BlobLocation, StoreError

_ABSENT = (errno.ENOENT, errno.ENOTDIR)


class FsStore:
    def __init__(self, v2: Path) -> None:
        self.v2 = v2
        self._base = str(v2) + "/"
        try:
            self._dir: Beneath | None = Beneath.open(v2)
        except OSError:
            self._dir = None  # every read then answers "absent"

    def close(self) -> None:
        if self._dir is not None:
            self._dir.close()
            self._dir = None

    # -- RegistryStore ---------------------------------------------------------------

    def repositories(self) -> list[str]:
        """Directories holding `_manifests`, skipping `_*` folders as the catalog does."""
        found: list[str] = []
        stack = [""]
        while stack:
            rel = stack.pop()
            names = self._subdirs(f"{layout.REPOSITORIES}/{rel}" if rel else layout.REPOSITORIES)
            if rel and "_manifests" in names:
                found.append(rel)
            stack += [f"{rel}/{n}" if rel else n for n in names if not n.startswith("_")]
        return sorted(found)

    def tags(self, repo: str) -> list[str]:
        return sorted(self._list(layout.tags_dir(repo)))

    def revisions(self, repo: str) -> list[str]:
        return sorted(self._list(layout.revisions_dir(repo)))

    def read_link(self, rel: str) -> bytes | None:
        return self._read(rel, LINK_LIMIT + 1)

    def blob_size(self, digest: str) -> int | None:
        rel = layout.blob_data(digest)
        if self._dir is None:
            return None
        try:
            info = self._dir.stat(rel)
        except OSError as exc:
            if exc.errno in _ABSENT:
                return None
            raise StoreError(why(exc)) from None
        if not stat.S_ISREG(info.st_mode):
            raise StoreError("not a regular file")
        return info.st_size

    def read_blob(self, digest: str, limit: int) -> bytes | None:
        return self._read(layout.blob_data(digest), limit + 1)

    def show(self, rel: str) -> str:
        return self._base + rel

    # -- BlobLocator -------------------------------------------------------------------

    def blobs(self) -> Iterator[str]:
        for prefix in sorted(self._list(layout.BLOBS)):
            for name in sorted(self._list(f"{layout.BLOBS}/{prefix}")):
                if is_hex(name) and name.startswith(prefix):
                    yield "sha256:" + name

    def locate(self, digest: str) -> BlobLocation | None:
        try:
            size = self.blob_size(digest)
        except StoreError:
            size = -1  # hashing meets the error again and reports it
        if size is None or self._dir is None:
            return None
        rel = layout.blob_data(digest)
        return BlobLocation(self._base + rel, 0, size, self._dir.fd, rel)

    # -- helpers ---------------------------------------------------------------------

    def _read(self, rel: str, limit: int) -> bytes | None:
        if self._dir is None:
            return None
        try:
            return self._dir.read(rel, limit)
        except OSError as exc:  # EISDIR for a directory where a file belongs
            if exc.errno in _ABSENT:
                return None
            raise StoreError(why(exc)) from None

    def _entries(self, rel: str) -> list[tuple[str, bool]]:
        if self._dir is None:
            return []
        try:
            return self._dir.entries(rel)
        except OSError as exc:
            if exc.errno in _ABSENT:
                return []
            raise StoreError(f"{self._base}{rel}: {why(exc)}") from None

    def _list(self, rel: str) -> list[str]:
        return [name for name, _ in self._entries(rel)]

    def _subdirs(self, rel: str) -> list[str]:
        return [name for name, is_dir in self._entries(rel) if is_dir]
