"""Write the parity volumes of an export, once its data volumes are written.

The data volumes' streams are read back stripe by stripe (K blocks, then the N parity
blocks zfec makes of them): memory is (K + N) blocks whatever the size of the export.
Each block is hashed on the way, for the parity indexes' block checksums; each parity
volume's stream goes into its parity files as it is made, and its index follows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import blake3

from protocol.media import PackFile, Signer, VolumeHeader
from protocol.parity import Member, ParityHeader, blocks_of, decode_end, encode_parity
from syncd.apply.durable import fsync_dir
from syncd.media.errors import MediaError
from syncd.media.layout import INDEX_NAME, volume_name
from syncd.media.parity.code import StripeCode
from syncd.media.parity.geometry import Geometry
from syncd.media.parity.streams import StreamReader, StreamWriter, split_sizes
from syncd.media.writer import WrittenVolume, write_index_file

PARITY_FILE = "parity-{:04d}"


@dataclass(frozen=True, slots=True)
class ParitySource:
    """What every parity volume of an export shares."""

    header: VolumeHeader  # the export's header (with `volumes` K and `parity` N)
    shared: bytes  # the manifest and TREES frames, as in every data volume's index
    geometry: Geometry
    sign: Signer | None
    max_file_size: int


def write_parity(
    folder: Path,
    data: list[WrittenVolume],
    source: ParitySource,
    advance: Callable[[int], None],
) -> list[WrittenVolume]:
    """Write parity volumes K+1..K+N into `folder`, durably, from the data volumes."""
    g = source.geometry
    numbers = [g.data + j for j in range(1, g.parity + 1)]
    paths = [folder / volume_name(n) for n in numbers]
    sizes = split_sizes(g.stream_bytes, source.max_file_size)
    names = [PARITY_FILE.format(i) for i in range(1, len(sizes) + 1)]
    for path in paths:
        path.mkdir()
    readers = [
        StreamReader([(v.path / f.name, f.size) for f in v.files], g.block_size) for v in data
    ]
    writers = [StreamWriter(path, names, sizes) for path in paths]
    try:
        data_blocks, parity_blocks = _stripes(readers, writers, g, advance)
    except OSError as exc:
        raise MediaError(f"{folder}: cannot write the parity volumes: {exc.strerror}") from exc
    finally:
        for reader in readers:
            reader.close()
        for writer in writers:
            writer.close()
    members = [_member(v, blocks) for v, blocks in zip(data, data_blocks, strict=True)]
    return [
        _finish_volume(path, number, writer.files, blocks=blocks, members=members, source=source)
        for path, number, writer, blocks in zip(paths, numbers, writers, parity_blocks, strict=True)
    ]


def _stripes(
    readers: list[StreamReader],
    writers: list[StreamWriter],
    g: Geometry,
    advance: Callable[[int], None],
) -> tuple[list[list[bytes]], list[list[bytes]]]:
    """Code every stripe; the block checksums of each data and each parity stream."""
    code = StripeCode(g.data, g.parity)
    data_sums: list[list[bytes]] = [[] for _ in readers]
    parity_sums: list[list[bytes]] = [[] for _ in writers]
    for stripe in range(g.stripes):
        blocks = [reader.block(stripe) for reader in readers]
        for reader, block, sums in zip(readers, blocks, data_sums, strict=True):
            if stripe < blocks_of(reader.size, g.block_size):
                sums.append(blake3.blake3(block).digest())
        for writer, block, sums in zip(writers, code.encode(blocks), parity_sums, strict=True):
            writer.write(block)
            sums.append(blake3.blake3(block).digest())
        advance(g.block_size * g.parity)
    return data_sums, parity_sums


def _member(volume: WrittenVolume, blocks: list[bytes]) -> Member:
    checksum, signature = decode_end(volume.end)
    return Member(
        volume.number,
        tuple(volume.files),
        tuple(volume.entries),
        tuple(blocks),
        checksum,
        signature,
    )


def _finish_volume(
    path: Path,
    number: int,
    files: list[PackFile],
    *,
    blocks: list[bytes],
    members: list[Member],
    source: ParitySource,
) -> WrittenVolume:
    g = source.geometry
    header = ParityHeader(replace(source.header, volume=number), g.block_size, g.stripes)
    index = encode_parity(header, files, blocks, members, shared=source.shared, sign=source.sign)
    if len(index) > source.max_file_size:
        raise MediaError(f"{path}: parity index of {len(index)} bytes exceeds the file size limit")
    write_index_file(path / INDEX_NAME, index)
    try:
        fsync_dir(path)
    except OSError as exc:
        raise MediaError(f"{path}: cannot sync: {exc.strerror}") from exc
    return WrittenVolume(number, path, 0, g.stream_bytes, len(index), kind="parity")
