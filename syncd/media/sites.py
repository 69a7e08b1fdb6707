"""The exporting side's memory of each far site: `STATE/media/site-<NAME>` in SRC's state.

Per site name (`syncd export --site NAME`, default "default") it keeps the site id of the
first receipt seen (a receipt from another site is then refused), the receipts used
(number, time, far snapshot; an older one than the newest is refused: the far side may
have lost blobs since), the newest receipt itself (`site-<NAME>.receipt`, the basis of
exports without --receipt), and the exports made, newest last.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from protocol.codec import pack, unpack
from protocol.errors import ProtocolError
from protocol.media import LINEAGE_SIZE, SAFE_NAME, SITE_ID_SIZE, ReceiptHeader
from syncd.apply.durable import write_atomically
from syncd.errors import UsageError
from syncd.media.errors import MediaError
from syncd.state import StateDir

FORMAT = 1
KEEP = 100  # receipts and exports remembered per site


@dataclass(frozen=True, slots=True)
class ExportRecord:
    export_id: str
    created_ns: int
    target: bytes
    volumes: int
    blobs: int
    bytes: int
    basis: int  # the receipt's sequence number, 0 when none was used

    def as_list(self) -> list[object]:
        return [
            self.export_id,
            self.created_ns,
            self.target,
            self.volumes,
            self.blobs,
            self.bytes,
            self.basis,
        ]


@dataclass(slots=True)
class SiteBook:
    path: Path
    name: str
    site_id: bytes | None = None
    receipt_sequence: int = 0
    receipts: list[tuple[int, int, bytes]] = field(default_factory=list)  # (number, time, root)
    exports: list[ExportRecord] = field(default_factory=list)

    @property
    def receipt_path(self) -> Path:
        return self.path.with_name(self.path.name + ".receipt")

    @classmethod
    def load(cls, state: StateDir, name: str) -> SiteBook:
        if SAFE_NAME.fullmatch(name) is None:
            raise UsageError(f"site name {name!r}: use ASCII letters, digits, '.', '_', '-'")
        path = state.path / "media" / f"site-{name}"
        book = cls(path, name)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return book
        except OSError as exc:
            raise MediaError(f"{path}: cannot read: {exc.strerror}") from exc
        book._parse(raw)
        return book

    def _parse(self, raw: bytes) -> None:
        try:
            meta = unpack(raw)
        except ProtocolError as exc:
            raise MediaError(f"{self.path}: corrupt site record ({exc})") from exc
        problem = "unknown format"
        if isinstance(meta, dict) and meta.get("format") == FORMAT:
            site, receipt, exports = meta.get("site"), meta.get("receipt"), meta.get("exports")
            records = [_export(item) for item in exports] if isinstance(exports, list) else [None]
            seen = _receipts(meta.get("receipts"))
            problem = "bad fields"
            if _site_id(site) and type(receipt) is int and None not in records and seen is not None:
                self.site_id = site if isinstance(site, bytes) else None
                self.receipt_sequence = receipt
                self.receipts = seen
                self.exports = [r for r in records if r is not None]
                return
        raise MediaError(f"{self.path}: corrupt site record ({problem})")

    def save(self) -> None:
        meta = {
            "format": FORMAT,
            "site": self.site_id,
            "receipt": self.receipt_sequence,
            "receipts": [list(r) for r in self.receipts[-KEEP:]],
            "exports": [e.as_list() for e in self.exports[-KEEP:]],
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, pack(meta))
        except OSError as exc:
            raise MediaError(f"{self.path}: cannot write: {exc.strerror}") from exc

    def store_receipt(self, data: bytes, header: ReceiptHeader) -> None:
        """Keep `data` as the newest receipt of this site (the caller checked it)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.receipt_path, data)
        except OSError as exc:
            raise MediaError(f"{self.receipt_path}: cannot write: {exc.strerror}") from exc
        self.site_id, self.receipt_sequence = header.site, header.sequence
        if all(number != header.sequence for number, _, _ in self.receipts):
            self.receipts.append((header.sequence, header.created_ns, header.root))
        self.save()

    def record_export(self, record: ExportRecord) -> None:
        self.exports.append(record)
        self.save()

    def exports_since(self, created_ns: int | None) -> list[ExportRecord]:
        """Exports made after the one a receipt confirms (all of them if it confirms none)."""
        return [e for e in self.exports if created_ns is None or e.created_ns > created_ns]


def source_lineage(state: StateDir) -> bytes:
    """This source's lineage: 16 random bytes made once (`STATE/media/lineage`), carried
    in every volume it exports, so that a far side can tell its exports from another
    source's (SPEC.md 9.6). A new state folder is a new lineage."""
    path = state.path / "media" / "lineage"
    try:
        value = path.read_bytes()
    except FileNotFoundError:
        value = b""
    except OSError as exc:
        raise MediaError(f"{path}: cannot read: {exc.strerror}") from exc
    if len(value) == LINEAGE_SIZE:
        return value
    value = secrets.token_bytes(LINEAGE_SIZE)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, value)
    except OSError as exc:
        raise MediaError(f"{path}: cannot write: {exc.strerror}") from exc
    return value


def _site_id(value: object) -> bool:
    return value is None or (isinstance(value, bytes) and len(value) == SITE_ID_SIZE)


def _export(item: object) -> ExportRecord | None:
    if not isinstance(item, list) or len(item) != 7:
        return None
    export_id, created, target, *counts = item
    if not isinstance(export_id, str) or not isinstance(target, bytes):
        return None
    if type(created) is not int or any(type(c) is not int for c in counts):
        return None
    volumes, blobs, size, basis = (int(c) for c in counts)
    return ExportRecord(export_id, created, target, volumes, blobs, size, basis)


def _receipts(value: object) -> list[tuple[int, int, bytes]] | None:
    if value is None:
        return []
    if not isinstance(value, list):
        return None
    out: list[tuple[int, int, bytes]] = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 3):
            return None
        number, created, root = item
        if type(number) is not int or type(created) is not int or not isinstance(root, bytes):
            return None
        out.append((number, created, root))
    return out
