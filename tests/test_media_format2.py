"""Media format 2 (SPEC.md 9.9, 9.10): the transfer manifest and parity indexes, golden
files replayed byte for byte, the erasure code pinned, hostile files refused by code."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from protocol.errors import ProtocolError
from protocol.manifest import encode_manifest
from protocol.media import (
    INDEX_FIXED_MAX,
    decode_index,
    encode_index,
    encode_trees,
    end_frame,
    index_body,
    peek_header,
)
from protocol.parity import decode_parity, encode_parity, peek_parity
from syncd.media.parity.code import StripeCode
from syncd.media.parity.geometry import Geometry, block_size, parity_index_max
from syncd.media.plan import MediaLimits, plan_volumes
from syncd.media.signing import signature_problem
from tests import media_vectorgen as gen

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent.parent / "protocol" / "vectors" / "media.json").read_text()
)
KEY = bytes.fromhex(VECTORS["public_key"])


def vector(name: str) -> bytes:
    return bytes.fromhex(VECTORS[name]["hex"])


def test_a_manifest_index_decodes_to_its_values_and_reencodes_exactly() -> None:
    data = vector("manifest_index")
    index = decode_index(data)
    assert gen.describe(index) == VECTORS["manifest_index"]["decoded"]
    assert index.manifest is not None and index.header.parity == 1
    assert [i.reference for i in index.manifest.images] == [
        "openshift/release:4.18.1",
        "ubi9/ubi:9.5",
        "old/tool:v1",
    ]
    again = encode_index(
        index.header,
        index.files,
        encode_trees(index.trees.items()),
        index.blobs,
        gen.signer,
        manifest=encode_manifest(index.manifest),
    )
    assert again == data
    assert signature_problem(index.signature, index.signed_message(), KEY) is None
    assert peek_header(data[:300]) == index.header


def test_a_parity_index_decodes_to_its_values_and_reencodes_exactly() -> None:
    data = vector("parity_index")
    index = decode_parity(data)
    assert gen.describe(index) == VECTORS["parity_index"]["decoded"]
    shared = encode_manifest(index.manifest) + encode_trees(index.trees.items())
    again = encode_parity(
        index.header, index.files, index.blocks, index.members, shared=shared, sign=gen.signer
    )
    assert again == data
    assert signature_problem(index.signature, index.signed_message(), KEY) is None
    assert peek_parity(data[:300]) == index.header


def test_the_parity_file_is_zfecs_code_of_the_padded_stream() -> None:
    """The code is pinned: K=1, N=1 of zfec's Reed-Solomon (a copy, for one data block),
    and the general case agrees with any K of the K + N blocks decoding."""
    block = bytes.fromhex(VECTORS["pack"])
    padded = block + bytes(VECTORS["parity_block_size"] - len(block))
    assert StripeCode(1, 1).encode([padded]) == [bytes.fromhex(VECTORS["parity_file"])]
    code = StripeCode(3, 2)
    blocks = [bytes([n]) * 64 for n in (1, 2, 3)]
    every = blocks + code.encode(blocks)
    for lost in ((0, 1), (1, 4), (3, 4), (0, 2)):
        kept = {n: b for n, b in enumerate(every) if n not in lost}
        assert code.decode(kept) == blocks


def test_a_parity_index_rebuilds_its_data_volumes_index_byte_for_byte() -> None:
    parity = decode_parity(vector("parity_index"))
    member = parity.members[0]
    header = replace(parity.header.volume, volume=member.volume)
    body = index_body(
        header,
        member.files,
        encode_trees(parity.trees.items()),
        member.blobs,
        encode_manifest(parity.manifest),
    )
    assert body + end_frame(member.checksum, member.signature) == vector("manifest_index")


@pytest.mark.parametrize("item", VECTORS["hostile_manifests"], ids=lambda item: item["name"])
def test_hostile_manifests_are_refused_with_their_code(item: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_index(bytes.fromhex(item["hex"]))
    assert info.value.code == item["code"]


@pytest.mark.parametrize("item", VECTORS["hostile_parity"], ids=lambda item: item["name"])
def test_hostile_parity_indexes_are_refused_with_their_code(item: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_parity(bytes.fromhex(item["hex"]))
    assert info.value.code == item["code"]


def test_every_flipped_byte_of_a_parity_index_is_refused() -> None:
    data = vector("parity_index")
    for i in range(0, len(data), 3):
        damaged = bytearray(data)
        damaged[i] ^= 0x40
        try:
            parsed = decode_parity(bytes(damaged))
        except ProtocolError:
            continue
        assert signature_problem(parsed.signature, parsed.signed_message(), None)


def test_block_size_locates_damage_finely_and_stays_in_bounds() -> None:
    assert block_size(0) == 4096
    assert block_size(10 << 20) == 16384
    assert block_size(64 << 30) == 1 << 20
    g = Geometry.of([100_000, 4096 * 3, 0], 2)
    assert (g.data, g.parity, g.block_size, g.stripes) == (3, 2, 4096, 25)


def test_the_parity_index_bound_holds_for_a_real_index() -> None:
    parity = decode_parity(vector("parity_index"))
    member = parity.members[0]
    plans = plan_volumes(
        [(b.digest, b.length) for b in member.blobs], INDEX_FIXED_MAX, MediaLimits(None)
    )
    shared = len(encode_manifest(parity.manifest) + encode_trees(parity.trees.items()))
    geometry = Geometry(1, 1, parity.header.block_size, parity.header.stripes)
    assert len(vector("parity_index")) <= parity_index_max(plans, shared, geometry, 2**32 - 1)
