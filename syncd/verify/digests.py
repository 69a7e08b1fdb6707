"""Digests as distribution writes them in link files: `sha256:<64 lowercase hex>`."""

from __future__ import annotations

import re

ALGORITHM = "sha256"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_LINK = re.compile(rb"sha256:[0-9a-f]{64}")
_HEX = re.compile(r"[0-9a-f]{64}")

# Bound methods, called directly on the hot path (a verify of a large tree checks
# hundreds of thousands of digests; a wrapper function would double the cost).
match_digest = _DIGEST.fullmatch
_match_link = _LINK.fullmatch


def is_digest(text: str) -> bool:
    return match_digest(text) is not None


def is_hex(text: str) -> bool:
    return _HEX.fullmatch(text) is not None


def hex_of(digest: str) -> str:
    """The hex part of a digest already known to be valid."""
    return digest[len(ALGORITHM) + 1 :]


def parse_link(raw: bytes) -> str | None:
    """The digest a link file names, or None when it holds anything else.

    distribution parses the whole content: a trailing newline or an upper-case hex digit
    makes the link unreadable to a registry, so they are not accepted here either.
    """
    return raw.decode("ascii") if _match_link(raw) else None
