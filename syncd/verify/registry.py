"""Follow every tag the way a registry serves it, over any `RegistryStore`. Pure logic.

For a tag: `current/link` -> the manifest's revision link -> its blob, which must parse;
then, for an image manifest, the config and every layer need a `data` file of the
described size AND a `_layers` link in the repository (a blob GET reads that link first);
for an index, each child must be a revision of the same repository, complete in turn,
unless the tree allows sparse indexes (oc-mirror's cache), where an absent child is a
warning. Revisions no tag reaches are checked too and reported as `repo@digest`: a pull
by digest needs them whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

from syncd.verify import layout
from syncd.verify.digests import hex_of, is_hex
from syncd.verify.manifest import Descriptor, Kind, Manifest
from syncd.verify.outcome import EMPTY, Outcome, ProblemTable
from syncd.verify.problems import Code, Problem, error, warning
from syncd.verify.reads import Reads
from syncd.verify.store import MANIFEST_LIMIT, RegistryStore, StoreError

MAX_DEPTH = 8  # indexes of indexes: real trees nest at most once


@dataclass(frozen=True, slots=True)
class Policy:
    sparse_index: bool  # an index may name children the repository lacks
    manifest_limit: int = MANIFEST_LIMIT
    max_depth: int = MAX_DEPTH
    track_blobs: bool = False  # record the blobs each image uses (for --deep)
    # Follow cosign signature tags (`sha256-<hex>.sig`), as a copy with sigstore
    # attachments does: absent is fine, present must be whole.
    signatures: bool = False


@dataclass(slots=True)
class RegistryResult:
    images: dict[str, Outcome]  # "repo:tag", and "repo@digest" for untagged revisions
    # Each outcome's `blobs` are filled only under Policy(track_blobs=True).
    problems: dict[str, Problem]
    blobs_checked: int
    bytes_hashed: int
    hashed: frozenset[str]  # blobs whose bytes were hashed already (the manifests)
    orphans: frozenset[str] = field(default_factory=frozenset)  # the "repo@digest" names

    def is_broken(self, image: str) -> bool:
        return any(self.problems[key].is_error for key in self.images[image].problems)

    def broken(self) -> set[str]:
        return {name for name in self.images if self.is_broken(name)}

    def add_problem(self, problem: Problem, blob: str | None = None) -> None:
        """Record a later finding (from hashing, say) against every image using `blob`."""
        self.problems.setdefault(problem.key, problem)
        if blob is None:
            return
        mark = Outcome(frozenset({problem.key}))
        for name, outcome in self.images.items():
            if blob in outcome.blobs:
                self.images[name] = outcome | mark


def check_registry(store: RegistryStore, policy: Policy) -> RegistryResult:
    """Every tag of every repository, then every revision no tag reached."""
    checker = Checker(store, policy)
    return checker.run(checker.listed_images())


def check_images(
    store: RegistryStore, policy: Policy, images: Iterable[tuple[str, str]]
) -> RegistryResult:
    """Only the given (repo, tag) pairs, and no untagged revisions."""
    return Checker(store, policy).run(list(images), orphans=False)


Platforms = frozenset[str] | None  # "os/arch" instances of an index to follow; None: all


def check_selected(
    store: RegistryStore, policy: Policy, images: Iterable[tuple[str, str, Platforms]]
) -> RegistryResult:
    """The given (repo, tag) pairs, each index followed only into its chosen platforms."""
    checker = Checker(store, policy)
    results = {}
    for repo, tag, platforms in images:
        checker.platforms = platforms
        results[f"{repo}:{tag}"] = checker.image(repo, tag)
    checker.platforms = None
    result = checker.run([], orphans=False)
    result.images.update(results)
    return result


class Checker:
    def __init__(self, store: RegistryStore, policy: Policy) -> None:
        self.store = store
        self.policy = policy
        self.table = ProblemTable()
        self.reads = Reads(store, self.table, policy.manifest_limit, track=policy.track_blobs)
        self._manifests: dict[tuple[str, str, Platforms], Outcome] = {}
        self._blobs: dict[tuple[str, str, int], Outcome] = {}
        self._children: set[tuple[str, str]] = set()
        self._tree = EMPTY  # problems listing the tree itself: every image shares them
        self.platforms: Platforms = None  # the platform filter of the image being checked
        self._repos: list[str] = []  # as listed, tagged or not

    # -- the walk --------------------------------------------------------------------

    def listed_images(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        self._repos = self._listing(self.store.repositories, layout.REPOSITORIES, "repositories")
        for repo in self._repos:
            tags = self._listing(partial(self.store.tags, repo), layout.tags_dir(repo), "tags")
            found += [(repo, tag) for tag in tags]
        return found

    def run(self, images: list[tuple[str, str]], *, orphans: bool = True) -> RegistryResult:
        results = {f"{repo}:{tag}": self.image(repo, tag) for repo, tag in sorted(images)}
        repos = sorted({*self._repos, *(repo for repo, _ in images)})
        untagged = self._orphans(repos) if orphans else {}
        results.update(untagged)
        if self._tree.problems:
            results = {name: outcome | self._tree for name, outcome in results.items()}
        return RegistryResult(
            images=results,
            problems=self.table.problems,
            blobs_checked=self.reads.blobs_checked,
            bytes_hashed=self.reads.bytes_hashed,
            hashed=frozenset(self.reads.hashed),
            orphans=frozenset(untagged),
        )

    def image(self, repo: str, tag: str) -> Outcome:
        rel = layout.tag_link(repo, tag)
        link = self.reads.link(rel, keep=False)  # read once per tag
        if not link.present:
            where = self.store.show(rel)
            return self.table.add(
                error(
                    Code.TAG_LINK_MISSING,
                    f"tag {repo}:{tag} is listed but has no current link: {where} is "
                    "missing, so a GET answers MANIFEST_UNKNOWN",
                    where,
                )
            )
        if link.digest is None:
            return link.outcome
        return self.manifest(repo, link.digest, ())

    def _orphans(self, repos: list[str]) -> dict[str, Outcome]:
        pending: list[tuple[str, str]] = []
        for repo in repos:
            where = layout.revisions_dir(repo)
            names = self._listing(partial(self.store.revisions, repo), where, "revisions")
            for name in names:
                digest = self._revision_digest(repo, name)
                # A folder whose link is gone is no revision to a registry; an index
                # naming it reports the damage.
                known = (repo, digest, None) in self._manifests
                if digest and not known and self._linked(repo, digest):
                    pending.append((repo, digest))
        outcomes = {(repo, d): self.manifest(repo, d, ()) for repo, d in pending}
        # An untagged index reaches its children: report the index, not them again.
        return {
            f"{repo}@{digest}": outcome
            for (repo, digest), outcome in outcomes.items()
            if (repo, digest) not in self._children
        }

    def _linked(self, repo: str, digest: str) -> bool:
        return self.reads.link(layout.revision_link(repo, digest)).present

    def _revision_digest(self, repo: str, name: str) -> str | None:
        if is_hex(name):
            return "sha256:" + name
        where = self.store.show(f"{layout.revisions_dir(repo)}/{name}")
        message = f"{where} is not named by a sha256 hex digest; a registry cannot use it"
        self.table.add(warning(Code.REVISION_NAME, message, where))
        return None

    def _listing(self, lister: Callable[[], list[str]], rel: str, what: str) -> list[str]:
        try:
            return lister()
        except StoreError as exc:
            where = self.store.show(rel)
            problem = error(Code.TREE_UNREADABLE, f"cannot list {what} at {where}: {exc}", where)
            self._tree |= self.table.add(problem)
            return []

    # -- manifests -------------------------------------------------------------------

    def manifest(self, repo: str, digest: str, chain: tuple[str, ...]) -> Outcome:
        if digest in chain:
            return self._loop(repo, chain[chain.index(digest) :])
        if len(chain) >= self.policy.max_depth:
            return self._too_deep(repo, digest)
        if chain:
            self._children.add((repo, digest))
        key = (repo, digest, self.platforms)
        known = self._manifests.get(key)
        if known is None:
            known = self._manifests[key] = self._manifest(repo, digest, chain)
            if self.policy.signatures:
                known = self._manifests[key] = known | self._signature(repo, digest, chain)
        return known

    def _signature(self, repo: str, digest: str, chain: tuple[str, ...]) -> Outcome:
        """A cosign signature tag, when a registry would serve it, must be whole."""
        rel = layout.tag_link(repo, f"sha256-{hex_of(digest)}.sig")
        link = self.reads.link(rel, keep=False)
        if link.digest is None or link.digest in chain or link.digest == digest:
            return EMPTY  # absent or unreadable: the registry answers 404 or fails the lookup
        linked, outcome = self._manifest_link(repo, link.digest)
        if not linked or outcome.problems or self.reads.size(link.digest)[0] is None:
            return EMPTY  # MANIFEST_UNKNOWN: no signature, as far as a copy can tell
        return self.manifest(repo, link.digest, (*chain, digest))

    def _manifest(self, repo: str, digest: str, chain: tuple[str, ...]) -> Outcome:
        linked, outcome = self._manifest_link(repo, digest)
        if not linked:
            return self._not_linked(repo, digest)
        if outcome.problems:  # a registry fails on the link, or serves other bytes
            return outcome
        parsed, outcome = self.reads.body(digest)
        if parsed is None:
            return outcome
        if parsed.kind is Kind.MANIFEST:
            return outcome | self._image_blobs(repo, digest, parsed)
        return outcome | self._index_children(repo, digest, parsed, chain)

    def _manifest_link(self, repo: str, digest: str) -> tuple[bool, Outcome]:
        """Whether the repository links the manifest, and what is wrong with that link.

        distribution looks in `_manifests/revisions`, then in `_layers` (where 2.1.0
        linked manifests by mistake), and serves whatever digest the link names.
        """
        for rel in (layout.revision_link(repo, digest), layout.layer_link(repo, digest)):
            link = self.reads.link_to(rel, digest)
            if link.present:
                return True, link.outcome
        return False, EMPTY

    def _not_linked(self, repo: str, digest: str) -> Outcome:
        where = self.store.show(layout.revision_link(repo, digest))
        return self.table.add(
            error(
                Code.MANIFEST_NOT_LINKED,
                f"manifest {digest} is not in repository {repo}: its revision link {where} "
                "is missing, so a GET answers MANIFEST_UNKNOWN",
                where,
                digest,
            )
        )

    # -- what a manifest names -------------------------------------------------------

    def _image_blobs(self, repo: str, digest: str, parsed: Manifest) -> Outcome:
        outcome = EMPTY
        if parsed.config is not None:
            outcome |= self._blob(repo, parsed.config, "config", digest)
        for layer in parsed.layers:
            outcome |= self._blob(repo, layer, "layer", digest)
        return outcome

    def _index_children(
        self, repo: str, digest: str, parsed: Manifest, chain: tuple[str, ...]
    ) -> Outcome:
        outcome, present, left_out = EMPTY, 0, []
        for child in parsed.children:
            if not self._chosen(child):
                continue
            linked, _ = self._manifest_link(repo, child.digest)
            if linked:
                present += 1
                outcome |= self.manifest(repo, child.digest, (*chain, digest))
                outcome |= self._child_size(digest, child)
            elif (absent := self._absent_child(repo, digest, child)) is not None:
                outcome |= absent
            else:
                left_out.append(child)
        if left_out and present:
            outcome |= self._sparse(repo, digest, left_out)
        elif parsed.children and not present:
            where = self.store.show(layout.revision_link(repo, digest))
            outcome |= self.table.add(
                error(
                    Code.INDEX_NOTHING_PRESENT,
                    f"index {digest} in repository {repo} names {len(parsed.children)} "
                    "manifests and the repository holds none of them: no platform can be "
                    "pulled",
                    where,
                    digest,
                )
            )
        return outcome

    def _chosen(self, child: Descriptor) -> bool:
        """Under a platform filter, only the chosen instances are copied (oc-mirror's
        image-blob-gatherer.go `platformForDigest`: os/arch, and entries without a
        platform always)."""
        if self.platforms is None or not child.platform:
            return True
        return "/".join(child.platform.split("/")[:2]) in self.platforms

    def _absent_child(self, repo: str, parent: str, child: Descriptor) -> Outcome | None:
        """The error an absent child is, or None for a platform a sparse index left out."""
        where = self.store.show(layout.revision_link(repo, child.digest))
        what = _child_name(child)
        if not self.policy.sparse_index:
            message = (
                f"index {parent} names {what}, which repository {repo} lacks: {where} is missing"
            )
            return self.table.add(error(Code.CHILD_MISSING, message, where, child.digest))
        size, _ = self.reads.size(child.digest)
        if size is not None:
            # Its blob is here but its link is gone: damage, not a platform left out.
            return self.table.add(
                error(
                    Code.CHILD_UNLINKED,
                    f"index {parent} names {what}, whose blob is in the store but not linked "
                    f"in repository {repo}: {where} is missing, so a GET by digest answers "
                    "MANIFEST_UNKNOWN",
                    where,
                    child.digest,
                )
            )
        return None

    def _sparse(self, repo: str, digest: str, left_out: list[Descriptor]) -> Outcome:
        where = self.store.show(layout.revision_link(repo, digest))
        names = ", ".join(_child_name(child) for child in left_out)
        message = (
            f"sparse index {digest} in repository {repo}: {len(left_out)} of its manifests "
            f"are absent, as oc-mirror's cache allows: {names}"
        )
        return self.table.add(warning(Code.CHILD_SPARSE, message, where, digest))

    def _child_size(self, parent: str, child: Descriptor) -> Outcome:
        size, _ = self.reads.size(child.digest)
        if size is None or size == child.size:
            return EMPTY
        where = self.reads.show_blob(child.digest)
        message = (
            f"manifest {child.digest} at {where} has {size} bytes; index {parent} says {child.size}"
        )
        return self.table.add(error(Code.SIZE_MISMATCH, message, where, child.digest))

    def _blob(self, repo: str, descriptor: Descriptor, role: str, parent: str) -> Outcome:
        key = (repo, descriptor.digest, descriptor.size)
        known = self._blobs.get(key)
        if known is None:
            known = self._blobs[key] = self._check_blob(repo, descriptor, role, parent)
        return known

    def _check_blob(self, repo: str, descriptor: Descriptor, role: str, parent: str) -> Outcome:
        digest = descriptor.digest
        rel = layout.layer_link(repo, digest)
        link = self.reads.link_to(rel, digest, keep=False)  # the blob memo covers it
        if descriptor.urls and not link.present and self.reads.size(digest)[0] is None:
            return self._foreign(repo, descriptor, parent)
        size, outcome = self.reads.present_size(digest, role)
        outcome |= link.outcome
        if not link.present:
            where = self.store.show(rel)
            outcome |= self.table.add(
                error(
                    Code.BLOB_NOT_LINKED,
                    f"{role} {digest} of manifest {parent} is not linked in repository "
                    f"{repo}: {where} is missing, so a GET answers BLOB_UNKNOWN",
                    where,
                    digest,
                )
            )
        if size is not None and size != descriptor.size:
            where = self.reads.show_blob(digest)
            message = (
                f"{role} blob {digest} at {where} has {size} bytes; manifest {parent} says "
                f"{descriptor.size}"
            )
            outcome |= self.table.add(error(Code.SIZE_MISMATCH, message, where, digest))
        return outcome

    def _foreign(self, repo: str, descriptor: Descriptor, parent: str) -> Outcome:
        where = self.reads.show_blob(descriptor.digest)
        message = (
            f"foreign layer {descriptor.digest} of manifest {parent} is not in repository "
            f"{repo}; clients fetch it from {descriptor.urls[0]}"
        )
        return self.table.add(warning(Code.FOREIGN_LAYER, message, where, descriptor.digest))

    # -- index shapes that never end ---------------------------------------------------

    def _loop(self, repo: str, cycle: tuple[str, ...]) -> Outcome:
        # The same loop met from any of its members is one problem: start at the least.
        start = cycle.index(min(cycle))
        ordered = cycle[start:] + cycle[:start]
        where = self.store.show(layout.revision_link(repo, ordered[0]))
        path = " -> ".join((*ordered, ordered[0]))
        message = f"indexes in repository {repo} loop: {path}; a client following them never ends"
        return self.table.add(error(Code.INDEX_LOOP, message, where, ordered[0]))

    def _too_deep(self, repo: str, digest: str) -> Outcome:
        where = self.store.show(layout.revision_link(repo, digest))
        message = (
            f"manifest {digest} in repository {repo} is nested more than "
            f"{self.policy.max_depth} indexes deep"
        )
        return self.table.add(error(Code.INDEX_TOO_DEEP, message, where, digest))


def _child_name(child: Descriptor) -> str:
    platform = f" ({child.platform})" if child.platform else ""
    return f"manifest {child.digest}{platform}"
