"""Image layers made of real bytes: a gzip stream of a tar of random files.

The gzip stream uses stored (uncompressed) deflate blocks written here rather than by
zlib, so that generating a gigabyte costs little more than copying it and the bytes do
not depend on the zlib build: the same key and seed give the same layer everywhere.
"""

from __future__ import annotations

import hashlib
import random
import struct
import zlib
from dataclasses import dataclass

from syncd.sample import tarformat

_STORED_MAX = 0xFFFF  # largest stored deflate block
_GZIP_HEADER = bytes((0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 3))  # no name, mtime 0, unix
_LAYER_FILE_MTIME = 1_700_000_000  # fixed, so that a layer's bytes depend on its key only


def rng(seed: int, *parts: object) -> random.Random:
    """A generator for one named purpose: independent of the order things are built in."""
    label = "/".join(str(part) for part in (seed, *parts))
    return random.Random(label)  # noqa: S311 - sample content, not secrets


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Layer:
    key: str  # names the content; recorded in the image config's history
    digest: str  # of the gzip blob
    size: int  # of the gzip blob
    diff_id: str  # digest of the uncompressed tar


@dataclass(frozen=True, slots=True)
class LayerBlob:
    layer: Layer
    data: bytes


def build_layer(seed: int, key: str, size: int, file_size: int) -> LayerBlob:
    """A layer holding about `size` bytes of random files, none over `file_size`."""
    tar = _random_tar(rng(seed, "layer", key), key, size, file_size)
    blob = gzip_stored(tar)
    layer = Layer(key, sha256_digest(blob), len(blob), sha256_digest(tar))
    return LayerBlob(layer, blob)


def _random_tar(gen: random.Random, key: str, size: int, file_size: int) -> bytes:
    parts: list[bytes] = []
    folder = "usr/share/sample/" + key.replace("/", "-")
    remaining, index = max(size, 1), 0
    while remaining > 0:
        length = min(remaining, gen.randint(max(1, file_size // 4), file_size))
        name = f"{folder}/file-{index:04d}.bin"
        parts += (tarformat.member_header(name, length, 0o644, _LAYER_FILE_MTIME),)
        parts += (gen.randbytes(length), tarformat.padding(length))
        remaining -= length
        index += 1
    parts.append(tarformat.END_OF_ARCHIVE)
    return b"".join(parts)


def gzip_stored(data: bytes) -> bytes:
    """A gzip member holding `data` in stored deflate blocks."""
    view = memoryview(data)
    parts = [_GZIP_HEADER]
    starts = range(0, len(data), _STORED_MAX) if data else range(1)
    last = starts[-1]
    for start in starts:
        chunk = view[start : start + _STORED_MAX]
        size = len(chunk)
        parts.append(struct.pack("<BHH", start == last, size, size ^ 0xFFFF))
        parts.append(bytes(chunk))
    parts.append(struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF))
    return b"".join(parts)
