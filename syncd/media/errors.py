"""Errors of export, import and receipts; each message names the volume, file or site."""

from __future__ import annotations

from syncd.errors import SyncdError


class MediaError(SyncdError):
    """A volume, a receipt, a key or an export folder cannot be used."""


class VolumeRefused(MediaError):
    """One volume is refused (damaged, of another export, unsigned...); nothing of it is
    trusted beyond blobs that proved themselves, and the other volumes stay usable."""

    def __init__(self, volume: str, problem: str) -> None:
        super().__init__(f"{volume}: {problem}")
        self.volume = volume
        self.problem = problem


class ReceiptRefused(MediaError):
    """A receipt is damaged, unsigned when a signature is required, from another site, or
    older than one already used."""
