"""Image references split as oc-mirror v2 splits them.

Modelled on internal/pkg/image/image.go `ParseRef` (openshift/oc-mirror, commit
855b64a3), read, not copied: an optional `transport://`; `@algorithm:hex` is the
digest; a `:tag` counts only after the first `/` (or with no `/` at all); the first
`/`-separated component is the domain and the rest the path component.
"""

from __future__ import annotations

from dataclasses import dataclass

DOCKER = "docker://"


class RefError(ValueError):
    """Not an image reference oc-mirror could use; the text says why."""


@dataclass(frozen=True, slots=True)
class ImageRef:
    transport: str  # "docker://" unless another is named
    name: str  # without tag and digest
    domain: str
    path: str  # oc-mirror's PathComponent
    tag: str
    algorithm: str
    digest: str  # the hex part only

    @property
    def by_digest_only(self) -> bool:
        return not self.tag and bool(self.digest)

    @property
    def component(self) -> str:
        """The last path component (oc-mirror's ComponentName)."""
        return self.path.rsplit("/", 1)[-1]

    @property
    def without_transport(self) -> str:
        out = self.name + (f":{self.tag}" if self.tag else "")
        return out + (f"@{self.algorithm}:{self.digest}" if self.digest else "")


def parse_ref(text: str) -> ImageRef:
    transport, rest = DOCKER, text
    if "://" in text:
        scheme, _, rest = text.partition("://")
        transport = scheme + "://"
    name, algorithm, digest, tag = rest, "", "", ""
    if "@" in name:
        name, _, full = name.partition("@")
        algorithm, _, digest = full.partition(":")
        if not (algorithm and digest and digest.isalnum()):
            raise RefError(f"{text}: invalid digest")
    if ":" in name and transport == DOCKER:
        colon, slash = name.rfind(":"), name.find("/")
        if slash < 0 or colon > slash:
            name, tag = name[:colon], name[colon + 1 :]
    if not name:
        raise RefError(f"{text}: the reference names no image")
    if transport == DOCKER and not tag and not digest:
        raise RefError(f"{text}: neither a tag nor a digest")
    domain, path = "", name
    if transport == DOCKER and "/" in name:
        domain, path = name.split("/", 1)
    return ImageRef(transport, name, domain, path, tag, algorithm, digest)
