"""The corruption campaign's mutations of an export's volumes, one function per kind.

Each takes a private copy of the export (`Media.root/<export-id>/vol-NNNN/`, whose files are
hard links to the pristine set: a mutation always replaces a file, never writes into it)
and damages it the way a medium, a courier or a forger might. `KINDS` says, per kind,
whether the damage must be detected or is harmless (the import must then be exact).
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

from protocol.media import (
    BlobEntry,
    PackFile,
    Signature,
    Signer,
    VolumeIndex,
    decode_index,
    encode_index,
    encode_trees,
)
from syncd.media.signing import load_signer


class Expect(Enum):
    DETECT = "detect"  # refused by name, or named as missing; nothing partial applied
    HARMLESS = "harmless"  # the import completes and the far tree is exactly the source


@dataclass(frozen=True, slots=True)
class Exports:
    """The pristine export folders and the signing keys the mutations may use."""

    ours: Path  # DIR/<export-id>, signed with `sign`; the one under test
    older: Path  # a foreign export of another tree, made before ours
    newer: Path  # a foreign export of another tree, made after ours
    theirs: Path  # the same tree as ours, signed with another key
    sign_key: Path  # our private key (what `--require-signed-by` accepts)


@dataclass(slots=True)
class Media:
    """One mutation's media: the folders given to `syncd import`."""

    root: Path  # holds a copy of `exports.ours`
    exports: Exports
    extra: list[Path] = field(default_factory=list)  # more folders to import from
    note: str = ""  # what exactly was done, for a failure's message
    # The damaged volume rightly becomes the import in progress (a newer export, or a
    # validly signed header with a later creation time): the far side then refuses the
    # pristine volumes as older or disagreeing, by design, until a newer export comes.
    supersedes: bool = False
    forked: bool = False  # a re-signed index disagrees with its export's other volumes

    @property
    def export(self) -> Path:
        return self.root / self.exports.ours.name

    def volumes(self) -> list[Path]:
        return sorted(p for p in self.export.iterdir() if p.is_dir())

    def folders(self) -> list[Path]:
        return [self.root, *self.extra]


def link_copy(src: Path, dst: Path) -> None:
    """`src` copied as hard links (cheap); mutations replace files, so links stay pristine."""
    shutil.copytree(src, dst, copy_function=os.link)


def replace_file(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def pick_volume(rng: random.Random, media: Media) -> Path:
    return rng.choice(media.volumes())


def pick_pack(rng: random.Random, media: Media) -> Path:
    volume = pick_volume(rng, media)
    return rng.choice(sorted(volume.glob("pack-*")))


# -- damage to bytes -----------------------------------------------------------------------


def flip_bit(rng: random.Random, path: Path, media: Media) -> None:
    data = bytearray(path.read_bytes())
    at, bit = rng.randrange(len(data)), rng.randrange(8)
    data[at] ^= 1 << bit
    replace_file(path, bytes(data))
    media.note = f"{path.parent.name}/{path.name}: bit {bit} of byte {at} flipped"


def cut(rng: random.Random, path: Path, media: Media) -> None:
    data = path.read_bytes()
    keep = rng.randrange(len(data))
    replace_file(path, data[:keep])
    media.note = f"{path.parent.name}/{path.name}: truncated to {keep} of {len(data)} bytes"


def pack_bitflip(rng: random.Random, media: Media) -> None:
    flip_bit(rng, pick_pack(rng, media), media)


def index_bitflip(rng: random.Random, media: Media) -> None:
    flip_bit(rng, pick_volume(rng, media) / "index", media)


def pack_truncated(rng: random.Random, media: Media) -> None:
    cut(rng, pick_pack(rng, media), media)


def index_truncated(rng: random.Random, media: Media) -> None:
    cut(rng, pick_volume(rng, media) / "index", media)


def pack_extended(rng: random.Random, media: Media) -> None:
    path = pick_pack(rng, media)
    extra = rng.randbytes(rng.randint(1, 4096))
    replace_file(path, path.read_bytes() + extra)
    media.note = f"{path.parent.name}/{path.name}: {len(extra)} bytes appended"


def pack_from_another_volume(rng: random.Random, media: Media) -> None:
    one, other = rng.sample(media.volumes(), 2)
    path = one / "pack-0001"
    replace_file(path, (other / "pack-0001").read_bytes())
    media.note = f"{one.name}/pack-0001 replaced by {other.name}'s"


# -- files and volumes missing, repeated, moved --------------------------------------------


def pack_removed(rng: random.Random, media: Media) -> None:
    path = pick_pack(rng, media)
    path.unlink()
    media.note = f"{path.parent.name}/{path.name} removed"


def index_removed(rng: random.Random, media: Media) -> None:
    volume = pick_volume(rng, media)
    (volume / "index").unlink()
    media.note = f"{volume.name}/index removed"


def volume_removed(rng: random.Random, media: Media) -> None:
    volume = pick_volume(rng, media)
    shutil.rmtree(volume)
    media.note = f"{volume.name} removed"


def volume_duplicated(rng: random.Random, media: Media) -> None:
    volume = pick_volume(rng, media)
    again = media.root.parent / "again" / media.export.name / volume.name
    link_copy(volume, again)
    media.extra.append(again.parent.parent)
    media.note = f"{volume.name} given twice"


def volumes_swapped(rng: random.Random, media: Media) -> None:
    one, other = rng.sample(media.volumes(), 2)
    parked = one.with_name("parked")
    one.rename(parked)
    other.rename(one)
    parked.rename(other)
    media.note = f"folders {one.name} and {other.name} swapped"


def foreign_volume(rng: random.Random, media: Media, export: Path, what: str) -> None:
    """A volume of another export added, or put in the place of one of ours."""
    theirs = rng.choice(sorted(p for p in export.iterdir() if p.is_dir()))
    elsewhere = media.root.parent / "foreign" / export.name / theirs.name
    link_copy(theirs, elsewhere)
    media.extra.append(elsewhere.parent.parent)
    media.note = f"{what} {theirs.name} added"
    if rng.random() < 0.5:
        ours = pick_volume(rng, media)
        shutil.rmtree(ours)
        media.note += f", our {ours.name} removed"


def foreign_older(rng: random.Random, media: Media) -> None:
    foreign_volume(rng, media, media.exports.older, "an older foreign export's")


def foreign_newer(rng: random.Random, media: Media) -> None:
    foreign_volume(rng, media, media.exports.newer, "a newer foreign export's")
    media.supersedes = True


def signed_by_another_key(rng: random.Random, media: Media) -> None:
    """One of our volumes replaced by the same volume of an export signed by another key."""
    ours = pick_volume(rng, media)
    shutil.rmtree(ours)
    link_copy(media.exports.theirs / ours.name, ours)
    media.note = f"{ours.name} replaced by one signed with another key"


# -- edited indexes ------------------------------------------------------------------------


def reencode(index: VolumeIndex, sign: Signer | None) -> bytes:
    """`index` encoded again (its checksum recomputed), signed by `sign` or not at all."""
    records = sorted(index.trees.items(), key=lambda item: item[0] != index.header.target)
    trees = encode_trees(records)
    return encode_index(index.header, index.files, trees, index.blobs, sign)


def edit(rng: random.Random, index: VolumeIndex) -> tuple[str, VolumeIndex]:
    """One plausible edit of an index's meaning: what was done, and the edited index."""
    h, files, blobs = index.header, list(index.files), list(index.blobs)
    choice = rng.randrange(8)
    if choice == 0 and len(blobs) > 1:
        a, b = rng.sample(range(len(blobs)), 2)
        blobs[a], blobs[b] = (
            replace(blobs[a], digest=blobs[b].digest),
            replace(blobs[b], digest=blobs[a].digest),
        )
        return "two blob digests swapped", replace(index, blobs=tuple(blobs))
    if choice == 1:
        at = rng.randrange(len(blobs))
        blobs[at] = replace(blobs[at], digest=rng.randbytes(32))
        return "a blob digest replaced", replace(index, blobs=tuple(blobs))
    if choice == 2:
        at = rng.randrange(len(files))
        files[at] = PackFile(files[at].name, files[at].size, rng.randbytes(32))
        return "a pack checksum replaced", replace(index, files=tuple(files))
    if choice == 3:
        return "created_ns moved", replace(index, header=replace(h, created_ns=h.created_ns + 1))
    if choice == 4:
        return "delete flag flipped", replace(index, header=replace(h, delete=not h.delete))
    if choice == 5:
        other = rng.choice(sorted(set(index.trees) - {h.target}) or [h.target])
        return "target set to a subtree", replace(index, header=replace(h, target=other))
    if choice == 6 and h.volumes > 1:
        number = rng.choice([n for n in range(1, h.volumes + 1) if n != h.volume])
        return f"volume number set to {number}", replace(index, header=replace(h, volume=number))
    return "a blob entry dropped", replace(index, blobs=_drop_entry(rng, blobs))


def _drop_entry(rng: random.Random, blobs: list[BlobEntry]) -> tuple[BlobEntry, ...]:
    at = rng.randrange(len(blobs))
    return tuple(blobs[:at] + blobs[at + 1 :])


def edited_index(rng: random.Random, media: Media, signing: str) -> None:
    volume = pick_volume(rng, media)
    path = volume / "index"
    index = decode_index(path.read_bytes())
    what, edited = edit(rng, index)
    old = index.signature

    def stale(_message: bytes) -> Signature:
        assert old is not None  # the export under test is signed
        return old

    signers: dict[str, Signer | None] = {
        "re-signed": load_signer(media.exports.sign_key),
        "stale signature": stale,
        "unsigned": None,
    }
    replace_file(path, reencode(edited, signers[signing]))
    later = edited.header.created_ns > index.header.created_ns
    media.supersedes = signing == "re-signed" and later
    # Validly signed and disagreeing: only the operator can tell which header is genuine.
    media.forked = signing == "re-signed"
    media.note = f"{volume.name}/index: {what}, {signing}"


def index_edited_resigned(rng: random.Random, media: Media) -> None:
    edited_index(rng, media, "re-signed")


def index_edited_stale_signature(rng: random.Random, media: Media) -> None:
    edited_index(rng, media, "stale signature")


def index_edited_unsigned(rng: random.Random, media: Media) -> None:
    edited_index(rng, media, "unsigned")


Mutation = Callable[[random.Random, Media], None]

KINDS: dict[str, tuple[Mutation, Expect]] = {
    "pack bit flip": (pack_bitflip, Expect.DETECT),
    "index bit flip": (index_bitflip, Expect.DETECT),
    "pack truncated": (pack_truncated, Expect.DETECT),
    "index truncated": (index_truncated, Expect.DETECT),
    "pack extended": (pack_extended, Expect.DETECT),
    "pack of another volume": (pack_from_another_volume, Expect.DETECT),
    "pack removed": (pack_removed, Expect.DETECT),
    "index removed": (index_removed, Expect.DETECT),
    "volume removed": (volume_removed, Expect.DETECT),
    "volume duplicated": (volume_duplicated, Expect.HARMLESS),
    "volumes swapped": (volumes_swapped, Expect.HARMLESS),
    "older foreign volume": (foreign_older, Expect.DETECT),
    "newer foreign volume": (foreign_newer, Expect.DETECT),
    "signed by another key": (signed_by_another_key, Expect.DETECT),
    "index edited, re-signed": (index_edited_resigned, Expect.DETECT),
    "index edited, stale signature": (index_edited_stale_signature, Expect.DETECT),
    "index edited, unsigned": (index_edited_unsigned, Expect.DETECT),
}
