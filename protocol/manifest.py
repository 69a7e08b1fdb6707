"""The transfer manifest of an export: what it carries, for a reviewer (SPEC.md 9.9). Sans-IO.

Every index of a format-2 export (data and parity volumes alike) holds one, right after
its FILES frame, so the index's checksum, and its signature when it is signed, cover it:

- MANIFEST: the basis the export was computed against (in words, and the far snapshot
  id when there was one) and how many image and path entries follow;
- IMAGES: each registry tag the export adds, changes or removes (registry folder,
  repository, tag, manifest digest, the digest before, platforms);
- CHANGES: each file or symlink it adds, changes or removes, with its size and content
  id (BLAKE3-256 over the file's piece list: the identity every piece is verified
  against on import).

Strings are checked where they are decoded (tags and repositories as the registry names
them, paths as tree paths), so a shown manifest never carries a path escaping its root;
what a terminal might misread (control characters in file names) is escaped where it is
printed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum

from protocol.errors import ErrorCode, ProtocolError
from protocol.fields import array, digest, fixed, uint
from protocol.media import Kind, _batched, _frame, _Frames
from protocol.paths import check_relpath

MAX_PLATFORMS = 256
MAX_BASIS_TEXT = 1024

# As distribution names them (reference/regexp.go): path components of lowercase
# alphanumerics and separators; tags of word characters, '.', '-', at most 128.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-f]{32,256}")
_PLATFORM = re.compile(r"[0-9A-Za-z._-]{1,32}(?:/[0-9A-Za-z._-]{1,32}){0,3}")


class Change(IntEnum):
    ADDED = 0
    CHANGED = 1
    REMOVED = 2

    @property
    def word(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class ImageChange:
    change: Change
    registry: str  # the registry storage folder (`.../docker/registry/v2`) in the tree
    repository: str
    tag: str
    digest: str  # the manifest digest the tag names now ("" when removed or unreadable)
    previous: str  # the digest it named before ("" when added or not known)
    platforms: tuple[str, ...]  # "os/arch[/variant]" of the image or its index children

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True, slots=True)
class PathChange:
    change: Change
    path: str
    size: int  # 0 for a removal or a symlink
    content: bytes | None  # content id of a file added or changed; None otherwise


@dataclass(frozen=True, slots=True)
class TransferManifest:
    basis: str  # what the export was computed against, in words
    basis_root: bytes | None  # the far snapshot id of that basis (None: no basis)
    images: tuple[ImageChange, ...]
    paths: tuple[PathChange, ...]

    def counts(self) -> dict[str, int]:
        """Added, changed and removed paths and images, for summaries."""
        out: dict[str, int] = {}
        for kind, entries in (("images", self.images), ("files", self.paths)):
            for change in Change:
                out[f"{kind}_{change.word}"] = sum(1 for e in entries if e.change is change)
        return out


def valid_image(repository: str, tag: str, platforms: tuple[str, ...]) -> bool:
    """Whether an image change with these names can be encoded (a registry serves no
    other names; an encoder leaves such a folder out)."""
    return (
        _REPOSITORY.fullmatch(repository) is not None
        and _TAG.fullmatch(tag) is not None
        and all(_PLATFORM.fullmatch(p) for p in platforms)
    )


# -- encoding --------------------------------------------------------------------------------


def encode_manifest(manifest: TransferManifest) -> bytes:
    """The MANIFEST, IMAGES and CHANGES frames of `manifest`, the same in every volume."""
    m = manifest
    head = _frame(Kind.MANIFEST, m.basis, m.basis_root, len(m.images), len(m.paths))
    images: list[list[object]] = [
        [int(i.change), i.registry, i.repository, i.tag, i.digest, i.previous, list(i.platforms)]
        for i in m.images
    ]
    paths: list[list[object]] = [[int(p.change), p.path, p.size, p.content] for p in m.paths]
    return head + _batched(Kind.IMAGES, images) + _batched(Kind.CHANGES, paths)


# -- decoding --------------------------------------------------------------------------------


def decode_manifest(frames: _Frames) -> TransferManifest:
    """The manifest frames that come next in `frames`."""
    f = frames.expect(Kind.MANIFEST, 4)
    basis = _text(f[0], "manifest basis", MAX_BASIS_TEXT)
    basis_root = None if f[1] is None else digest(f[1], "manifest basis snapshot")
    image_count = uint(f[2], "manifest image count")
    path_count = uint(f[3], "manifest path count")
    images = tuple(_image(item) for items in frames.each(Kind.IMAGES) for item in items)
    paths = tuple(_path(item) for items in frames.each(Kind.CHANGES) for item in items)
    if len(images) != image_count or len(paths) != path_count:
        raise ProtocolError(
            ErrorCode.MALFORMED,
            f"manifest announces {image_count} images and {path_count} paths, "
            f"holds {len(images)} and {len(paths)}",
        )
    return TransferManifest(basis, basis_root, images, paths)


def _change(value: object, what: str) -> Change:
    return Change(uint(value, what, 0, len(Change) - 1))


def _text(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit or not value.isprintable():
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: expected printable text")
    return value


def _matching(value: object, pattern: re.Pattern[str], what: str, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: expected a string")
    if (value or not empty) and pattern.fullmatch(value) is None:
        raise ProtocolError(ErrorCode.MALFORMED, f"{what} {value[:80]!r} is not well-formed")
    return value


def _image(item: object) -> ImageChange:
    change, registry, repository, tag, digest, previous, platforms = fixed(item, "image", 7)
    listed = array(platforms, "image platforms")
    if len(listed) > MAX_PLATFORMS:
        raise ProtocolError(ErrorCode.LIMIT, f"more than {MAX_PLATFORMS} platforms")
    return ImageChange(
        _change(change, "image change"),
        check_relpath(registry),
        _matching(repository, _REPOSITORY, "repository"),
        _matching(tag, _TAG, "tag"),
        _matching(digest, _DIGEST, "image digest", empty=True),
        _matching(previous, _DIGEST, "previous image digest", empty=True),
        tuple(_matching(p, _PLATFORM, "platform") for p in listed),
    )


def _path(item: object) -> PathChange:
    change, path, size, content = fixed(item, "path change", 4)
    return PathChange(
        _change(change, "path change"),
        check_relpath(path),
        uint(size, "path size"),
        None if content is None else digest(content, "content id"),
    )


__all__ = [
    "Change",
    "ImageChange",
    "PathChange",
    "TransferManifest",
    "decode_manifest",
    "encode_manifest",
    "valid_image",
]
