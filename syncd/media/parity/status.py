"""What `syncd import --status` says of an export with parity volumes.

The importer's record of the export in progress (progress.py) knows its data volumes;
the parity count is kept beside it (`STATE/media/import-notes`, with the key that signed
the export, for the audit log) when a volume of the export is imported. With M data
volumes still missing (never seen, or damaged) and N parity volumes, any M of those
M + N volumes complete the export: a parity volume stands in for any one data volume.
(A volume imported earlier counts as held even after its disk is gone: it is
regenerated from the blobs it brought.)
"""

from __future__ import annotations

import contextlib
from typing import Any

from protocol.codec import pack, unpack
from protocol.errors import ProtocolError
from syncd.apply.durable import write_atomically
from syncd.media.layout import volume_name
from syncd.media.progress import ImportProgress
from syncd.media.status import Missing
from syncd.state import StateDir

_NAME = "import-notes"


def record_parity(
    state: StateDir, export_id: str, parity: int = 0, signer: bytes | None = None
) -> None:
    """Note that export `export_id` has `parity` parity volumes, and the key that signed
    its indexes (for the audit log of an apply made in a later run)."""
    old = _read(state, export_id)
    new = {
        "export": export_id,
        "parity": parity or old.get("parity", 0),
        "signer": signer or old.get("signer"),
    }
    if new == old or not (new["parity"] or new["signer"]):
        return
    with contextlib.suppress(OSError):  # only messages depend on it
        write_atomically(state.path / "media" / _NAME, pack(new))


def _read(state: StateDir, export_id: str) -> dict[str, object]:
    try:
        meta = unpack((state.path / "media" / _NAME).read_bytes())
    except (OSError, ProtocolError):
        return {}
    if isinstance(meta, dict) and meta.get("export") == export_id:
        return meta
    return {}


def read_parity(state: StateDir, export_id: str) -> int:
    parity = _read(state, export_id).get("parity")
    return parity if type(parity) is int and parity > 0 else 0


def read_signer(state: StateDir, export_id: str) -> bytes | None:
    signer = _read(state, export_id).get("signer")
    return signer if isinstance(signer, bytes) and len(signer) == 32 else None


def any_of(missing: tuple[int, ...], volumes: int, parity: int) -> tuple[int, list[int]]:
    """(how many, of which volumes) complete an export missing data volumes `missing`."""
    return len(missing), [*missing, *range(volumes + 1, volumes + parity + 1)]


def describe_any_of(count: int, candidates: list[int]) -> str:
    """ "any 2 of vol-0004..vol-0009" (ranges where the numbers run on)."""
    parts: list[str] = []
    start = previous = candidates[0]
    for number in [*candidates[1:], None]:
        if number is not None and number == previous + 1:
            previous = number
            continue
        parts.append(
            volume_name(start)
            if start == previous
            else f"{volume_name(start)}..{volume_name(previous)}"
        )
        if number is not None:
            start = previous = number
    return f"any {count} of {', '.join(parts)}"


def parity_hint(state: StateDir, progress: ImportProgress, missing: Missing) -> list[str]:
    """Lines that say which volumes complete the export, when it has parity volumes."""
    any_json = parity_json(state, progress, missing)
    if not any_json.get("any_of"):
        return []
    count, candidates = any_of(missing.volumes, progress.volumes, any_json["parity"])
    return [
        f"  with its parity volumes, {describe_any_of(count, candidates)} complete it "
        "(a parity volume counts in the run it is given)"
    ]


def parity_json(state: StateDir, progress: ImportProgress, missing: Missing) -> dict[str, Any]:
    """`"parity"`, and `"any_of"`: {"count", "volumes"} that complete the export."""
    parity = read_parity(state, progress.export_id)
    out: dict[str, Any] = {"parity": parity, "any_of": None}
    if parity and missing.volumes and not missing.complete:
        count, candidates = any_of(missing.volumes, progress.volumes, parity)
        out["any_of"] = {"count": count, "volumes": candidates}
    return out
