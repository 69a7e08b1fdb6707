"""Reads through a `RegistryStore`, memoized, with what went wrong as problems.

A link is read once and a blob stat'ed once, however many tags lead to it: a shared
base layer costs one stat, and a missing blob is one problem that breaks every image
above it. Parsed manifests are not kept (the checker keeps what it found per manifest
and repository), and the blobs each image uses are tracked only when asked (--deep
needs them; on a large tree they are most of the memory).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from syncd.verify import layout
from syncd.verify.digests import hex_of, parse_link
from syncd.verify.manifest import Manifest, ManifestError, parse_manifest
from syncd.verify.outcome import EMPTY, Outcome, ProblemTable, uses
from syncd.verify.problems import Code, Problem, error
from syncd.verify.store import RegistryStore, StoreError


@dataclass(frozen=True, slots=True)
class Link:
    present: bool
    digest: str | None  # None when absent or unreadable
    outcome: Outcome  # the problem reading it, if any


class Reads:
    def __init__(
        self, store: RegistryStore, table: ProblemTable, manifest_limit: int, *, track: bool
    ) -> None:
        self.store = store
        self.table = table
        self.manifest_limit = manifest_limit
        self.track = track
        self.bytes_hashed = 0
        self.hashed: set[str] = set()
        self._links: dict[str, Link] = {}
        self._sizes: dict[str, tuple[int | None, Outcome]] = {}

    @property
    def blobs_checked(self) -> int:
        return len(self._sizes)

    def show_blob(self, digest: str) -> str:
        return self.store.show(layout.blob_data(digest))

    # -- links -----------------------------------------------------------------------

    def link(self, rel: str, *, keep: bool = True) -> Link:
        """The link at `rel`; `keep=False` for one the caller reads only once."""
        known = self._links.get(rel)
        if known is None:
            known = self._read_link(rel)
            if keep:
                self._links[rel] = known
        return known

    def _read_link(self, rel: str) -> Link:
        where = self.store.show(rel)
        try:
            raw = self.store.read_link(rel)
        except StoreError as exc:
            problem = error(Code.LINK_UNREADABLE, f"cannot read link {where}: {exc}", where)
            return Link(True, None, self.table.add(problem))
        if raw is None:
            return Link(False, None, EMPTY)
        digest = parse_link(raw)
        if digest is None:
            problem = error(
                Code.LINK_GARBAGE,
                # Its bytes are never quoted: on the far side they may be anyone's.
                f"link {where} is not a valid link: a link holds one digest "
                "(sha256:<64 lowercase hex>, no newline) and nothing else",
                where,
            )
            return Link(True, None, self.table.add(problem))
        return Link(True, digest, EMPTY)

    def link_to(self, rel: str, digest: str, *, keep: bool = True) -> Link:
        """The link at `rel`, which must name `digest` (the name of its directory)."""
        link = self.link(rel, keep=keep)
        if link.digest is None or link.digest == digest:
            return link
        where = self.store.show(rel)
        problem = error(
            Code.LINK_MISMATCH,
            f"link {where} names {link.digest}, but lives under {digest}: a registry would "
            "serve the wrong bytes",
            where,
            digest,
        )
        return Link(True, link.digest, self.table.add(problem))

    # -- blobs -----------------------------------------------------------------------

    def size(self, digest: str) -> tuple[int | None, Outcome]:
        """The blob's size (None if absent or unreadable) and the problem reading it."""
        known = self._sizes.get(digest)
        if known is None:
            try:
                known = (self.store.blob_size(digest), EMPTY)
            except StoreError as exc:
                known = (None, self.unreadable_blob(digest, str(exc)))
            self._sizes[digest] = known
        return known

    def present_size(self, digest: str, role: str) -> tuple[int | None, Outcome]:
        """As `size`, with a missing blob reported as one."""
        size, outcome = self.size(digest)
        if size is None and not outcome.problems:
            outcome = self.missing_blob(digest, role)
        return size, outcome | self.uses(digest)

    def uses(self, digest: str) -> Outcome:
        return uses(digest) if self.track else EMPTY

    def missing_blob(self, digest: str, role: str) -> Outcome:
        where = self.show_blob(digest)
        return self.table.add(
            error(Code.BLOB_MISSING, f"{role} blob {digest} is missing: {where}", where, digest)
        )

    def unreadable_blob(self, digest: str, why: str) -> Outcome:
        where = self.show_blob(digest)
        message = f"cannot read blob {digest} at {where}: {why}"
        return self.table.add(error(Code.BLOB_UNREADABLE, message, where, digest))

    # -- manifests -------------------------------------------------------------------

    def body(self, digest: str) -> tuple[Manifest | None, Outcome]:
        """The parsed manifest (None if it cannot be had) and every problem on the way."""
        where = self.show_blob(digest)
        size, outcome = self.present_size(digest, "manifest")
        if size is None:
            return None, outcome
        if size > self.manifest_limit:
            return None, outcome | self._too_large(digest, where, size)
        data, problem = self._read_blob(digest)
        if data is None:
            return None, outcome | problem
        outcome |= self._check_hash(digest, data, where)
        try:
            return parse_manifest(data), outcome
        except ManifestError as exc:
            return None, outcome | self._bad_manifest(digest, where, exc)

    def _read_blob(self, digest: str) -> tuple[bytes | None, Outcome]:
        try:
            data = self.store.read_blob(digest, self.manifest_limit)
        except StoreError as exc:
            return None, self.unreadable_blob(digest, str(exc))
        if data is None:  # removed between the stat and the read
            return None, self.missing_blob(digest, "manifest")
        if len(data) > self.manifest_limit:  # grew between the stat and the read
            return None, self._too_large(digest, self.show_blob(digest), len(data))
        self.bytes_hashed += len(data)
        self.hashed.add(digest)
        return data, EMPTY

    def _check_hash(self, digest: str, data: bytes, where: str) -> Outcome:
        actual = hashlib.sha256(data).hexdigest()
        if actual == hex_of(digest):
            return EMPTY
        # The bytes are followed anyway: a registry serves them unhashed, and what they
        # name (a loop, say) is worth reporting too.
        return self.table.add(corrupt_blob(digest, where, len(data), actual))

    def _too_large(self, digest: str, where: str, size: int) -> Outcome:
        return self.table.add(
            error(
                Code.MANIFEST_TOO_LARGE,
                f"manifest blob {digest} at {where} has {size} bytes, over the "
                f"{self.manifest_limit}-byte limit for manifests: not read",
                where,
                digest,
            )
        )

    def _bad_manifest(self, digest: str, where: str, exc: ManifestError) -> Outcome:
        if exc.unknown_type is None:
            message = f"manifest {digest} at {where} cannot be used: {exc}"
            return self.table.add(error(Code.MANIFEST_INVALID, message, where, digest))
        return self.table.add(
            error(
                Code.MEDIA_TYPE_UNKNOWN,
                f"manifest {digest} at {where} has media type {exc.unknown_type!r}, which is "
                "neither an OCI image manifest or index nor a Docker schema 2 manifest or "
                "manifest list",
                where,
                digest,
            )
        )


def corrupt_blob(digest: str, where: str, size: int, actual: str) -> Problem:
    """A blob whose bytes do not hash to its name."""
    return error(
        Code.DIGEST_MISMATCH,
        f"blob {digest} at {where} is corrupt: its {size} bytes hash to sha256:{actual}",
        where,
        digest,
    )
