"""The far side's record of the import in progress: `STATE/media/import`.

It names the export being imported (id, creation time, target, volume count, delete),
the volumes seen so far, and whether the export has been applied. For each volume seen,
`STATE/media/import-vol-NNNN` lists the digests it holds (32 bytes each), so that
`--status` can name the volumes that hold blobs still lacking. Only one export is in
progress at a time; a newer export of the same site and lineage supersedes it
(ordering.py). Once an export is applied, it is also noted on the root directory itself
(ordering.py, `AppliedMark`), so that a lost or reset state folder does not let an older
export roll the root back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from protocol.codec import pack, unpack
from protocol.errors import ProtocolError
from protocol.limits import DIGEST_SIZE
from protocol.media import MAX_VOLUMES, VolumeHeader
from syncd.apply.durable import write_atomically
from syncd.media.errors import MediaError
from syncd.media.ordering import AppliedMark
from syncd.state import StateDir

FORMAT = 1


@dataclass(slots=True)
class ImportProgress:
    export_id: str
    created_ns: int
    target: bytes
    volumes: int
    delete: bool
    seen: set[int] = field(default_factory=set)
    applied: bool = False
    site: bytes | None = None  # the far site the export was made for (None: any)
    lineage: bytes | None = None  # the exporting source (None: an exporter without one)

    @classmethod
    def start(cls, header: VolumeHeader) -> ImportProgress:
        h = header
        return cls(
            h.export_id, h.created_ns, h.target, h.volumes, h.delete, site=h.site, lineage=h.lineage
        )

    def same_export(self, header: VolumeHeader) -> bool:
        return header.export_id == self.export_id

    def is_newer(self, header: VolumeHeader) -> bool:
        """Exports are ordered by creation time, then id (SPEC.md 9.6)."""
        return (header.created_ns, header.export_id) > (self.created_ns, self.export_id)

    def agrees(self, header: VolumeHeader) -> bool:
        """A volume of this export says what its other volumes said."""
        h = header
        return (h.created_ns, h.target, h.volumes, h.delete) == (
            self.created_ns,
            self.target,
            self.volumes,
            self.delete,
        )

    @property
    def never_seen(self) -> list[int]:
        return [n for n in range(1, self.volumes + 1) if n not in self.seen]

    @classmethod
    def load(cls, state: StateDir) -> ImportProgress | None:
        path = _path(state)
        try:
            meta = unpack(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ProtocolError) as exc:
            raise MediaError(f"{path}: cannot read the import record: {exc}") from exc
        progress = _parse(meta)
        if progress is None:
            raise MediaError(f"{path}: corrupt import record")
        return progress

    def save(self, state: StateDir) -> None:
        meta = {
            "format": FORMAT,
            "export": self.export_id,
            "created": self.created_ns,
            "target": self.target,
            "volumes": self.volumes,
            "delete": self.delete,
            "seen": sorted(self.seen),
            "applied": self.applied,
            "site": self.site,
            "lineage": self.lineage,
        }
        path = _path(state)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, pack(meta))
        except OSError as exc:
            raise MediaError(f"{path}: cannot write the import record: {exc.strerror}") from exc
        if self.applied:  # noted on the root too: a reset state folder forgets it not
            AppliedMark.of(self).write(state.root)


def _parse(meta: object) -> ImportProgress | None:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return None
    export_id, created, target = meta.get("export"), meta.get("created"), meta.get("target")
    volumes, delete, seen, applied = (meta.get(k) for k in ("volumes", "delete", "seen", "applied"))
    if not (isinstance(export_id, str) and type(created) is int and isinstance(target, bytes)):
        return None
    if not (type(volumes) is int and 1 <= volumes <= MAX_VOLUMES and isinstance(seen, list)):
        return None
    if type(delete) is not bool or type(applied) is not bool:
        return None
    numbers = {n for n in seen if type(n) is int and 1 <= n <= volumes}
    site, lineage = meta.get("site"), meta.get("lineage")
    if not (_optional_id(site) and _optional_id(lineage)):
        return None
    return ImportProgress(
        export_id,
        created,
        target,
        volumes,
        delete,
        numbers,
        applied,
        site,
        lineage,
    )


def _optional_id(value: object) -> bool:
    """None (absent in records written before it existed) or 16 bytes."""
    return value is None or (isinstance(value, bytes) and len(value) == 16)


def _path(state: StateDir) -> Path:
    return state.path / "media" / "import"


def _digests_path(state: StateDir, volume: int) -> Path:
    return state.path / "media" / f"import-vol-{volume:04d}"


def save_digests(state: StateDir, volume: int, digests: Iterable[bytes]) -> None:
    path = _digests_path(state, volume)
    try:
        write_atomically(path, b"".join(digests))
    except OSError as exc:
        raise MediaError(f"{path}: cannot write: {exc.strerror}") from exc


def load_digests(state: StateDir, volume: int) -> set[bytes]:
    """The digests volume `volume` holds, as noted when it was imported (empty if not)."""
    try:
        raw = _digests_path(state, volume).read_bytes()
    except FileNotFoundError:
        return set()
    except OSError as exc:
        raise MediaError(f"{_digests_path(state, volume)}: cannot read: {exc.strerror}") from exc
    return {raw[i : i + DIGEST_SIZE] for i in range(0, len(raw) - DIGEST_SIZE + 1, DIGEST_SIZE)}


def clear_digests(state: StateDir) -> None:
    folder = state.path / "media"
    if folder.is_dir():
        for path in folder.glob("import-vol-*"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
