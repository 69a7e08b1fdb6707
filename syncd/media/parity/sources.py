"""Where the far side finds each block of a stripe, each checked against its checksum.

A block of a data volume comes from the volume's pack files when the volume is here
(even a damaged one: most of its blocks are still sound), or is regenerated from the
blobs it lists when the volume was imported in an earlier run and its disk is gone
(the blobs are staged or live by now). A parity block comes from a parity volume's
files. A block that cannot be read, or does not match its checksum, is lost; the
stripe is decodable while no more blocks than parity volumes are lost.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import blake3

from protocol.parity import Member
from syncd.media.parity.streams import StreamReader

ReadPiece = Callable[[bytes, int], bytes | None]
CACHE_BYTES = 64 << 20


class BlockSource:
    """Blocks of one stream, verified against `checksums` (a block past them is zeros)."""

    def __init__(self, name: str, checksums: tuple[bytes, ...], block_size: int) -> None:
        self.name = name  # for messages: "vol-0003", "vol-0003 (regenerated)"
        self.checksums = checksums
        self.block_size = block_size
        self.lost: list[int] = []  # stripes whose block was lost, for messages

    def block(self, stripe: int) -> bytes | None:
        if stripe >= len(self.checksums):
            return bytes(self.block_size)
        try:
            data = self._read(stripe)
        except OSError:
            data = None
        if data is None or blake3.blake3(data).digest() != self.checksums[stripe]:
            self.lost.append(stripe)
            return None
        return data

    def _read(self, stripe: int) -> bytes | None:
        raise NotImplementedError

    def close(self) -> None:
        """Nothing to release by default."""


class AbsentBlocks(BlockSource):
    """A volume that is not here: nothing of it but the zeros past its stream's end,
    which still count towards a stripe where other volumes are longer."""

    def _read(self, stripe: int) -> bytes | None:
        return None


class FileBlocks(BlockSource):
    """Blocks read from files on a volume (a data volume's packs, a parity volume's)."""

    def __init__(
        self,
        name: str,
        checksums: tuple[bytes, ...],
        block_size: int,
        files: list[tuple[Path, int]],
    ) -> None:
        super().__init__(name, checksums, block_size)
        self._reader = StreamReader(files, block_size)

    def _read(self, stripe: int) -> bytes | None:
        return self._reader.block(stripe)

    def close(self) -> None:
        self._reader.close()


class BlobCache:
    """Blobs read for regenerated blocks, the most recent first, within a byte budget: a
    blob of up to 16 MiB spans several blocks, read one stripe at a time."""

    def __init__(self, read: ReadPiece, budget: int = CACHE_BYTES) -> None:
        self._read = read
        self._budget = budget
        self._held: OrderedDict[bytes, bytes] = OrderedDict()
        self._bytes = 0

    def get(self, digest: bytes, length: int) -> bytes | None:
        data = self._held.get(digest)
        if data is not None:
            self._held.move_to_end(digest)
            return data
        data = self._read(digest, length)
        if data is not None:
            self._held[digest] = data
            self._bytes += len(data)
            while self._bytes > self._budget and len(self._held) > 1:
                self._bytes -= len(self._held.popitem(last=False)[1])
        return data


class BlobBlocks(BlockSource):
    """Blocks of a data volume rebuilt from the blobs its index lists, by digest."""

    def __init__(self, name: str, member: Member, block_size: int, cache: BlobCache) -> None:
        super().__init__(name, member.blocks, block_size)
        self._cache = cache
        starts = [0]
        for f in member.files:
            starts.append(starts[-1] + f.size)
        # Each blob at its offset in the stream, in stream order (entries tile the files).
        self._spans = [(starts[b.file] + b.offset, b.length, b.digest) for b in member.blobs]
        self._offsets = [s[0] for s in self._spans]

    def _read(self, stripe: int) -> bytes | None:
        start = stripe * self.block_size
        end = start + self.block_size
        out = bytearray(self.block_size)
        at = max(0, bisect.bisect_right(self._offsets, start) - 1)
        while at < len(self._spans) and self._spans[at][0] < end:
            offset, length, digest = self._spans[at]
            data = self._cache.get(digest, length)
            if data is None:
                return None
            lo, hi = max(start, offset), min(end, offset + length)
            if lo < hi:
                out[lo - start : hi - start] = data[lo - offset : hi - offset]
            at += 1
        return bytes(out)
