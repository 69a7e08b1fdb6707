"""The ImageSetConfiguration disk-to-mirror is given with `-c`, read with a YAML parser.

The fields are those of internal/pkg/api/v2alpha1/type_config.go and type_platform.go
(openshift/oc-mirror, commit 855b64a3), read, not copied; only what disk-to-mirror's
collectors use is kept. A config that is not YAML, not a mapping, or not of kind
ImageSetConfiguration is a `ConfigError` naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

KIND = "ImageSetConfiguration"
DEFAULT_ARCH = "amd64"  # v2alpha1.DefaultPlatformArchitecture


class ConfigError(ValueError):
    """The image set config cannot be used; the text says why."""


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    type: str = "ocp"
    min_version: str = ""
    max_version: str = ""
    shortest_path: bool = False
    full: bool = False


@dataclass(frozen=True, slots=True)
class Platform:
    graph: bool = False
    channels: tuple[Channel, ...] = ()
    architectures: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()  # "os/arch", the sparse-manifest filter
    release: str = ""
    kubevirt: bool = False


@dataclass(frozen=True, slots=True)
class Operator:
    catalog: str
    target_catalog: str = ""
    target_tag: str = ""
    full: bool = False
    packages: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Additional:
    name: str
    target_repo: str = ""
    target_tag: str = ""
    platforms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Chart:
    repository: str  # the repository's URL
    name: str
    version: str = ""
    platforms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ImageSetConfig:
    platform: Platform = field(default_factory=Platform)
    operators: tuple[Operator, ...] = ()
    additional: tuple[Additional, ...] = ()
    charts: tuple[Chart, ...] = ()
    local_charts: tuple[str, ...] = ()
    blocked: tuple[str, ...] = ()  # regular expressions


def parse_config(text: str, where: str) -> ImageSetConfig:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {_first_line(exc)}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} is not an image set config (not a YAML mapping)")
    kind = data.get("kind")
    if kind != KIND:
        raise ConfigError(f"{where} is of kind {kind!r}, not {KIND}")
    mirror = _map(data.get("mirror"))
    return ImageSetConfig(
        platform=_platform(_map(mirror.get("platform"))),
        operators=tuple(_operator(_map(o)) for o in _list(mirror.get("operators"))),
        additional=tuple(_additional(_map(a)) for a in _list(mirror.get("additionalImages"))),
        charts=tuple(_charts(_map(mirror.get("helm")))),
        local_charts=tuple(
            _str(_map(c).get("name")) for c in _list(_map(mirror.get("helm")).get("local"))
        ),
        blocked=tuple(_str(_map(b).get("name")) for b in _list(mirror.get("blockedImages"))),
    )


def _platform(data: Mapping[str, Any]) -> Platform:
    channels = tuple(
        Channel(
            name=_str(c.get("name")),
            type=_str(c.get("type")) or "ocp",
            min_version=_str(c.get("minVersion")),
            max_version=_str(c.get("maxVersion")),
            shortest_path=c.get("shortestPath") is True,
            full=c.get("full") is True,
        )
        for c in map(_map, _list(data.get("channels")))
    )
    return Platform(
        graph=data.get("graph") is True,
        channels=channels,
        architectures=tuple(_str(a) for a in _list(data.get("architectures"))),
        platforms=_platforms(data.get("platforms")),
        release=_str(data.get("release")),
        kubevirt=data.get("kubeVirtContainer") is True,
    )


def _operator(data: Mapping[str, Any]) -> Operator:
    return Operator(
        catalog=_str(data.get("catalog")),
        target_catalog=_str(data.get("targetCatalog")),
        target_tag=_str(data.get("targetTag")),
        full=data.get("full") is True,
        packages=tuple(_str(_map(p).get("name")) for p in _list(data.get("packages"))),
        platforms=_platforms(data.get("platforms")),
    )


def _additional(data: Mapping[str, Any]) -> Additional:
    return Additional(
        name=_str(data.get("name")),
        target_repo=_str(data.get("targetRepo")),
        target_tag=_str(data.get("targetTag")),
        platforms=_platforms(data.get("platforms")),
    )


def _charts(helm: Mapping[str, Any]) -> list[Chart]:
    found = []
    for repo in map(_map, _list(helm.get("repositories"))):
        url = _str(repo.get("url"))
        for chart in map(_map, _list(repo.get("charts"))):
            found.append(
                Chart(
                    url,
                    _str(chart.get("name")),
                    _str(chart.get("version")),
                    _platforms(chart.get("platforms")),
                )
            )
    return found


def _platforms(value: object) -> tuple[str, ...]:
    return tuple(
        f"{_str(p.get('os'))}/{_str(p.get('architecture'))}" for p in map(_map, _list(value))
    )


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _str(value: object) -> str:
    return "" if value is None or isinstance(value, (dict, list)) else str(value)


def _first_line(exc: yaml.YAMLError) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
