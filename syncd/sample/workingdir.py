"""Small plausible files of oc-mirror's working-dir, and the image set config.

disk-to-mirror opens these by name (openshift/oc-mirror, commit 855b64a3): the saved
update graph `hold-release/cincinnati-graph-data/<arch>-<channel>.json`
(release/core-cincinnati.go), one signature per release digest named
`<tag>-sha256-<digest>` (release/signature.go), each release's
`hold-release/<repo>/<tag>/release-manifests/image-references`, the filtered catalog
`operator-catalogs/<name>/<catalog digest>/filtered-catalogs/<filter>/` with its `digest`
and `declarative-config/` (operator/filtered_collector.go), and helm charts as
`helm/charts/<name>-<version>.tgz`. logs/ and cluster-resources/ are outputs;
graph-preparation/ is mirror-to-disk's own. Files that belong to a month (a release, a
catalog build, a log) are added; summaries are rewritten.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from syncd.sample.layers import rng
from syncd.sample.plan import CATALOG, RELEASE_REPO, month_time, rfc3339

_UPSTREAM = "quay.io/openshift-release-dev/ocp-v4.0-art-dev"
_MIRROR = "registry.example.com/mirror"
_HELM_CHART = ("podinfo", "6.7.1")


@dataclass(frozen=True, slots=True)
class MonthFacts:
    """What this month's working-dir files describe."""

    seed: int
    month: int
    version: str
    release_digest: str
    catalog_digest: str
    components: dict[str, str]  # component -> manifest digest
    operators: Sequence[str]  # operator repositories in the catalog
    additional: Sequence[str]  # additional image names, as in the image set config
    mirrored: Sequence[str]  # repo:tag added this month
    repositories: Sequence[str]  # every repository in the cache
    releases: dict[str, str]  # every release version mirrored so far -> payload digest
    operator_images: Sequence[str]  # repo:tag the filtered catalog lists (newest versions)


CHANNEL = "stable-4.18"
_RELEASE_REPO = "quay.io/openshift-release-dev/ocp-release"


def filter_tag(seed: int, month: int) -> str:
    """The filtered catalog's name: oc-mirror's md5 of its filter (here a function of the
    month, as the catalog it filters changes each month; not of the seed, so that
    samples of any seed name the same images)."""
    return rng(0, "catalog-filter", month).randbytes(16).hex()


def files(facts: MonthFacts) -> dict[str, bytes]:
    """Paths relative to working-dir and their bytes."""
    return {
        **_hold_release(facts),
        **_graph_data(facts),
        **_signatures(facts),
        **_catalogs(facts),
        **_helm(facts),
        **_logs(facts),
        **_cluster_resources(facts),
        "graph-preparation/cincinnati-graph-data.tar.gz": _random(facts, "graph-data", 8192),
    }


def image_set_config(facts: MonthFacts) -> bytes:
    lines = [
        "kind: ImageSetConfiguration",
        "apiVersion: mirror.openshift.io/v2alpha1",
        "mirror:",
        "  platform:",
        "    graph: true",
        "    channels:",
        f"    - name: {CHANNEL}",
        "      minVersion: 4.18.1",
        f"      maxVersion: {facts.version}",
        "  operators:",
        f"  - catalog: registry.redhat.io/{CATALOG[0]}:{CATALOG[1]}",
        "    platforms:",
        "    - os: linux",
        "      architecture: amd64",
        "    packages:",
        *(f"    - name: {repo.rsplit('/', 1)[-1]}" for repo in facts.operators),
        "  additionalImages:",
        *(f"  - name: registry.redhat.io/additional/{name}" for name in facts.additional),
        "  helm:",
        "    repositories:",
        f"    - name: {_HELM_CHART[0]}",
        "      url: https://stefanprodan.github.io/podinfo",
        "      charts:",
        f"      - name: {_HELM_CHART[0]}",
        f"        version: {_HELM_CHART[1]}",
    ]
    return ("\n".join(lines) + "\n").encode()


def _hold_release(facts: MonthFacts) -> dict[str, bytes]:
    base = f"hold-release/ocp-release/{facts.version}-x86_64/release-manifests"
    references = {
        "kind": "ImageStream",
        "apiVersion": "image.openshift.io/v1",
        "metadata": {"name": facts.version},
        "spec": {
            "tags": [
                {"name": name, "from": {"kind": "DockerImage", "name": f"{_UPSTREAM}@{digest}"}}
                for name, digest in sorted(facts.components.items())
            ]
        },
    }
    metadata = {
        "kind": "cincinnati-metadata-v0",
        "version": facts.version,
        "previous": [f"4.18.{m}" for m in range(1, facts.month)],
        "metadata": {"url": f"https://access.redhat.com/errata/RHSA-2026:{1000 + facts.month}"},
    }
    return {
        f"{base}/image-references": _json(references),
        f"{base}/release-metadata": _json(metadata),
    }


def _graph_data(facts: MonthFacts) -> dict[str, bytes]:
    """The Cincinnati graph mirror-to-disk saved for the channel: every release so far."""
    versions = sorted(facts.releases, key=lambda v: [int(p) for p in v.split(".")])
    graph = {
        "nodes": [
            {
                "version": version,
                "payload": f"{_RELEASE_REPO}@{facts.releases[version]}",
                "metadata": {"io.openshift.upgrades.graph.release.channels": CHANNEL},
            }
            for version in versions
        ],
        "edges": [[n, n + 1] for n in range(len(versions) - 1)],
        "conditionalEdges": [],
    }
    return {f"hold-release/cincinnati-graph-data/amd64-{CHANNEL}.json": _json(graph)}


def _signatures(facts: MonthFacts) -> dict[str, bytes]:
    name = f"signatures/{facts.version}-x86_64-{facts.release_digest.replace(':', '-')}"
    return {name: _random(facts, "signature", 566)}


def _catalogs(facts: MonthFacts) -> dict[str, bytes]:
    hexpart = facts.catalog_digest.removeprefix("sha256:")
    name = CATALOG[0].rsplit("/", 1)[-1]
    chosen = filter_tag(facts.seed, facts.month)
    base = f"operator-catalogs/{name}/{hexpart}/filtered-catalogs/{chosen}"
    documents: list[dict[str, object]] = []
    for image in facts.operator_images:
        repo, version = image.rsplit(":", 1)
        package = repo.rsplit("/", 1)[-1]
        reference = f"registry.redhat.io/{image}"
        documents += [
            {"schema": "olm.package", "name": package, "defaultChannel": "stable"},
            {
                "schema": "olm.bundle",
                "name": f"{package}.v{version}",
                "package": package,
                "image": reference,
                "relatedImages": [{"name": package, "image": reference}],
            },
        ]
    # One file holding every package's documents: a declarative config may be one
    # stream of JSON documents (opm writes one per package; the tiny sample keeps its
    # file count low).
    return {
        f"{base}/digest": facts.catalog_digest.encode(),
        f"{base}/declarative-config/catalog.json": b"".join(_json(d) for d in documents),
    }


def _helm(facts: MonthFacts) -> dict[str, bytes]:
    if facts.month != 1:
        return {}
    name, version = _HELM_CHART
    index = f"apiVersion: v1\nentries:\n  {name}:\n  - version: {version}\n"
    return {
        f"helm/charts/{name}-{version}.tgz": _random(facts, "helm", 4096),
        f"helm/indexes/{name}/index.yaml": index.encode(),
    }


def _logs(facts: MonthFacts) -> dict[str, bytes]:
    stamp = rfc3339(month_time(facts.month))
    lines = [f"{stamp} [INFO] : mirror-to-disk: {image} copied" for image in facts.mirrored]
    day = stamp[:10]
    return {f"logs/mirror-to-disk-{day}.log": ("\n".join(lines) + "\n").encode()}


def _cluster_resources(facts: MonthFacts) -> dict[str, bytes]:
    mirrors = "".join(
        f"  - mirrors:\n    - {_MIRROR}/{repo}\n    source: registry.redhat.io/{repo}\n"
        for repo in facts.repositories
        if repo != RELEASE_REPO
    )
    header = "apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n"
    api = "config.openshift.io/v1"
    idms = header.format(api=api, kind="ImageDigestMirrorSet", name="idms-operator-0")
    itms = header.format(api=api, kind="ImageTagMirrorSet", name="itms-generic-0")
    catalog = header.format(
        api="operators.coreos.com/v1alpha1", kind="CatalogSource", name="cs-redhat-operator-index"
    )
    update = header.format(
        api="updateservice.operator.openshift.io/v1", kind="UpdateService", name="update-service"
    )
    texts = {
        "cluster-resources/idms-oc-mirror.yaml": (idms + "  imageDigestMirrors:\n" + mirrors),
        "cluster-resources/itms-oc-mirror.yaml": (itms + "  imageTagMirrors:\n" + mirrors),
        "cluster-resources/cs-redhat-operator-index-v4-18.yaml": (
            f"{catalog}  image: {_MIRROR}/{CATALOG[0]}@{facts.catalog_digest}\n"
        ),
        "cluster-resources/updateService.yaml": f"{update}  graphDataImage: {_MIRROR}/graph\n",
    }
    return {name: text.encode() for name, text in texts.items()}


def _random(facts: MonthFacts, what: str, size: int) -> bytes:
    return rng(facts.seed, "working-dir", what, facts.month).randbytes(size)


def _json(body: object) -> bytes:
    return json.dumps(body, indent=2).encode() + b"\n"
