"""What the exporting side takes the far side to have: the basis of an export.

- `--full`: nothing; every blob of the target is written.
- `--receipt FILE`: that receipt (checked: its checksum, its signature when one is
  required, its site, not older than one used before), kept as the site's newest.
- neither: the newest receipt kept for the site, else nothing. Exports made since that
  receipt are not confirmed by it, so what they carried is written again: smaller is
  never bought with an assumption about what arrived.

The far side's blobs are those of every file in its snapshot plus its staged blobs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from protocol.errors import ProtocolError
from protocol.media import MAGIC_RECEIPT, Receipt, decode_receipt
from protocol.tree import FileNode, decode_tree
from syncd.media.errors import MediaError, ReceiptRefused
from syncd.media.mediafile import MediaFileRefused, read_verified, same_trailer
from syncd.media.ordering import future_problem
from syncd.media.sites import SiteBook

MAX_RECEIPT_BYTES = 1 << 30


@dataclass(frozen=True, slots=True)
class Basis:
    kind: str  # "full", "none" (no receipt seen yet) or "receipt"
    description: str
    site: bytes | None = None  # the far site the export is for (None: any)
    sequence: int = 0  # the receipt's number, 0 without one
    trees: Mapping[bytes, bytes] = field(default_factory=dict)
    blobs: frozenset[bytes] = frozenset()
    root: bytes | None = None  # the far snapshot id the basis describes

    def live_tree(self, tree: bytes) -> bool:
        return tree in self.trees

    def has_blob(self, digest: bytes) -> bool:
        return digest in self.blobs


def choose_basis(
    book: SiteBook, *, receipt: Path | None, full: bool, required_key: bytes | None
) -> Basis:
    if full:
        return Basis("full", "--full: every blob of the snapshot")
    if receipt is not None:
        data, parsed = _read(receipt, required_key)
        _check_site(book, parsed, receipt)
        _check_not_older(book, parsed, receipt)
        book.store_receipt(data, parsed.header)
        return _from_receipt(book, parsed, str(receipt))
    if book.receipt_sequence and book.receipt_path.exists():
        _, parsed = _read(book.receipt_path, required_key)
        return _from_receipt(book, parsed, f"kept from an earlier export ({book.receipt_path})")
    return Basis("none", f"no receipt seen yet for site {book.name!r}: every blob of the snapshot")


def _read(path: Path, required_key: bytes | None) -> tuple[bytes, Receipt]:
    """A receipt, its signature and checksum checked before it is decoded."""
    try:
        data, trailer = read_verified(
            path, MAGIC_RECEIPT, required_key, MAX_RECEIPT_BYTES, follow=True
        )
        parsed = decode_receipt(data)
    except (MediaFileRefused, ProtocolError) as exc:
        raise ReceiptRefused(f"receipt {path}: {exc}") from exc
    if not same_trailer(parsed.checksum, parsed.signature, trailer):
        raise ReceiptRefused(f"receipt {path}: its frames do not end with the END frame checked")
    problem = future_problem("it", parsed.header.created_ns, time.time_ns())
    if problem is not None:  # a wrong clock there, or a date meant to outrank the rest
        raise ReceiptRefused(f"receipt {path}: {problem}")
    return bytes(data), parsed


def _check_site(book: SiteBook, receipt: Receipt, path: Path) -> None:
    site = receipt.header.site
    if book.site_id is not None and site != book.site_id:
        raise ReceiptRefused(
            f"receipt {path} is from far site {site.hex()}, but site {book.name!r} is "
            f"{book.site_id.hex()}: give another --site NAME for another far site"
        )


def _check_not_older(book: SiteBook, receipt: Receipt, path: Path) -> None:
    sequence = receipt.header.sequence
    if sequence < book.receipt_sequence:
        raise ReceiptRefused(
            f"receipt {path} is #{sequence} of site {book.name!r}, older than receipt "
            f"#{book.receipt_sequence} used before: the far side may have changed since; "
            "give the newest receipt, or none to use the newest kept"
        )


def _from_receipt(book: SiteBook, receipt: Receipt, source: str) -> Basis:
    h = receipt.header
    written = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(h.created_ns // 10**9))
    # The receipt reflects everything up to the last export the far side saw.
    seen = h.last_export.created_ns if h.last_export else None
    pending = book.exports_since(seen)
    text = (
        f"receipt #{h.sequence} of site {book.name!r} ({h.site.hex()[:8]}), written {written}, "
        f"far snapshot {h.root.hex()[:16]} ({source})"
    )
    if pending:
        text += (
            f"; {len(pending)} export(s) since are not confirmed by it: what they carried "
            "is written again"
        )
    return Basis("receipt", text, h.site, h.sequence, receipt.trees, _far_blobs(receipt), h.root)


def _far_blobs(receipt: Receipt) -> frozenset[bytes]:
    blobs: set[bytes] = {digest for digest, _ in receipt.staged}
    try:
        for record in receipt.trees.values():
            for node in decode_tree(record):
                if isinstance(node, FileNode):
                    blobs.update(digest for digest, _ in node.recipe)
    except ProtocolError as exc:  # decode_receipt validated every record already
        raise MediaError(f"receipt tree record: {exc}") from exc
    return frozenset(blobs)
