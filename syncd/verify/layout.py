"""Paths of distribution's filesystem storage, relative to `docker/registry/v2`.

As distribution's registry/storage/paths.go lays them out (docs/FACTS.md). Pure string
functions: the checker names what it needs with these, and a store says where that lives.
"""

from __future__ import annotations

from syncd.verify.digests import hex_of

V2 = "docker/registry/v2"
REPOSITORIES = "repositories"
BLOBS = "blobs/sha256"


def repo_dir(repo: str) -> str:
    return f"{REPOSITORIES}/{repo}"


def tags_dir(repo: str) -> str:
    return f"{REPOSITORIES}/{repo}/_manifests/tags"


def revisions_dir(repo: str) -> str:
    return f"{REPOSITORIES}/{repo}/_manifests/revisions/sha256"


def tag_link(repo: str, tag: str) -> str:
    return f"{tags_dir(repo)}/{tag}/current/link"


def revision_link(repo: str, digest: str) -> str:
    return f"{revisions_dir(repo)}/{hex_of(digest)}/link"


def layer_link(repo: str, digest: str) -> str:
    return f"{REPOSITORIES}/{repo}/_layers/sha256/{hex_of(digest)}/link"


def blob_data(digest: str) -> str:
    hexpart = hex_of(digest)
    return f"{BLOBS}/{hexpart[:2]}/{hexpart}/data"


def split_repository_path(rel: str) -> tuple[str, str] | None:
    """`repositories/<repo>/_manifests/...` -> (repo, the part after `_manifests/`).

    A repository is the path up to the first `_manifests` component; a component that
    starts with `_` before it (`_layers`, `_uploads`) means the path is no repository's
    manifest data, as distribution's catalog walk skips such directories.
    """
    parts = rel.split("/")
    if len(parts) < 3 or parts[0] != REPOSITORIES:
        return None
    for index in range(1, len(parts)):
        if parts[index] == "_manifests":
            if index == 1:
                return None
            return "/".join(parts[1:index]), "/".join(parts[index + 1 :])
        if parts[index].startswith("_"):
            return None
    return None
