"""What `syncd show PATH` reads: one volume, an export folder, or a far root.

A volume's index is decoded and checked in full (checksum; signature when present, and
named by its key's fingerprint) before anything of it is shown: the manifest shown is
the one the signature covers. An export folder is shown from its first readable volume,
with which volumes are there. A far root shows the change staged there and not applied
yet (a push or import refused by its inspection, or cut short), and the import in
progress.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.errors import ProtocolError
from protocol.manifest import TransferManifest
from protocol.media import MAGIC_INDEX, Signature, VolumeHeader, decode_index
from protocol.parity import MAGIC_PARITY, decode_parity
from syncd.errors import UsageError
from syncd.gate.gated import pending_path
from syncd.gate.origin import ed25519_fingerprint
from syncd.media.errors import VolumeRefused
from syncd.media.layout import INDEX_NAME, describe, find_volumes, index_magic
from syncd.media.mediafile import MediaFileRefused, read_verified
from syncd.media.progress import ImportProgress
from syncd.media.signing import signature_problem
from syncd.media.volume import MAX_INDEX_BYTES
from syncd.state import StateDir


@dataclass(slots=True)
class Shown:
    """One volume's index, checked."""

    path: Path
    kind: str  # "data" or "parity"
    header: VolumeHeader
    manifest: TransferManifest | None  # None: a format-1 index (made before manifests)
    signer: str | None
    problem: str = ""  # why the signature does not hold, when it does not


@dataclass(slots=True)
class ExportView:
    shown: Shown | None
    volumes: list[tuple[Path, str]] = field(default_factory=list)  # (path, "data"/"parity"/...)


def show_volume(path: Path) -> Shown:
    label = describe(path)
    magic = MAGIC_PARITY if index_magic(path) == MAGIC_PARITY else MAGIC_INDEX
    try:
        data, _ = read_verified(path / INDEX_NAME, magic, None, MAX_INDEX_BYTES)
    except MediaFileRefused as exc:
        raise VolumeRefused(label, f"index: {exc}") from exc
    manifest: TransferManifest | None
    try:
        if magic == MAGIC_PARITY:
            parity = decode_parity(data)
            header, manifest = parity.header.volume, parity.manifest
            kind, signature, message = "parity", parity.signature, parity.signed_message()
        else:
            index = decode_index(data)
            header, manifest = index.header, index.manifest
            kind, signature, message = "data", index.signature, index.signed_message()
    except ProtocolError as exc:
        raise VolumeRefused(label, f"index: {exc}") from exc
    problem = signature_problem(signature, message, None) or ""
    return Shown(path, kind, header, manifest, _signer(signature), problem)


def _signer(signature: Signature | None) -> str | None:
    return ed25519_fingerprint(signature.public_key) if signature is not None else None


def show_export(folder: Path) -> ExportView:
    view = ExportView(None)
    volumes = find_volumes([folder])
    exports = sorted({str(path.parent) for path in volumes})
    if len(exports) > 1:
        raise UsageError(f"{folder} holds {len(exports)} exports: show one of {', '.join(exports)}")
    for path in volumes:
        try:
            shown = show_volume(path)
        except VolumeRefused as exc:
            view.volumes.append((path, f"unreadable: {exc.problem}"))
            continue
        view.volumes.append((path, shown.kind))
        if view.shown is None or (shown.kind == "data" and view.shown.kind != "data"):
            view.shown = shown
    return view


def is_volume(path: Path) -> bool:
    return index_magic(path) in (MAGIC_INDEX, MAGIC_PARITY)


@dataclass(frozen=True, slots=True)
class RootView:
    pending: dict[str, Any] | None  # STATE/pending.json
    progress: ImportProgress | None


def show_root(root: Path, state_path: Path | None) -> RootView:
    state = StateDir(root, state_path)
    if not state.path.is_dir():
        raise UsageError(f"{root}: neither a volume, an export folder nor a far root with state")
    pending = None
    try:
        value = json.loads(pending_path(state).read_text())
        pending = value if isinstance(value, dict) else None
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        raise UsageError(f"{pending_path(state)}: cannot read: {exc}") from exc
    return RootView(pending, ImportProgress.load(state))


def escape(text: str) -> str:
    """A name as a terminal shows it safely: control and other unprintable characters
    escaped (a file name may hold an escape sequence)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
