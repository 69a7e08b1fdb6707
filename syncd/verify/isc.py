"""What an image set config asks to mirror, read from the copy in the archives.

Only what decides which working-dir parts disk-to-mirror needs: a platform release
(and its graph image), operator catalogs, helm charts, additional images. No YAML
library is a dependency, so this is a small indentation-aware key scanner: it follows
`key:` lines (list items included) and their nesting, ignoring comments and values it
does not need. It reads the image set configs oc-mirror writes and users write; exotic
YAML (flow style, anchors) would be read as asking for less.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_KEY = re.compile(r"^(?P<indent>\s*)(?P<dash>-\s+)?(?P<key>[A-Za-z][\w.-]*):\s*(?P<value>.*)$")


@dataclass(frozen=True, slots=True)
class ImageSetKinds:
    release: bool = False  # mirror.platform with channels or a release
    graph: bool = False  # mirror.platform.graph: true
    catalogs: tuple[str, ...] = ()  # mirror.operators[].catalog
    helm: bool = False  # mirror.helm.repositories or mirror.helm.local
    additional: bool = False  # mirror.additionalImages


def parse_image_set_config(text: str) -> ImageSetKinds:
    release = graph = helm = additional = False
    catalogs: list[str] = []
    for path, value in _keys(text):
        if path[:1] != ["mirror"]:
            continue
        section, key = path[1:2], path[-1]
        if section == ["platform"]:
            release = release or key in ("channels", "release")
            graph = graph or (path == ["mirror", "platform", "graph"] and value == "true")
        elif section == ["operators"] and key == "catalog" and value:
            catalogs.append(value)
        elif section == ["helm"]:
            helm = helm or (len(path) == 3 and key in ("repositories", "local"))
        elif path == ["mirror", "additionalImages"]:
            additional = True
    return ImageSetKinds(release, graph, tuple(catalogs), helm, additional)


def _keys(text: str) -> list[tuple[list[str], str]]:
    """Each `key: value` with the keys it is nested under (list items are transparent)."""
    found: list[tuple[list[str], str]] = []
    stack: list[tuple[int, str]] = []
    for line in text.splitlines():
        match = _KEY.match(line.split(" #", 1)[0].rstrip())
        if match is None or line.lstrip().startswith("#"):
            continue
        indent = len(match["indent"]) + len(match["dash"] or "")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        found.append(([key for _, key in stack], match["value"].strip().strip("'\"")))
    return found


def catalog_name(reference: str) -> str:
    """`registry.redhat.io/redhat/redhat-operator-index:v4.18` -> `redhat-operator-index`."""
    last = reference.rstrip("/").rsplit("/", 1)[-1]
    return re.split(r"[:@]", last, maxsplit=1)[0]


def catalog_repository(reference: str) -> str:
    """The repository a catalog is cached under: the reference without host and tag."""
    without_scheme = reference.split("://", 1)[-1]
    path = without_scheme.split("/", 1)[1] if "/" in without_scheme else without_scheme
    return re.split(r"@|:(?=[^/]*$)", path, maxsplit=1)[0]
