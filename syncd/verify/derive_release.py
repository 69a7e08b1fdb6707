"""Release images as disk-to-mirror derives them, from working-dir only.

Modelled on openshift/oc-mirror (commit 855b64a3; read, not copied):
- internal/pkg/release/cincinnati.go `GetReleaseReferenceImages`: `platform.release`
  names one payload (by tag, its digest is asked of its registry: the internet);
  otherwise each channel, for each architecture (`multi` under `platform.platforms`,
  else `platform.architectures`, else amd64), reads the saved Cincinnati graph,
  core-cincinnati.go `loadGraphDataFromDisk`:
  `working-dir/hold-release/cincinnati-graph-data/<arch>-<channel>.json`, and takes the
  nodes between the channel's minVersion and maxVersion (each defaulting to the graph's
  first and last; heads-only: min = max).
- signature.go `GenerateReleaseSignatures`: for each payload digest, the first file
  of `working-dir/signatures` (name order) whose name contains the digest, non-empty;
  without one it fetches the signature from mirror.openshift.com (the internet). The
  signed identity gives the release's tag; oc-mirror wrote the file as
  `<tag>-sha256-<digest>`, so verify reads the tag from that name (it does not check
  the PGP signature itself).
- local_stored_collector.go `collectImageFromDisk`: the payload is copied as
  `openshift/release-images:<tag>`; its components, read from
  `working-dir/hold-release/<repo>/<tag>/release-manifests/image-references`, as
  `openshift/release:<tag>-<name>`; with `graph: true`, `openshift/graph-image:latest`,
  which must be in the cache. `platform.platforms` filters every release image but the
  graph image.

Not modelled: shortestPath and several channels (oc-mirror computes an upgrade path;
verify checks the whole range, a superset), kubeVirtContainer.
"""

from __future__ import annotations

import json
import re
from typing import Any

from syncd.verify.derive import Collect, cache_name
from syncd.verify.imageref import parse_ref
from syncd.verify.imageset import DEFAULT_ARCH, Channel

RELEASE_REPO = "openshift/release-images"
COMPONENT_REPO = "openshift/release"
GRAPH = ("openshift/graph-image", "latest")
GRAPH_DATA = "hold-release/cincinnati-graph-data"
_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+.*)?")
_INTERNET = "disk-to-mirror would fetch it from the internet, which fails on an air-gapped host"


def collect_releases(run: Collect) -> None:
    platform = run.config.platform
    payloads = _payloads(run)
    if run.out.errors:
        return
    for payload in payloads:
        _release(run, payload)
    if platform.graph and not run.out.errors:
        _graph(run)


def _payloads(run: Collect) -> list[str]:
    platform = run.config.platform
    if platform.release:
        ref = run.parse(platform.release, "platform.release")
        if ref is None:
            return []
        if not ref.digest:
            run.out.errors.append(
                f"platform.release {platform.release} names the release by tag: disk-to-mirror "
                f"asks its registry for the digest; {_INTERNET}"
            )
            return []
        return [f"{ref.name}@{ref.algorithm}:{ref.digest}"]
    archs = ["multi"] if platform.platforms else list(platform.architectures or [DEFAULT_ARCH])
    if len(platform.channels) > 1 or any(c.shortest_path for c in platform.channels):
        run.out.notes.append(
            "shortestPath and several channels: oc-mirror computes an upgrade path; verify "
            "checks every release in each channel's range (a superset)"
        )
    if platform.kubevirt:
        run.out.notes.append("kubeVirtContainer: the KubeVirt image is not derived")
    found: list[str] = []
    for arch in archs:
        for channel in platform.channels:
            found += _channel(run, arch, channel)
    if not found and platform.channels and not run.out.errors:
        run.out.errors.append("no release images found in the channels' graph data")
    return sorted(set(found))


def _channel(run: Collect, arch: str, channel: Channel) -> list[str]:
    rel = f"{GRAPH_DATA}/{arch}-{channel.name}.json"
    missing = (
        f"disk-to-mirror reads channel {channel.name}'s releases from it "
        "(`No graph data found on disk`)"
    )
    data = run.need(rel, f"the update graph of channel {channel.name} ({arch})", missing)
    if data is None:
        return []
    nodes = _nodes(data)
    if nodes is None:
        run.out.errors.append(f"working-dir/{rel} is not a Cincinnati graph (JSON with nodes)")
        return []
    versions = sorted(key for key in nodes if key is not None)
    if not versions:
        run.out.errors.append(f"working-dir/{rel}: no versions in channel {channel.name}")
        return []
    high = _version(channel.max_version) if channel.max_version else versions[-1]
    if channel.min_version:
        low = _version(channel.min_version)
    else:  # resolveChannelVersions: heads-only takes the latest alone
        low = high if not channel.full and not channel.max_version else versions[0]
    if high is None or low is None:
        run.out.errors.append(f"channel {channel.name}: a version bound is not semver")
        return []
    return [payload for key, payload in nodes.items() if key and low <= key <= high]


_Key = tuple[int, int, int, int, str]


def _version(text: str) -> _Key | None:
    match = _VERSION.fullmatch(text.strip())
    if match is None:
        return None
    major, minor, patch, pre = match.groups()
    # A pre-release sorts before its release.
    return (int(major), int(minor), int(patch), 0 if pre else 1, pre or "")


def _nodes(data: bytes) -> dict[_Key | None, str] | None:
    try:
        graph = json.loads(data)
    except ValueError:
        return None
    nodes = graph.get("nodes") if isinstance(graph, dict) else None
    if not isinstance(nodes, list):
        return None
    found: dict[_Key | None, str] = {}
    for node in nodes:
        if isinstance(node, dict) and isinstance(node.get("payload"), str):
            found[_version(str(node.get("version", "")))] = node["payload"]
    return found


def _release(run: Collect, payload: str) -> None:
    ref = parse_ref(payload)
    filters = run.config.platform.platforms
    names = [n for n in run.wd.names("signatures") if ref.digest and ref.digest in n]
    signature = names[0] if names else None
    data = (
        run.open(f"signatures/{signature}", f"the signature of release {payload}")
        if signature
        else None
    )
    if not data:
        shown = f"working-dir/signatures/<tag>-sha256-{ref.digest}"
        run.out.errors.append(
            f"no release signature for {payload}: {shown} is missing or empty; {_INTERNET}"
        )
        return
    assert signature is not None
    tag = signature.split("-sha256-", 1)[0] if "-sha256-" in signature else ""
    if not tag:
        run.out.errors.append(
            f"working-dir/signatures/{signature}: not named `<tag>-sha256-<digest>` as "
            "oc-mirror names it, so the release's tag cannot be told"
        )
        return
    run.add(cache_name(RELEASE_REPO, tag), "release", f"{ref.name}:{tag}", filters)
    folder = f"hold-release/{ref.component}/{tag}/release-manifests/image-references"
    missing = f"disk-to-mirror lists release {tag}'s component images from it"
    references = run.need(folder, f"the component images of release {tag}", missing)
    if references is None:
        return
    components = _components(references)
    if components is None:
        run.out.errors.append(f"working-dir/{folder} is not an image stream (JSON)")
        return
    for name, image in components:
        run.add(cache_name(COMPONENT_REPO, f"{tag}-{name}"), "release-component", image, filters)


def _components(data: bytes) -> list[tuple[str, str]] | None:
    try:
        stream: Any = json.loads(data)
        tags = stream["spec"]["tags"]
        return [(str(t["name"]), str(t["from"]["name"])) for t in tags]
    except (ValueError, KeyError, TypeError):
        return None


def _graph(run: Collect) -> None:
    repo, tag = GRAPH
    origin = f"localhost:55000/{repo}:{tag}"
    if run.cache.resolve(repo, tag) is None:
        run.out.errors.append(
            f"{repo}:{tag} is not in the cache after extraction: disk-to-mirror stops with "
            "`unable to find graph image in local cache`"
        )
    run.add(cache_name(repo, tag), "graph", origin)
