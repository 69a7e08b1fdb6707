"""Which volumes the far side still needs for the export in progress.

A volume is still needed when it was never seen, or when it was seen and holds a blob
the target still lacks (a damaged copy, whose good blobs were kept, or one whose staged
blobs were dropped since for room or age: syncd/apply/room.py). Blobs lacking that no
seen volume holds, once every volume has been seen, cannot come from this export at
all: the far side no longer has what the receipt the export was made from promised
(its tree changed, or staged blobs were dropped), and only a new receipt and export can
fill them.
"""

from __future__ import annotations

from dataclasses import dataclass

from syncd.media.progress import ImportProgress, load_digests
from syncd.state import StateDir


@dataclass(frozen=True, slots=True)
class Missing:
    never_seen: tuple[int, ...]
    damaged: tuple[int, ...]  # seen, but holding blobs still lacking (damaged or dropped)
    lacking_blobs: int
    lacking_bytes: int
    in_no_volume: int  # lacking blobs no volume can bring (every volume seen)
    # The target's tree records are not all here (an import cut short while staging
    # them): what it lacks is not known until a volume of the export brings them again.
    trees_missing: bool = False

    @property
    def volumes(self) -> tuple[int, ...]:
        return tuple(sorted({*self.never_seen, *self.damaged}))

    @property
    def complete(self) -> bool:
        return self.lacking_blobs == 0 and not self.trees_missing

    def as_json(self) -> dict[str, object]:
        return {
            "missing_volumes": list(self.volumes),
            "never_seen": list(self.never_seen),
            "damaged": list(self.damaged),
            "lacking_blobs": self.lacking_blobs,
            "lacking_bytes": self.lacking_bytes,
            "blobs_in_no_volume": self.in_no_volume,
            "trees_missing": self.trees_missing,
        }

    def describe(self, progress: ImportProgress) -> str:
        if self.complete:
            return "every blob of the target is here"
        parts = []
        if self.trees_missing:
            parts.append(
                "the tree records of its target are not all here (an import was cut short "
                "while staging them): import any of its volumes again;"
            )
        if self.volumes:
            numbers = ", ".join(str(n) for n in self.volumes)
            parts.append(f"still missing volume(s) {numbers} of {progress.volumes}")
        if self.damaged:
            numbers = ", ".join(str(n) for n in self.damaged)
            parts.append(
                f"(volume(s) {numbers} were imported, but blobs they hold are lacking here: "
                "a copy was damaged, or staged blobs were dropped since for room or age; "
                "import them again, a sound copy if one was damaged)"
            )
        if self.in_no_volume:
            parts.append(
                f"{self.in_no_volume} blob(s) the target needs are in no volume of export "
                f"{progress.export_id}: this side no longer has them (its tree changed, or "
                "staged blobs were dropped for room or age, since the receipt the export "
                "was made from); write a new receipt and export again"
            )
        return " ".join(parts)


def missing(state: StateDir, progress: ImportProgress, lacking: dict[bytes, int]) -> Missing:
    """What `lacking` (blobs the target still needs) means in volumes."""
    held: set[bytes] = set()
    damaged: list[int] = []
    for number in sorted(progress.seen):
        digests = load_digests(state, number)
        held |= digests
        if not digests.isdisjoint(lacking):
            damaged.append(number)
    never_seen = progress.never_seen
    orphans = 0 if never_seen else sum(1 for digest in lacking if digest not in held)
    return Missing(tuple(never_seen), tuple(damaged), len(lacking), sum(lacking.values()), orphans)


def trees_missing(progress: ImportProgress) -> Missing:
    """What is missing when the target's tree records are not all staged."""
    return Missing(tuple(progress.never_seen), (), 0, 0, 0, trees_missing=True)
