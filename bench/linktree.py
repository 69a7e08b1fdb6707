"""A fast, deterministic generator of registry storage shaped like distribution's.

Writes `<root>/docker/registry/v2/repositories/<name>/...` with the link files of
docs/FACTS.md's table, in realistic proportions: several hundred repositories (names with
`/`), each with a few shared base layers and a lognormal number of tags; each tag names
one image with ~8 `_layers` links of its own (config and layers), 1-3 manifest
revisions (an index and its children), `current/link` and 1-2 `index` entries. Every
link holds `sha256:<hex>` without a newline. With `manifests=True`, each revision's
manifest JSON is also written to `blobs/sha256/<hex[:2]>/<hex>/data` under its true
sha256; layer and config blobs are not written (this tree exercises the walk, not the
hashing of bulk bytes).

The same spec gives the same names, contents and mtimes on any machine. Run as
`python -m bench.linktree ROOT [--links N] [--seed S]`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.common import cached_tree

V2 = "docker/registry/v2"
FIXED_MTIME_NS = 1_704_067_200 * 1_000_000_000  # 2024-01-01T00:00:00Z
MAX_TAGS = 400
DEFAULT_LINKS = 200_000

_ORGS = (
    "openshift-release-dev",
    "redhat",
    "rhel9",
    "rhel8",
    "ubi9",
    "openshift4",
    "multicluster-engine",
    "odf4",
    "rhacm2",
    "openshift-logging",
    "openshift-gitops-1",
    "rh-sso-7",
    "quay",
    "kubevirt",
    "cert-manager",
    "openshift-serverless-1",
)
_TEAMS = ("", "", "", "operators", "community", "bundles")
_PARTS = (
    "operator",
    "bundle",
    "controller",
    "webhook",
    "agent",
    "console-plugin",
    "rhel9",
    "exporter",
    "proxy",
    "catalog",
    "index",
    "server",
    "cli",
    "must-gather",
)
_WORDS = (
    "cluster",
    "logging",
    "storage",
    "network",
    "observability",
    "mesh",
    "pipelines",
    "virt",
    "ingress",
    "compliance",
    "kafka",
    "postgres",
    "keycloak",
    "cert",
    "dns",
    "node",
    "metering",
    "vault",
    "gateway",
    "registry",
)
_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
_ARCHES = ("amd64", "arm64", "ppc64le", "s390x")


@dataclass(frozen=True, slots=True)
class LinkTreeSpec:
    links: int = DEFAULT_LINKS  # at least this many link files
    seed: int = 1
    manifests: bool = True  # also write each manifest's bytes under blobs/
    mtime_ns: int = FIXED_MTIME_NS


@dataclass(frozen=True, slots=True)
class LinkTreeReport:
    repositories: int
    images: int
    links: int
    manifests: int
    dirs: int

    def as_json(self) -> dict[str, int]:
        return {
            "repositories": self.repositories,
            "images": self.images,
            "links": self.links,
            "manifests": self.manifests,
            "dirs": self.dirs,
        }


class _Digests:
    """Deterministic fake blob digests: sha256 of a seed and a counter."""

    def __init__(self, seed: int) -> None:
        self._prefix = f"linktree/{seed}/".encode()
        self._n = 0

    def new(self) -> str:
        self._n += 1
        return hashlib.sha256(self._prefix + str(self._n).encode()).hexdigest()


class _Writer:
    """Creates files and their parent directories, remembering which exist."""

    def __init__(self, root: Path, mtime_ns: int) -> None:
        self.root = str(root)
        self._mtime = (mtime_ns, mtime_ns)
        self.dirs: set[str] = set()
        self.files = 0

    def file(self, rel: str, data: bytes) -> None:
        path = f"{self.root}/{rel}"
        parent = rel.rpartition("/")[0]
        if parent not in self.dirs:
            self._mkdirs(parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
            os.utime(fd, ns=self._mtime)
        finally:
            os.close(fd)
        self.files += 1

    def _mkdirs(self, rel: str) -> None:
        missing = []
        while rel and rel not in self.dirs:
            missing.append(rel)
            rel = rel.rpartition("/")[0]
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(f"{self.root}/{d}", 0o755)  # noqa: PTH102 - hot path, str paths
            self.dirs.add(d)

    def settle_dirs(self) -> None:
        """Give every directory (deepest first, then the root) the fixed mtime."""
        for d in sorted(self.dirs, key=lambda p: p.count("/"), reverse=True):
            os.utime(f"{self.root}/{d}", ns=self._mtime, follow_symlinks=False)
        os.utime(self.root, ns=self._mtime, follow_symlinks=False)


def _repo_names(rng: random.Random) -> Iterator[str]:
    seen: set[str] = set()
    while True:
        org = rng.choice(_ORGS)
        team = rng.choice(_TEAMS)
        name = f"{rng.choice(_WORDS)}-{rng.choice(_PARTS)}"
        if rng.random() < 0.3:
            name = f"{rng.choice(_WORDS)}-{name}"
        full = "/".join(p for p in (org, team, name) if p)
        if full not in seen:
            seen.add(full)
            yield full


def _link(digest: str) -> bytes:
    return f"sha256:{digest}".encode()


def _descriptor(media_type: str, digest: str, size: int) -> dict[str, object]:
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": size}


def _manifest(rng: random.Random, config: str, layers: list[str]) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": _OCI_MANIFEST,
        "config": _descriptor(_OCI_CONFIG, config, rng.randint(1_000, 20_000)),
        "layers": [_descriptor(_OCI_LAYER, d, rng.randint(10_000, 200_000_000)) for d in layers],
    }
    return json.dumps(doc, indent=3).encode()


def _index(children: list[tuple[str, int]]) -> bytes:
    manifests = []
    for (digest, size), arch in zip(children, _ARCHES, strict=False):
        entry = _descriptor(_OCI_MANIFEST, digest, size)
        entry["platform"] = {"architecture": arch, "os": "linux"}
        manifests.append(entry)
    doc = {"schemaVersion": 2, "mediaType": _OCI_INDEX, "manifests": manifests}
    return json.dumps(doc, indent=3).encode()


def generate(root: Path, spec: LinkTreeSpec) -> LinkTreeReport:
    """Write the tree into `root` (created; must not exist or be empty)."""
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise ValueError(f"{root} is not empty")
    rng = random.Random(spec.seed)
    digests = _Digests(spec.seed)
    out = _Writer(root, spec.mtime_ns)
    links = repos = images = manifests = 0
    names = _repo_names(rng)

    def blob(digest: str, data: bytes) -> None:
        nonlocal manifests
        if spec.manifests:
            out.file(f"{V2}/blobs/sha256/{digest[:2]}/{digest}/data", data)
            manifests += 1

    while links < spec.links:
        repo = next(names)
        base = f"{V2}/repositories/{repo}"
        repos += 1
        shared = [digests.new() for _ in range(rng.randint(2, 4))]
        layer_links = set(shared)
        tags = min(MAX_TAGS, max(1, round(rng.lognormvariate(math.log(13), 1.0))))
        for t in range(tags):
            images += 1
            revisions: list[tuple[str, bytes]] = []
            arches = rng.choice((1, 1, 2, 3))  # 1: a plain manifest; else an index + children
            for _ in range(1 if arches == 1 else arches - 1):
                config = digests.new()
                own = [digests.new() for _ in range(rng.randint(3, 11))]
                layers = shared[: rng.randint(1, len(shared))] + own
                layer_links.update([config, *own])
                data = _manifest(rng, config, layers)
                revisions.append((hashlib.sha256(data).hexdigest(), data))
            if arches > 1:
                data = _index([(d, len(m)) for d, m in revisions])
                revisions.insert(0, (hashlib.sha256(data).hexdigest(), data))
            top = revisions[0][0]
            history = [top]
            if rng.random() < 0.25:  # the tag named an older manifest before
                older = _manifest(rng, digests.new(), shared)
                older_digest = hashlib.sha256(older).hexdigest()
                revisions.append((older_digest, older))
                history.append(older_digest)
            for digest, data in revisions:
                out.file(f"{base}/_manifests/revisions/sha256/{digest}/link", _link(digest))
                blob(digest, data)
            tag = _tag_name(repo, t, rng)
            for digest in history:
                out.file(f"{base}/_manifests/tags/{tag}/index/sha256/{digest}/link", _link(digest))
            out.file(f"{base}/_manifests/tags/{tag}/current/link", _link(top))
            links += len(revisions) + len(history) + 1
        for digest in sorted(layer_links):
            out.file(f"{base}/_layers/sha256/{digest}/link", _link(digest))
        links += len(layer_links)
    out.settle_dirs()
    return LinkTreeReport(repos, images, links, manifests, len(out.dirs))


def cached(workdir: Path, name: str, spec: LinkTreeSpec, log: Callable[[str], None]) -> Path:
    """`workdir/trees/name` generated from `spec`, reused while its marker matches: one
    marker format for every benchmark and campaign that uses these trees."""
    return cached_tree(
        workdir,
        name,
        {"generator": "bench.linktree", "version": 1, "spec": asdict(spec)},
        lambda root: log(json.dumps(generate(root, spec).as_json())),
        log=log,
    )


def _tag_name(repo: str, index: int, rng: random.Random) -> str:
    if repo.startswith("openshift-release-dev"):
        return f"4.{14 + index // 60}.{index % 60}-x86_64-{rng.choice(_WORDS)}"
    if rng.random() < 0.2:
        return f"sha256-{hashlib.sha256(f'{repo}{index}'.encode()).hexdigest()[:40]}.sig"
    return f"v{1 + index // 25}.{index % 25}.{rng.randint(0, 9)}"


def main() -> None:
    parser = argparse.ArgumentParser(description="write a registry storage tree of link files")
    parser.add_argument("root", type=Path)
    parser.add_argument("--links", type=int, default=DEFAULT_LINKS)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-manifests", action="store_true", help="write link files only")
    args = parser.parse_args()
    spec = LinkTreeSpec(links=args.links, seed=args.seed, manifests=not args.no_manifests)
    print(json.dumps(generate(args.root, spec).as_json()))


if __name__ == "__main__":
    main()
