"""The far side's identity: `STATE/media/site`, a random site id made once, and the
number of the last receipt written (receipts are numbered 1, 2, ... so that the
exporting side can tell a newer one from an older one)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from protocol.codec import pack, unpack
from protocol.errors import ProtocolError
from protocol.media import SITE_ID_SIZE
from syncd.apply.durable import write_atomically
from syncd.media.errors import MediaError
from syncd.state import StateDir

FORMAT = 1


@dataclass(slots=True)
class FarSite:
    path: Path
    site_id: bytes
    receipts: int  # receipts written so far

    @classmethod
    def load(cls, state: StateDir) -> FarSite | None:
        path = _path(state)
        try:
            meta = unpack(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ProtocolError) as exc:
            raise MediaError(f"{path}: cannot read the site id: {exc}") from exc
        if isinstance(meta, dict) and meta.get("format") == FORMAT:
            site, receipts = meta.get("site"), meta.get("receipts")
            if isinstance(site, bytes) and len(site) == SITE_ID_SIZE and type(receipts) is int:
                return cls(path, site, receipts)
        raise MediaError(f"{path}: corrupt site id file")

    @classmethod
    def load_or_create(cls, state: StateDir) -> FarSite:
        site = cls.load(state)
        if site is None:
            site = cls(_path(state), secrets.token_bytes(SITE_ID_SIZE), 0)
            site.save()
        return site

    def next_receipt(self) -> int:
        """Number the next receipt, durably, before it is written: a receipt lost on the
        way only leaves a gap, never two receipts with one number."""
        self.receipts += 1
        self.save()
        return self.receipts

    def save(self) -> None:
        meta = {"format": FORMAT, "site": self.site_id, "receipts": self.receipts}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, pack(meta))
        except OSError as exc:
            raise MediaError(f"{self.path}: cannot write the site id: {exc.strerror}") from exc


def _path(state: StateDir) -> Path:
    return state.path / "media" / "site"
