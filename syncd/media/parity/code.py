"""The erasure code: zfec's Reed-Solomon over GF(2^8), one stripe at a time.

zfec (Tahoe-LAFS's maintained C implementation) encodes K equal blocks into M = K + N,
the first K being the data blocks themselves, and decodes from any K of the M blocks
with their numbers. Nothing here does field arithmetic of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import zfec


class StripeCode:
    """Encoder and decoder for K data blocks and N parity blocks per stripe."""

    def __init__(self, data: int, parity: int) -> None:
        self.data = data
        self.parity = parity
        self._encoder = zfec.Encoder(data, data + parity)
        self._decoder = zfec.Decoder(data, data + parity)
        self._parity_numbers = tuple(range(data, data + parity))

    def encode(self, blocks: Sequence[bytes]) -> list[bytes]:
        """The N parity blocks of a stripe of K data blocks of equal size."""
        return [bytes(b) for b in self._encoder.encode(tuple(blocks), self._parity_numbers)]

    def decode(self, blocks: dict[int, bytes]) -> list[bytes]:
        """The K data blocks of a stripe from any K of its blocks, by number (0..K-1 the
        data blocks, K.. the parity blocks)."""
        chosen = sorted(blocks)[: self.data]
        if len(chosen) < self.data:
            raise ValueError(f"{len(chosen)} blocks, {self.data} needed")
        decoded = self._decoder.decode(tuple(blocks[n] for n in chosen), tuple(chosen))
        return [bytes(b) for b in decoded]
