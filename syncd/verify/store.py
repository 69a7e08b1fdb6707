"""The storage interface the registry checker reads through, declared by its consumer.

Paths are relative to `docker/registry/v2` (see `layout`). A store answers None for
something absent and raises `StoreError` for something present but unreadable (a
permission, an I/O error, a directory where a file belongs): the checker reports both,
and neither ends verify.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

MANIFEST_LIMIT = 4 << 20  # distribution refuses manifests over 4 MiB on push
LINK_LIMIT = 4096  # a link holds 71 bytes; anything much longer is garbage anyway


class StoreError(Exception):
    """Something exists but cannot be read; the text says why."""


class RegistryStore(Protocol):
    def repositories(self) -> list[str]:
        """Every repository: each directory holding `_manifests`, names with '/'."""

    def tags(self, repo: str) -> list[str]:
        """Names under the repository's `_manifests/tags/`, as a registry lists them."""

    def revisions(self, repo: str) -> list[str]:
        """Names under `_manifests/revisions/sha256/` (hex, if the tree is sound)."""

    def read_link(self, rel: str) -> bytes | None:
        """A link file's bytes (at most LINK_LIMIT + 1 of them), or None if absent."""

    def blob_size(self, digest: str) -> int | None:
        """The size of the blob's `data`, or None if absent."""

    def read_blob(self, digest: str, limit: int) -> bytes | None:
        """At most `limit` + 1 bytes of the blob, or None if absent."""

    def show(self, rel: str) -> str:
        """Where `rel` is (or would be), for messages."""


@dataclass(frozen=True, slots=True)
class BlobLocation:
    """Where a blob's bytes lie: a byte range of a file (a `data` file or an archive)."""

    path: str
    offset: int
    size: int
    dir_fd: int = -1  # when set, `rel` is opened beneath it, never through a symlink
    rel: str = ""


class BlobLocator(Protocol):
    """What `--deep` needs to hash blobs without going through the checker."""

    def blobs(self) -> Iterable[str]:
        """Every blob digest the store holds."""

    def locate(self, digest: str) -> BlobLocation | None: ...
