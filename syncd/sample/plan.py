"""Which images each month adds, as pure data: names, formats and layer keys.

A layer key names a layer's content (its bytes are a function of the key and the seed),
so two images that share a key share the layer. Month 1 mirrors a release, its
components, a catalog, operators, additional images and the graph image. Each later
month is oc-mirror's next run after the channel moved: a new release whose components
mostly keep their layers, new versions of some operators, one new additional image, and
a rebuilt catalog and graph image whose tags move.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from syncd.sample.images import DOCKER, OCI, Family
from syncd.sample.layers import rng
from syncd.sample.spec import SampleSpec

ARCHES = ("amd64", "arm64", "ppc64le")
CATALOG = ("redhat/redhat-operator-index", "v4.18")
GRAPH = ("openshift/graph-image", "latest")
RELEASE_REPO = "openshift/release"
RELEASE_IMAGES_REPO = "openshift/release-images"
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
_OPERATOR_CHANGE = 0.3

_COMPONENTS = (
    "cli",
    "agent-installer-api-server",
    "baremetal-installer",
    "cluster-authentication-operator",
    "cluster-autoscaler",
    "cluster-bootstrap",
    "cluster-config-operator",
    "cluster-dns-operator",
    "cluster-etcd-operator",
    "cluster-image-registry-operator",
    "cluster-ingress-operator",
    "cluster-kube-apiserver-operator",
    "cluster-kube-controller-manager-operator",
    "cluster-kube-scheduler-operator",
    "cluster-machine-approver",
    "cluster-monitoring-operator",
    "cluster-network-operator",
    "cluster-node-tuning-operator",
    "cluster-policy-controller",
    "cluster-samples-operator",
    "cluster-storage-operator",
    "cluster-version-operator",
    "console",
    "console-operator",
    "coredns",
    "csi-snapshot-controller",
    "docker-builder",
    "etcd",
    "haproxy-router",
    "hyperkube",
    "installer",
    "keepalived-ipfailover",
    "kube-proxy",
    "kube-rbac-proxy",
    "machine-api-operator",
    "machine-config-operator",
    "multus-cni",
    "oauth-proxy",
    "oauth-server",
    "openshift-apiserver",
    "openshift-controller-manager",
    "operator-lifecycle-manager",
    "ovn-kubernetes",
    "pod",
    "prometheus",
    "prometheus-operator",
    "rhel-coreos",
    "tests",
    "thanos",
)
_OPERATORS = (
    ("rhbk/keycloak-rhel9", "26.0"),  # the sparse index: only amd64 is mirrored
    # A repository name of 32+ characters early: its cosign `.sig` tag paths need PAX
    # records in the archives, even in the tiny sample.
    ("openshift-gitops-1/gitops-rhel8-operator", "v1.14"),
    ("rhbk/keycloak-operator-bundle", "26.0"),
    ("rhbk/keycloak-rhel9-operator", "26.0"),
    ("openshift-gitops-1/argocd-rhel8", "v1.14"),
    ("openshift-gitops-1/gitops-operator-bundle", "v1.14"),
    ("odf4/odf-operator-bundle", "v4.18"),
    ("odf4/mcg-core-rhel9", "v4.18"),
    ("rhacm2/multicluster-operators-subscription-rhel9", "v2.12"),
    ("rhacm2/acm-operator-bundle", "v2.12"),
    ("openshift-logging/cluster-logging-rhel9-operator", "v6.1"),
    ("openshift-logging/logging-loki-rhel9", "v6.1"),
    ("compliance/openshift-compliance-rhel8-operator", "1.6"),
    ("quay/quay-operator-bundle", "v3.13"),
)
_ADDITIONAL = (
    ("ubi9/ubi", "9.5"),  # a Docker manifest list, amd64 and arm64 both mirrored
    ("ubi9/ubi-minimal", "9.5"),
    ("rhel9/postgresql-16", "1-40"),
    ("ubi9/python-312", "1-25"),
    ("ubi9/nginx-124", "1-30"),
    ("rhel9/redis-7", "1-22"),
    ("ubi9/openjdk-21", "1.21"),
)
_LATER_ADDITIONAL = (
    "rhel9/support-tools",
    "ubi9/go-toolset",
    "ubi9/nodejs-22",
    "ubi9/ruby-33",
    "ubi9/php-83",
    "ubi9/perl-538",
)


def month_time(month: int) -> datetime:
    """When month `month`'s mirror-to-disk ran: fixed, so trees are reproducible."""
    return _EPOCH + timedelta(days=30 * (month - 1))


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def release_version(month: int) -> str:
    return f"4.18.{month}"


@dataclass(frozen=True, slots=True)
class LayerSpec:
    key: str
    size: int


@dataclass(frozen=True, slots=True)
class PlatformPlan:
    arch: str
    layers: tuple[LayerSpec, ...]
    present: bool = True  # False: named by the index but not mirrored (a sparse index)


@dataclass(frozen=True, slots=True)
class ImagePlan:
    repo: str
    tag: str
    family: Family
    platforms: tuple[PlatformPlan, ...]
    indexed: bool  # True: the tag names an index (manifest list) over the platforms
    role: str  # release, component, graph, catalog, operator, additional

    @property
    def name(self) -> str:
        return f"{self.repo}:{self.tag}"


@dataclass(frozen=True, slots=True)
class Counts:
    components: int
    operators: int
    additional: int


def counts(spec: SampleSpec) -> Counts:
    operators = max(3, spec.images // 8)
    additional = max(2, spec.images // 10)
    return Counts(spec.images - 3 - operators - additional, operators, additional)


def plan_month(spec: SampleSpec, month: int) -> tuple[ImagePlan, ...]:
    """The images that month `month` adds to the cache, in push order."""
    return (
        *_release(spec, month),
        _catalog(spec, month),
        *_operators(spec, month),
        *_additional(spec, month),
        _graph(spec, month),
    )


def operator_repos(spec: SampleSpec) -> list[str]:
    return [repo for repo, _series in _pairs(_OPERATORS, counts(spec).operators)]


def estimated_cache_bytes(spec: SampleSpec) -> int:
    """Layer bytes month 1 stores (configs, manifests and tar overhead are small)."""
    sizes = {
        layer.key: layer.size
        for image in plan_month(spec, 1)
        for platform in image.platforms
        if platform.present
        for layer in platform.layers
    }
    return sum(sizes.values())


class _Layers:
    """Layer specs whose sizes depend only on the seed and the key."""

    def __init__(self, spec: SampleSpec) -> None:
        self.spec = spec

    def make(self, key: str, size: int) -> LayerSpec:
        return LayerSpec(
            key, max(1, round(size * rng(self.spec.seed, "size", key).uniform(0.7, 1.3)))
        )

    def base(self, arch: str, number: int) -> LayerSpec:
        size = self.spec.base_layer_size if arch == "amd64" else self.spec.base_layer_size // 2
        return self.make(f"base/{arch}/{number}", size)

    def app(self, key: str) -> LayerSpec:
        return self.make(key, self.spec.app_layer_size)


def _release(spec: SampleSpec, month: int) -> list[ImagePlan]:
    lay, version = _Layers(spec), release_version(month)
    payload = (lay.base("amd64", 0), lay.base("amd64", 1), lay.app(f"release/payload/m{month}"))
    plans = [_single(RELEASE_IMAGES_REPO, f"{version}-x86_64", DOCKER, payload, "release")]
    for number, component in enumerate(_names(_COMPONENTS, counts(spec).components)):
        changed = _last_change(spec, f"component/{component}", month, spec.change_fraction)
        layers = [lay.base("amd64", 0), lay.base("amd64", 1 + number % (spec.base_layers - 1))]
        layers.append(lay.app(f"release/{component}/m{changed}"))
        if number % 3 == 0:  # some components carry a second, never-changing layer
            layers.append(lay.app(f"release/{component}/extra"))
        tag = f"{version}-x86_64-{component}"
        plans.append(_single(RELEASE_REPO, tag, DOCKER, tuple(layers), "component"))
    return plans


def _catalog(spec: SampleSpec, month: int) -> ImagePlan:
    lay = _Layers(spec)
    platforms = tuple(
        PlatformPlan(arch, (lay.base(arch, 0), lay.app(f"catalog/{arch}/m{month}")))
        for arch in ARCHES
    )
    return ImagePlan(*CATALOG, OCI, platforms, indexed=True, role="catalog")


def _operators(spec: SampleSpec, month: int) -> list[ImagePlan]:
    lay, plans = _Layers(spec), []
    chosen = _pairs(_OPERATORS, counts(spec).operators)
    for number, (repo, series) in enumerate(chosen):
        what = f"operator/{repo}"
        changes = _changes(spec, what, month, _OPERATOR_CHANGE, turn=number, every=len(chosen))
        if month > 1 and changes[-1] != month:
            continue
        tag = f"{series}.{len(changes) - 1}"
        if number == 0:
            plans.append(_sparse_operator(lay, repo, tag, month))
            continue
        layers = (
            lay.base("amd64", 0),
            lay.base("amd64", spec.base_layers - 1),
            lay.app(f"operator/{repo}/m{month}"),
        )
        plans.append(_single(repo, tag, OCI, layers, "operator"))
    return plans


def _sparse_operator(lay: _Layers, repo: str, tag: str, month: int) -> ImagePlan:
    platforms = tuple(
        PlatformPlan(
            arch,
            (lay.base(arch, 0), lay.app(f"operator/{repo}/{arch}/m{month}")),
            present=arch == "amd64",
        )
        for arch in ARCHES
    )
    return ImagePlan(repo, tag, OCI, platforms, indexed=True, role="operator")


def _additional(spec: SampleSpec, month: int) -> list[ImagePlan]:
    lay = _Layers(spec)
    if month > 1:
        name = _LATER_ADDITIONAL[(month - 2) % len(_LATER_ADDITIONAL)]
        layers = (lay.base("amd64", 0), lay.app(f"additional/{name}/m{month}"))
        return [_single(f"additional/{name}", f"1-{month}", OCI, layers, "additional")]
    plans = []
    for number, (name, tag) in enumerate(_pairs(_ADDITIONAL, counts(spec).additional)):
        if number == 0:
            plans.append(_docker_list(lay, f"additional/{name}", tag))
            continue
        family = OCI if number % 2 else DOCKER
        layers = (lay.base("amd64", 0), lay.app(f"additional/{name}"))
        plans.append(_single(f"additional/{name}", tag, family, layers, "additional"))
    return plans


def _docker_list(lay: _Layers, repo: str, tag: str) -> ImagePlan:
    platforms = tuple(
        PlatformPlan(arch, (lay.base(arch, 0), lay.app(f"{repo}/{arch}"))) for arch in ARCHES[:2]
    )
    return ImagePlan(repo, tag, DOCKER, platforms, indexed=True, role="additional")


def _graph(spec: SampleSpec, month: int) -> ImagePlan:
    lay = _Layers(spec)
    layers = (lay.base("amd64", 0), lay.make(f"graph/m{month}", spec.graph_layer_size))
    return _single(*GRAPH, OCI, layers, "graph")


def _single(
    repo: str, tag: str, family: Family, layers: tuple[LayerSpec, ...], role: str
) -> ImagePlan:
    return ImagePlan(repo, tag, family, (PlatformPlan("amd64", layers),), False, role)


def _last_change(spec: SampleSpec, what: str, month: int, chance: float) -> int:
    """The latest month up to `month` in which `what` got new content (month 1 counts)."""
    return _changes(spec, what, month, chance)[-1]


def _changes(
    spec: SampleSpec, what: str, month: int, chance: float, *, turn: int = -1, every: int = 1
) -> list[int]:
    """The months up to `month` in which `what` changed: month 1, its turn, or by chance.

    `turn` and `every` give each of `every` items a month in which it surely changes, so
    that some operator always gets a new version.
    """
    return [1] + [
        candidate
        for candidate in range(2, month + 1)
        if candidate % every == turn or rng(spec.seed, "change", what, candidate).random() < chance
    ]


def _names(names: Sequence[str], count: int) -> list[str]:
    # Past the real names, numbered variants keep names unique for large samples.
    return [names[i] if i < len(names) else f"{names[i % len(names)]}-{i}" for i in range(count)]


def _pairs(pairs: tuple[tuple[str, str], ...], count: int) -> list[tuple[str, str]]:
    return [
        pairs[i]
        if i < len(pairs)
        else (f"{pairs[i % len(pairs)][0]}-{i}", pairs[i % len(pairs)][1])
        for i in range(count)
    ]
