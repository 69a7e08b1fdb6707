"""Parity volumes: the index of a volume that lets the far side rebuild lost ones
(SPEC.md 9.10). Sans-IO.

An export with parity N has K data volumes and N parity volumes, numbered K+1..K+N.
Each data volume's pack files, in order, are one byte stream; the K streams are cut into
blocks of `block_size` at equal offsets (a short stream padded with zeros), and each
stripe of K blocks is erasure-coded (Reed-Solomon, by the caller) into N parity blocks,
stripe after stripe: parity volume j's pack files are its blocks back to back.

A parity index is a volume index of its own kind (magic `SYNCDPAR`), checksummed and
signed as one: PARITY (the export's VOLUME fields and the code's geometry), FILES (its
own parity files), BLOCKS (a BLAKE3-256 of each of its own blocks), the export's
transfer manifest and TREES, then one MEMBER section per data volume: its END checksum
and signature, its FILES, BLOBS and BLOCKS. With those, any parity volume rebuilds a
lost data volume's index byte for byte (its own checksum and signature then verify as
usual), and the block checksums say which blocks of a damaged volume are sound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from protocol.codec import unpack
from protocol.errors import ErrorCode, ProtocolError
from protocol.fields import digest, uint
from protocol.limits import DEFAULT_LIMITS, Limits
from protocol.manifest import TransferManifest, decode_manifest
from protocol.media import (
    FORMAT_MANIFEST,
    MAGIC_PARITY,
    MAX_VOLUMES,
    BlobEntry,
    Kind,
    PackFile,
    Signature,
    Signer,
    VolumeHeader,
    _batched,
    _blobs,
    _files,
    _finish,
    _frame,
    _Frames,
    _signature,
    _trees,
    _volume_header,
    signed_message,
    volume_fields,
)

MIN_BLOCK = 4096
MAX_BLOCK = 1 << 20
MAX_WIDTH = 256  # data + parity volumes of one set: the code works in GF(2^8)

# Upper bounds, for planning a parity volume before it is written.
PARITY_FIXED_MAX = 1024
MEMBER_FIXED_MAX = 256
PER_BLOCK_MAX = 40


@dataclass(frozen=True, slots=True)
class Member:
    """One data volume, as a parity volume records it."""

    volume: int
    files: tuple[PackFile, ...]
    blobs: tuple[BlobEntry, ...]
    blocks: tuple[bytes, ...]  # BLAKE3 of each block of its stream (zero-padded)
    checksum: bytes  # its index's END
    signature: Signature | None

    @property
    def stream_size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True, slots=True)
class ParityHeader:
    volume: VolumeHeader  # the export's VOLUME fields; `volume` is this parity volume's number
    block_size: int
    stripes: int

    @property
    def data_volumes(self) -> int:
        return self.volume.volumes

    @property
    def parity(self) -> int:
        return self.volume.parity


@dataclass(frozen=True, slots=True)
class ParityIndex:
    header: ParityHeader
    files: tuple[PackFile, ...]  # this volume's parity files
    blocks: tuple[bytes, ...]  # BLAKE3 of each of its blocks
    manifest: TransferManifest
    trees: dict[bytes, bytes]
    members: tuple[Member, ...]  # data volumes 1..K
    checksum: bytes
    signature: Signature | None

    def signed_message(self) -> bytes:
        return signed_message(MAGIC_PARITY, self.checksum)


def blocks_of(size: int, block_size: int) -> int:
    return -(-size // block_size)


def decode_end(frame: bytes) -> tuple[bytes, Signature | None]:
    """The checksum and signature of an index's END frame (its last bytes, as written)."""
    value = unpack(frame[4:])
    if not isinstance(value, list) or len(value) != 3 or value[0] != Kind.END:
        raise ProtocolError(ErrorCode.MALFORMED, "not an END frame")
    return digest(value[1], "END checksum"), _signature(value[2])


# -- encoding --------------------------------------------------------------------------------


def encode_parity(
    header: ParityHeader,
    files: Sequence[PackFile],
    blocks: Sequence[bytes],
    members: Sequence[Member],
    *,
    shared: bytes,
    sign: Signer | None = None,
) -> bytes:
    """A parity index; `shared` is the manifest and TREES frames every index of the
    export holds, in that order."""
    fields = volume_fields(header.volume, FORMAT_MANIFEST)
    head = _frame(Kind.PARITY, *fields, header.block_size, header.stripes)
    body = [MAGIC_PARITY, head, _listing(files), _batched(Kind.BLOCKS, blocks), shared]
    for m in members:
        sig = None if m.signature is None else [m.signature.public_key, m.signature.signature]
        entries = [[b.digest, b.file, b.offset, b.length] for b in m.blobs]
        body += [
            _frame(Kind.MEMBER, m.volume, m.checksum, sig),
            _listing(m.files),
            _batched(Kind.BLOBS, entries),
            _batched(Kind.BLOCKS, m.blocks),
        ]
    return _finish(b"".join(body), MAGIC_PARITY, sign)


def _listing(files: Sequence[PackFile]) -> bytes:
    return _frame(Kind.FILES, [[f.name, f.size, f.checksum] for f in files])


# -- decoding --------------------------------------------------------------------------------


def decode_parity(data: bytes | memoryview, limits: Limits = DEFAULT_LIMITS) -> ParityIndex:
    """Decode and validate a whole parity index (checksum included, not its signature)."""
    frames = _Frames(data, MAGIC_PARITY, limits)
    header = _parity_header(frames.versioned(Kind.PARITY, {FORMAT_MANIFEST: (16,)}))
    (listing,) = frames.expect(Kind.FILES, 1)
    files = _files(listing)
    blocks = _blocks(frames, "parity")
    stream = sum(f.size for f in files)
    if stream != header.stripes * header.block_size or len(blocks) != header.stripes:
        raise ProtocolError(
            ErrorCode.MALFORMED, "parity files and blocks do not match the stripe count"
        )
    manifest = decode_manifest(frames)
    trees = _trees(frames, header.volume.target, limits)
    members = tuple(_member(frames, header, number) for number in range(1, header.data_volumes + 1))
    if max(len(m.blocks) for m in members) != header.stripes:
        raise ProtocolError(ErrorCode.MALFORMED, "the longest data volume does not fill stripes")
    checksum, signature = frames.end()
    return ParityIndex(header, files, blocks, manifest, trees, members, checksum, signature)


def peek_parity(data: bytes | memoryview, limits: Limits = DEFAULT_LIMITS) -> ParityHeader:
    """The header of a parity index from its first bytes alone, unverified."""
    frames = _Frames(data, MAGIC_PARITY, limits)
    return _parity_header(frames.versioned(Kind.PARITY, {FORMAT_MANIFEST: (16,)}))


def _parity_header(f: list[object]) -> ParityHeader:
    volumes = uint(f[4], "data volume count", 1, MAX_VOLUMES)
    parity = uint(f[12], "parity volume count", 1, MAX_WIDTH - volumes)
    number = uint(f[3], "parity volume number", volumes + 1, volumes + parity)
    # A format-2 VOLUME frame's fields (for a data volume's number) share its checks.
    header = _volume_header([*f[:3], 1, *f[4:14]])
    block = uint(f[14], "block size", MIN_BLOCK, MAX_BLOCK)
    if block & (block - 1):
        raise ProtocolError(ErrorCode.MALFORMED, f"block size {block} is not a power of two")
    stripes = uint(f[15], "stripe count")
    return ParityHeader(replace(header, volume=number), block, stripes)


def _blocks(frames: _Frames, what: str) -> tuple[bytes, ...]:
    return tuple(
        digest(item, f"{what} block checksum")
        for items in frames.each(Kind.BLOCKS)
        for item in items
    )


def _member(frames: _Frames, header: ParityHeader, number: int) -> Member:
    volume, checksum, signature = frames.expect(Kind.MEMBER, 3)
    if uint(volume, "member volume", 1, MAX_VOLUMES) != number:
        raise ProtocolError(ErrorCode.MALFORMED, f"member {volume} where {number} belongs")
    (listing,) = frames.expect(Kind.FILES, 1)
    files = _files(listing)
    blobs = _blobs(frames, files)
    blocks = _blocks(frames, f"volume {number}")
    size = sum(f.size for f in files)
    if len(blocks) != blocks_of(size, header.block_size) or len(blocks) > header.stripes:
        raise ProtocolError(
            ErrorCode.MALFORMED, f"volume {number}: {len(blocks)} block checksums for {size} bytes"
        )
    return Member(
        number,
        files,
        blobs,
        blocks,
        digest(checksum, "member checksum"),
        _signature(signature),
    )


__all__ = [
    "MAGIC_PARITY",
    "Member",
    "ParityHeader",
    "ParityIndex",
    "blocks_of",
    "decode_end",
    "decode_parity",
    "encode_parity",
    "peek_parity",
]
