"""Rebuild lost or damaged data volumes of an export from its parity volumes.

Stripe by stripe, for each volume to rebuild: its own block when it is here and sound,
else any K sound blocks of the stripe (sound blocks of the other data volumes, read or
regenerated, and of the parity volumes) decoded by zfec. Memory is a stripe's blocks.
The rebuilt volume's index comes from the parity index (its FILES, BLOBS and END, with
the manifest and trees every index shares) and must hash to the END checksum it had
when it was written: a rebuilt volume is byte for byte the original, or it is refused
by the normal import like any damaged copy. A stripe with too few sound blocks is
written as zeros and named: the import then keeps every blob outside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import blake3

from protocol.manifest import encode_manifest
from protocol.media import encode_trees, end_frame, index_body
from protocol.parity import Member, ParityIndex
from syncd.media.errors import MediaError
from syncd.media.layout import INDEX_NAME, volume_name
from syncd.media.parity.code import StripeCode
from syncd.media.parity.sources import AbsentBlocks, BlockSource
from syncd.media.parity.streams import StreamWriter
from syncd.media.writer import write_index_file


@dataclass(slots=True)
class Rebuilt:
    volume: int
    path: Path
    lost: list[int] = field(default_factory=list)  # stripes that could not be recovered
    why: str = ""  # what was missing at the first lost stripe

    def describe(self, index: ParityIndex) -> str:
        h = index.header
        label = f"volume {self.volume}/{h.data_volumes} of export {h.volume.export_id}"
        if not self.lost:
            return f"{label}: rebuilt from parity"
        block = h.block_size
        spans = _ranges(self.lost)
        shown = ", ".join(f"bytes {a * block}..{(b + 1) * block - 1}" for a, b in spans[:4])
        more = f" and {len(spans) - 4} more range(s)" if len(spans) > 4 else ""
        return (
            f"{label}: cannot be rebuilt in full: {shown}{more} lost ({len(self.lost)} of its "
            f"blocks; {self.why}); its other blobs are imported"
        )


def _ranges(stripes: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s in stripes:
        if out and out[-1][1] == s - 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


class Rebuilder:
    """Rebuilds `needed` data volumes of the export `index` describes into `folder`."""

    def __init__(
        self,
        index: ParityIndex,
        data: dict[int, BlockSource],  # data volume number -> where its blocks come from
        parity: dict[int, BlockSource],  # parity volume number -> its blocks
    ) -> None:
        self.index = index
        self.data = data
        self.parity = parity
        h = index.header
        self.k, self.block = h.data_volumes, h.block_size
        self.code = StripeCode(h.data_volumes, h.parity)

    def rebuild(self, needed: list[int], folder: Path) -> list[Rebuilt]:
        members = {m.volume: m for m in self.index.members}
        shared = encode_manifest(self.index.manifest), encode_trees(self.index.trees.items())
        out: list[Rebuilt] = []
        writers: dict[int, StreamWriter] = {}
        try:
            for number in needed:
                path = folder / volume_name(number)
                path.mkdir(parents=True)
                self._write_index(path, members[number], *shared)
                files = members[number].files
                writers[number] = StreamWriter(
                    path, [f.name for f in files], [f.size for f in files]
                )
                out.append(Rebuilt(number, path))
            self._stripes({r.volume: r for r in out}, members, writers)
        except OSError as exc:
            raise MediaError(f"{folder}: cannot write a rebuilt volume: {exc.strerror}") from exc
        finally:
            for writer in writers.values():
                writer.close()
        return out

    def _write_index(self, path: Path, member: Member, manifest: bytes, trees: bytes) -> None:
        header = replace(self.index.header.volume, volume=member.volume, volumes=self.k)
        body = index_body(header, member.files, trees, member.blobs, manifest)
        if blake3.blake3(body).digest() != member.checksum:
            raise MediaError(
                f"the parity index of export {header.export_id} does not reproduce the index of "
                f"volume {member.volume} (its checksum differs): the parity volume is not usable"
            )
        write_index_file(path / INDEX_NAME, body + end_frame(member.checksum, member.signature))

    def _stripes(
        self,
        rebuilt: dict[int, Rebuilt],
        members: dict[int, Member],
        writers: dict[int, StreamWriter],
    ) -> None:
        for stripe in range(self.index.header.stripes):
            here = [n for n in rebuilt if stripe < len(members[n].blocks)]
            if not here:
                continue
            blocks = self._stripe(stripe, here)
            for number in here:
                data = blocks.get(number - 1)
                if data is None:
                    rebuilt[number].lost.append(stripe)
                    rebuilt[number].why = rebuilt[number].why or self._why(stripe)
                    data = bytes(self.block)
                size = members[number].stream_size - stripe * self.block
                writers[number].write(data[: min(self.block, size)])

    def _stripe(self, stripe: int, here: list[int]) -> dict[int, bytes]:
        """Blocks of the stripe by code number: those of `here` when they can be had."""
        good: dict[int, bytes] = {}
        for number in here:  # a damaged volume's own block is usually sound
            self._take(good, number - 1, self.data.get(number), stripe)
        if all(n - 1 in good for n in here):
            return good
        others = [(n - 1, s) for n, s in self.data.items() if n not in here]
        others += [(n - 1, s) for n, s in self.parity.items()]  # K+1.. are K.. in the code
        for code_number, source in others:
            if len(good) >= self.k:
                break
            self._take(good, code_number, source, stripe)
        if len(good) < self.k:
            return good
        decoded = self.code.decode(good)
        return {n - 1: decoded[n - 1] for n in here}

    @staticmethod
    def _take(
        good: dict[int, bytes], code_number: int, source: BlockSource | None, stripe: int
    ) -> None:
        if source is not None:
            block = source.block(stripe)
            if block is not None:
                good[code_number] = block

    def _why(self, stripe: int) -> str:
        sound = 0
        lost: list[str] = []
        for number in range(1, self.k + self.index.header.parity + 1):
            source = self.data.get(number) if number <= self.k else self.parity.get(number)
            absent = isinstance(source, AbsentBlocks) and stripe < len(source.checksums)
            if source is None or absent:
                lost.append(f"{volume_name(number)} absent")
            elif stripe in source.lost:
                lost.append(f"{source.name} damaged there")
            else:
                sound += 1
        return f"{sound} of the {self.k} blocks needed were sound: " + ", ".join(lost)
