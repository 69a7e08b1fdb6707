"""`syncd show PATH [--json]`: what an export, a volume, or a far root's staged change carries."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from protocol.manifest import TransferManifest
from syncd.errors import UsageError
from syncd.exitcodes import ExitCode
from syncd.jsonout import dumps
from syncd.media.manifest import change_json
from syncd.media.showing import (
    ExportView,
    RootView,
    Shown,
    escape,
    is_volume,
    show_export,
    show_root,
    show_volume,
)
from syncd.units import format_bytes


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "show",
        help="what an export or volume carries (its signed transfer manifest)",
        description="Print the transfer manifest of an export folder or one volume (the "
        "images it adds, changes or removes, its blobs, every file with its content id), "
        "checked against the index's checksum and signature; or, for a far root, the "
        "change staged there and not applied yet.",
    )
    parser.add_argument("path", type=Path, metavar="PATH")
    parser.add_argument(
        "--state", type=Path, help="a far root's state folder (default ROOT/.syncd)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path: Path = args.path
    if not path.is_dir():
        raise UsageError(f"{path}: not a folder")
    if is_volume(path):
        shown = show_volume(path)
        return _emit(
            {"kind": "volume", **_volume_json(shown)}, _volume_text(shown), args.json, shown
        )
    if (path / ".syncd").is_dir() or args.state:
        view = show_root(path, args.state)
        return _emit(_root_json(view), _root_text(view), args.json, None)
    export = show_export(path)
    if export.shown is None:
        problems = "; ".join(f"{p.name}: {kind}" for p, kind in export.volumes)
        raise UsageError(f"{path}: no readable volume ({problems})")
    data = {"kind": "export", **_volume_json(export.shown), "volumes": _listing(export)}
    text = _volume_text(export.shown) + _listing_text(export)
    return _emit(data, text, args.json, export.shown)


def _emit(data: dict[str, Any], text: list[str], as_json: bool, shown: Shown | None) -> int:
    if as_json:
        print(dumps("show", data))
    else:
        for line in text:
            print(line)
    return int(ExitCode.PROBLEMS if shown is not None and shown.problem else ExitCode.OK)


def _volume_json(shown: Shown) -> dict[str, Any]:
    h = shown.header
    return {
        "path": str(shown.path),
        "volume_kind": shown.kind,
        "export": h.export_id,
        "created": _when(h.created_ns),
        "volume": h.volume,
        "data_volumes": h.volumes,
        "parity_volumes": h.parity,
        "target": h.target.hex(),
        "target_files": h.target_files,
        "target_bytes": h.target_bytes,
        "delete": h.delete,
        "site": h.site.hex() if h.site else None,
        "blobs": h.export_blobs,
        "blob_bytes": h.export_bytes,
        "signer": shown.signer,
        "signature_problem": shown.problem or None,
        "manifest": change_json(shown.manifest) if shown.manifest else None,
    }


def _when(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // 10**9))


def _volume_text(shown: Shown) -> list[str]:
    h = shown.header
    parity = f" + {h.parity} parity" if h.parity else ""
    which = f"parity volume {h.volume}" if shown.kind == "parity" else f"volume {h.volume}"
    lines = [
        f"export {h.export_id}, made {_when(h.created_ns)}: {which} of {h.volumes} data{parity}",
        f"  signature: {_signature_text(shown)}",
        f"  target snapshot {h.target.hex()[:16]}: {h.target_files} files, "
        f"{format_bytes(h.target_bytes)}; deletes what it lacks: {'yes' if h.delete else 'no'}",
        f"  carries {h.export_blobs} blobs ({format_bytes(h.export_bytes)})",
    ]
    if shown.manifest is None:
        return [*lines, "  no transfer manifest (an index of media format 1)"]
    return lines + _manifest_text(shown.manifest)


def _signature_text(shown: Shown) -> str:
    if shown.signer is None:
        return "none (unsigned)"
    if shown.problem:
        return f"BAD: {shown.problem} (claims key {shown.signer})"
    return f"valid, by key {shown.signer}"


def _manifest_text(m: TransferManifest) -> list[str]:
    c = m.counts()
    lines = [
        f"  basis: {escape(m.basis)}",
        f"  images: {c['images_added']} added, {c['images_changed']} changed, "
        f"{c['images_removed']} removed",
    ]
    for i in m.images:
        digest = i.digest or "?"
        if i.previous and i.digest:
            digest = f"{i.previous} -> {i.digest}"
        platforms = f"  [{', '.join(i.platforms)}]" if i.platforms else ""
        lines.append(f"    {i.change.word:8} {i.reference}  {digest}{platforms}")
    size = sum(p.size for p in m.paths)
    lines.append(
        f"  files: {c['files_added']} added, {c['files_changed']} changed, "
        f"{c['files_removed']} removed ({format_bytes(size)} added or changed)"
    )
    for p in m.paths:
        content = f"  {format_bytes(p.size)}  {p.content.hex()}" if p.content else ""
        lines.append(f"    {p.change.word:8} {escape(p.path)}{content}")
    return lines


def _listing(export: ExportView) -> list[dict[str, str]]:
    return [{"path": str(p), "kind": kind} for p, kind in export.volumes]


def _listing_text(export: ExportView) -> list[str]:
    lines = ["  volumes here:"]
    lines += [f"    {p.name}: {kind}" for p, kind in export.volumes]
    if export.shown is not None:
        h = export.shown.header
        here = {p.name for p, kind in export.volumes if kind in ("data", "parity")}
        absent = [
            f"vol-{n:04d}" for n in range(1, h.volumes + h.parity + 1) if f"vol-{n:04d}" not in here
        ]
        if absent:
            lines.append(f"  not here: {', '.join(absent)}")
    return lines


def _root_json(view: RootView) -> dict[str, Any]:
    progress = view.progress
    return {
        "kind": "root",
        "pending": view.pending,
        "import": None
        if progress is None
        else {
            "export": progress.export_id,
            "volumes": progress.volumes,
            "seen": sorted(progress.seen),
            "applied": progress.applied,
        },
    }


def _root_text(view: RootView) -> list[str]:
    lines: list[str] = []
    pending = view.pending
    if pending is None:
        lines.append("nothing staged awaits an apply here")
    else:
        source = pending.get("export") or f"a push from {pending.get('client') or 'a local client'}"
        counts = pending.get("counts") or {}
        lines.append(f"staged, not applied: {source} (target {str(pending.get('target'))[:16]})")
        lines.append(
            f"  files: {counts.get('files_added', 0)} added, {counts.get('files_changed', 0)} "
            f"changed, {counts.get('files_removed', 0)} removed; images: "
            f"{counts.get('images_added', 0)} added, {counts.get('images_changed', 0)} changed, "
            f"{counts.get('images_removed', 0)} removed (--json lists them)"
        )
    progress = view.progress
    if progress is not None and not progress.applied:
        seen = ", ".join(str(n) for n in sorted(progress.seen)) or "none"
        total = progress.volumes
        lines.append(
            f"import in progress: export {progress.export_id}, volumes seen {seen} of {total}"
        )
    return lines
