"""What `--deep` adds to a check: blobs whose bytes do not hash to their name.

`apply_hashes` is pure: hashes come in, problems go into the result, against every image
that uses the blob. A corrupt blob that no image uses is still an error: a later run of
oc-mirror would reuse it rather than fetch it again. `run_deep` gathers what to hash
(every blob the store holds, and every blob an image uses) and hashes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from syncd.verify import layout
from syncd.verify.digests import hex_of
from syncd.verify.hashing import Hasher, HashOutcome
from syncd.verify.problems import Code, error
from syncd.verify.reads import corrupt_blob
from syncd.verify.registry import RegistryResult
from syncd.verify.store import BlobLocator, RegistryStore, StoreError


class DeepStore(RegistryStore, BlobLocator, Protocol):
    """A store that can also say where each blob's bytes lie."""


def run_deep(
    result: RegistryResult, store: DeepStore, hasher: Hasher, *, every_blob: bool = True
) -> int:
    """Hash what the result does not vouch for yet; returns the bytes hashed.

    `every_blob=False` hashes only the blobs the checked images use: an upload copies
    those, and a corrupt blob nothing copies cannot fail it.
    """
    before = hasher.bytes_hashed
    wanted: set[str] = set()
    try:
        wanted.update(store.blobs() if every_blob else ())
    except StoreError as exc:
        where = store.show(layout.BLOBS)
        message = f"cannot list the blobs at {where}: {exc}; only the images' blobs are hashed"
        result.add_problem(error(Code.TREE_UNREADABLE, message, where))
    for outcome in result.images.values():
        wanted |= outcome.blobs
    located = {d: loc for d in wanted - result.hashed if (loc := store.locate(d)) is not None}
    apply_hashes(result, hasher.hash_all(located), lambda d: store.show(layout.blob_data(d)))
    return hasher.bytes_hashed - before


def apply_hashes(
    result: RegistryResult, hashes: Mapping[str, HashOutcome], show_blob: Callable[[str], str]
) -> None:
    for digest in sorted(hashes):
        outcome = hashes[digest]
        where = show_blob(digest)
        if outcome.hexdigest is None:
            message = f"cannot read blob {digest} at {where}: {outcome.error}"
            result.add_problem(error(Code.BLOB_UNREADABLE, message, where, digest), digest)
        elif outcome.hexdigest != hex_of(digest):
            problem = corrupt_blob(digest, where, outcome.size, outcome.hexdigest)
            result.add_problem(problem, digest)
