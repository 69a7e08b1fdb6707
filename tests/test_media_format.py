"""protocol/media.py: golden files replayed byte for byte, hostile files refused with
their code, and no damage that goes unnoticed."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import CHUNK_SIZE
from protocol.media import (
    INDEX_FIXED_MAX,
    INDEX_PER_BLOB_MAX,
    INDEX_PER_FILE_MAX,
    MAGIC_INDEX,
    MAGIC_RECEIPT,
    MAX_FILES,
    MAX_INT,
    MAX_VOLUMES,
    BlobEntry,
    Kind,
    PackFile,
    decode_index,
    decode_receipt,
    encode_index,
    encode_receipt,
    encode_trees,
    peek_header,
)
from protocol.tree import FileNode, encode_tree, tree_id
from syncd.media.signing import signature_problem
from tests import media_vectorgen as gen

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent.parent / "protocol" / "vectors" / "media.json").read_text()
)
KEY = bytes.fromhex(VECTORS["public_key"])
SEEDED = settings(
    derandomize=True,
    deadline=None,
    database=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow],
)


def vector(name: str) -> bytes:
    return bytes.fromhex(VECTORS[name]["hex"])


def refused(decode: Any, data: bytes) -> ErrorCode:
    with pytest.raises(ProtocolError) as info:
        decode(data)
    return info.value.code


# -- golden files ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["index", "signed_index"])
def test_index_vectors_decode_to_the_recorded_values_and_reencode_exactly(name: str) -> None:
    data = vector(name)
    index = decode_index(data)
    assert gen.describe(index) == VECTORS[name]["decoded"]
    sign = gen.signer if index.signature else None
    records = sorted(index.trees.items(), key=lambda item: item[0] != index.header.target)
    again = encode_index(index.header, index.files, encode_trees(records), index.blobs, sign)
    assert again == data


def test_receipt_vector_decodes_and_reencodes_exactly() -> None:
    data = vector("receipt")
    receipt = decode_receipt(data)
    assert gen.describe(receipt) == VECTORS["receipt"]["decoded"]
    records = sorted(receipt.trees.items(), key=lambda item: item[0] != receipt.header.root)
    again = encode_receipt(receipt.header, encode_trees(records), receipt.staged, gen.signer)
    assert again == data


def test_the_generator_still_builds_the_recorded_vectors() -> None:
    """The encoders have not drifted from the recorded bytes."""
    assert gen.build() == VECTORS


def test_the_pack_vector_is_exactly_its_blobs_in_index_order() -> None:
    index = decode_index(vector("index"))
    pack = bytes.fromhex(VECTORS["pack"])
    assert len(pack) == index.files[0].size
    for entry in index.blobs:
        data = pack[entry.offset : entry.offset + entry.length]
        assert gen.digest(data) == entry.digest


def test_signatures_verify_with_the_key_and_not_otherwise() -> None:
    signed = decode_index(vector("signed_index"))
    assert signature_problem(signed.signature, signed.signed_message(), KEY) is None
    assert "another key" in str(
        signature_problem(signed.signature, signed.signed_message(), b"\x01" * 32)
    )
    unsigned = decode_index(vector("index"))
    assert "unsigned" in str(signature_problem(None, unsigned.signed_message(), KEY))
    assert signature_problem(None, unsigned.signed_message(), None) is None
    assert signed.signature is not None
    forged = replace(signed.signature, signature=bytes(64))
    assert "does not match" in str(signature_problem(forged, signed.signed_message(), None))
    receipt = decode_receipt(vector("receipt"))
    assert signature_problem(receipt.signature, receipt.signed_message(), KEY) is None
    # An index's signature is not a receipt's: the magic is part of what is signed.
    assert signature_problem(signed.signature, receipt.signed_message(), KEY) is not None


def test_peek_reads_the_header_from_the_first_frame_alone() -> None:
    data = vector("index")
    assert peek_header(data[:200]) == decode_index(data).header


# -- hostile and damaged files -------------------------------------------------------------------


@pytest.mark.parametrize("item", VECTORS["hostile_indexes"], ids=lambda item: item["name"])
def test_hostile_indexes_are_refused_with_their_code(item: dict[str, Any]) -> None:
    assert refused(decode_index, bytes.fromhex(item["hex"])) == item["code"]


@pytest.mark.parametrize("name", ["index", "signed_index", "receipt"])
def test_every_flipped_byte_and_every_truncation_is_refused(name: str) -> None:
    """The checksum covers every byte but the signature, and the signature covers the
    checksum: no damage decodes as something else."""
    data = vector(name)
    decode = decode_receipt if name == "receipt" else decode_index
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 0x40
        try:
            parsed = decode(bytes(damaged))
        except ProtocolError:
            pass
        else:
            assert signature_problem(parsed.signature, parsed.signed_message(), None)
        refused(decode, data[:i])


def test_blob_entries_must_tile_their_pack_exactly() -> None:
    header, files, trees, blobs = gen.index_parts()
    gap = [blobs[0], replace(blobs[1], offset=blobs[1].offset + 1)]
    short = [blobs[0]]
    overlap = [blobs[0], replace(blobs[1], offset=blobs[1].offset - 1)]
    twice = [blobs[0], replace(blobs[0], offset=blobs[0].length)]
    for entries in (gap, short, overlap, twice):
        data = encode_index(header, files, trees, entries)
        assert refused(decode_index, data) == ErrorCode.MALFORMED
    no_file = encode_index(header, [], trees, blobs)
    assert refused(decode_index, no_file) == ErrorCode.MALFORMED


def test_trees_must_be_exactly_those_reachable_from_the_target() -> None:
    header, files, _, blobs = gen.index_parts()
    _, records = gen.target()
    stray = encode_tree([])
    with_stray = encode_trees([*records, (tree_id(stray), stray)])
    without_sub = encode_trees(records[:1])
    repeated = encode_trees([*records, records[1]])
    for frames in (with_stray, without_sub, repeated):
        assert refused(decode_index, encode_index(header, files, frames, blobs)) == 1
    wrong_id = encode_trees([(records[0][0], records[1][1]), records[1]])
    assert refused(decode_index, encode_index(header, files, wrong_id, blobs)) == 5


def test_pack_file_names_must_be_unique_and_not_the_index() -> None:
    header, files, trees, blobs = gen.index_parts()
    for listing in ([files[0], files[0]], [replace(files[0], name="index")]):
        data = encode_index(header, listing, trees, blobs)
        assert refused(decode_index, data) == ErrorCode.BAD_PATH


def test_receipts_refuse_repeated_staged_blobs_and_unordered_volumes() -> None:
    header, trees, staged = gen.receipt_parts()
    twice = encode_receipt(header, trees, staged * 2)
    assert refused(decode_receipt, twice) == ErrorCode.MALFORMED
    assert header.last_export is not None
    unordered = replace(header, last_export=replace(header.last_export, volumes=(2, 1)))
    data = encode_receipt(unordered, trees, staged)
    assert refused(decode_receipt, data) == ErrorCode.NOT_CANONICAL
    assert refused(decode_receipt, vector("index")) == ErrorCode.MALFORMED  # wrong magic


def test_a_receipt_frame_in_an_index_is_refused() -> None:
    header, trees, staged = gen.receipt_parts()
    body = encode_receipt(header, trees, staged)
    assert refused(decode_index, MAGIC_INDEX + body[len(MAGIC_RECEIPT) :]) == 1


@SEEDED
@given(st.binary(max_size=600))
def test_decoders_raise_nothing_but_protocol_error(tail: bytes) -> None:
    for magic, decode in ((MAGIC_INDEX, decode_index), (MAGIC_RECEIPT, decode_receipt)):
        with contextlib.suppress(ProtocolError):
            decode(magic + tail)


@SEEDED
@given(st.integers(0, 600), st.binary(min_size=1, max_size=8))
def test_spliced_garbage_raises_nothing_but_protocol_error(at: int, junk: bytes) -> None:
    data = vector("signed_index")
    at = min(at, len(data))
    for damaged in (data[:at] + junk + data[at:], data[:at] + junk):
        with pytest.raises(ProtocolError):
            decode_index(damaged)


# -- sizes the planner relies on -----------------------------------------------------------------


def test_index_entries_stay_within_the_planning_bounds() -> None:
    """The planner budgets INDEX_* bytes per volume, file and blob: the largest values
    any field can take still fit."""
    header, _, _, _ = gen.index_parts()
    biggest = replace(
        header,
        export_id="x" * 64,
        created_ns=MAX_INT,
        volume=MAX_VOLUMES,
        volumes=MAX_VOLUMES,
        target_files=MAX_INT,
        target_bytes=MAX_INT,
        export_blobs=MAX_INT,
        export_bytes=MAX_INT,
    )
    files = [PackFile(f"{'p' * 60}{i:04d}", MAX_INT, bytes(32)) for i in range(MAX_FILES)]
    blobs = [BlobEntry(i.to_bytes(32, "big"), MAX_FILES - 1, MAX_INT, CHUNK_SIZE) for i in range(3)]
    empty = encode_index(biggest, [], b"", [], gen.signer)
    full = encode_index(biggest, files, b"", blobs, gen.signer)
    assert len(empty) <= INDEX_FIXED_MAX
    assert len(full) <= INDEX_FIXED_MAX + MAX_FILES * INDEX_PER_FILE_MAX + 3 * INDEX_PER_BLOB_MAX


def test_many_records_are_split_over_several_tree_frames() -> None:
    records = []
    for i in range(5000):
        name = f"f{i:05d}" + "x" * 240
        record = encode_tree([FileNode(name, 0o644, 1, 0, ((bytes(32), 1),))])
        records.append((tree_id(record), record))
    frames = encode_trees(records)
    count = 0
    at = 0
    while at < len(frames):
        count += 1
        at += 4 + int.from_bytes(frames[at : at + 4], "big")
    assert count > 1
    assert frames[4] == 0x92 and frames[5] == Kind.TREES  # [kind, [...]]
