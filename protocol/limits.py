"""Limits on everything decoded from a peer or from media.

Each limit bounds memory before allocation: msgpack's unpacker checks declared lengths
against these before it allocates, so a hostile 4-byte header cannot ask for 4 GiB.
"""

from __future__ import annotations

from dataclasses import dataclass

# One size for the whole project: ordinary files and tar members are cut into pieces of
# this many bytes from their first byte (docs/DESIGN.md, Identity).
CHUNK_SIZE = 16 * 1024 * 1024

DIGEST_SIZE = 32  # BLAKE3-256


@dataclass(frozen=True, slots=True)
class Limits:
    max_frame: int = CHUNK_SIZE + 64 * 1024  # one blob plus its envelope
    max_str: int = 64 * 1024
    max_bin: int = CHUNK_SIZE
    max_array: int = 1_000_000
    max_map: int = 256
    max_name_bytes: int = 255  # NAME_MAX on Linux
    max_path_bytes: int = 4096  # PATH_MAX on Linux
    max_symlink_bytes: int = 4096
    max_tree_children: int = 1_000_000
    max_recipe_pieces: int = 1_000_000


DEFAULT_LIMITS = Limits()
