"""A registry store over distribution's filesystem storage (`.../docker/registry/v2`).

Reads use os-level calls on str paths: a shallow verify reads one small file per link
it follows, and pathlib's overhead would be most of the cost. Symlinks are followed,
as distribution's filesystem driver follows them.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from syncd.verify import layout
from syncd.verify.digests import is_hex
from syncd.verify.store import LINK_LIMIT, BlobLocation, StoreError

_OPEN = os.O_RDONLY | os.O_CLOEXEC
_ABSENT = (errno.ENOENT, errno.ENOTDIR)


class FsStore:
    def __init__(self, v2: Path) -> None:
        self.v2 = v2
        self._base = str(v2) + "/"

    # -- RegistryStore ---------------------------------------------------------------

    def repositories(self) -> list[str]:
        """Directories holding `_manifests`, skipping `_*` folders as the catalog does."""
        top = self._base + layout.REPOSITORIES
        found: list[str] = []
        stack = [""]
        while stack:
            rel = stack.pop()
            names = self._subdirs(f"{top}/{rel}" if rel else top)
            if rel and "_manifests" in names:
                found.append(rel)
            stack += [f"{rel}/{n}" if rel else n for n in names if not n.startswith("_")]
        return sorted(found)

    def tags(self, repo: str) -> list[str]:
        return sorted(self._list(self._base + layout.tags_dir(repo)))

    def revisions(self, repo: str) -> list[str]:
        return sorted(self._list(self._base + layout.revisions_dir(repo)))

    def read_link(self, rel: str) -> bytes | None:
        return self._read(self._base + rel, LINK_LIMIT + 1)

    def blob_size(self, digest: str) -> int | None:
        path = self._base + layout.blob_data(digest)
        try:
            info = os.stat(path)  # noqa: PTH116 - str paths on the hot path
        except OSError as exc:
            if exc.errno in _ABSENT:
                return None
            raise StoreError(exc.strerror or str(exc)) from None
        if not stat.S_ISREG(info.st_mode):
            raise StoreError("not a regular file")
        return info.st_size

    def read_blob(self, digest: str, limit: int) -> bytes | None:
        return self._read(self._base + layout.blob_data(digest), limit + 1)

    def show(self, rel: str) -> str:
        return self._base + rel

    # -- BlobLocator -------------------------------------------------------------------

    def blobs(self) -> Iterator[str]:
        top = self._base + layout.BLOBS
        for prefix in sorted(self._list(top)):
            for name in sorted(self._list(f"{top}/{prefix}")):
                if is_hex(name) and name.startswith(prefix):
                    yield "sha256:" + name

    def locate(self, digest: str) -> BlobLocation | None:
        try:
            size = self.blob_size(digest)
        except StoreError:
            size = -1  # hashing meets the error again and reports it
        if size is None:
            return None
        return BlobLocation(self._base + layout.blob_data(digest), 0, size)

    # -- helpers ---------------------------------------------------------------------

    def _read(self, path: str, limit: int) -> bytes | None:
        try:
            fd = os.open(path, _OPEN)
        except OSError as exc:
            if exc.errno in _ABSENT:
                return None
            raise StoreError(exc.strerror or str(exc)) from None
        try:
            return os.read(fd, limit)
        except OSError as exc:  # EISDIR for a directory where a file belongs
            raise StoreError(exc.strerror or str(exc)) from None
        finally:
            os.close(fd)

    def _list(self, path: str) -> list[str]:
        try:
            return os.listdir(path)  # noqa: PTH208 - str paths on the hot path
        except OSError as exc:
            if exc.errno in _ABSENT:
                return []
            raise StoreError(f"{path}: {exc.strerror}") from None

    def _subdirs(self, path: str) -> list[str]:
        try:
            with os.scandir(path) as entries:
                return [e.name for e in entries if e.is_dir(follow_symlinks=False)]
        except OSError as exc:
            if exc.errno in _ABSENT:
                return []
            raise StoreError(f"{path}: {exc.strerror}") from None
