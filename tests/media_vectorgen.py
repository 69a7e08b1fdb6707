"""Build protocol/vectors/media.json: golden volume indexes and receipts (SPEC.md 9).

Run `python -m tests.media_vectorgen` after a deliberate format change (and bump the
media format if old readers would misread it). The tests decode and re-encode the file's
bytes exactly; they never regenerate it. Ed25519 signatures are deterministic, so the
signed vectors are fixed too (the key is a fixed test seed, never used for anything).
"""

from __future__ import annotations

import json
import struct
from dataclasses import replace
from pathlib import Path

import blake3
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocol.codec import pack
from protocol.manifest import (
    Change,
    ImageChange,
    PathChange,
    TransferManifest,
    encode_manifest,
)
from protocol.media import (
    MAGIC_INDEX,
    MAGIC_RECEIPT,
    BlobEntry,
    Kind,
    LastExport,
    PackFile,
    ReceiptHeader,
    Signature,
    VolumeHeader,
    decode_index,
    decode_receipt,
    encode_index,
    encode_receipt,
    encode_trees,
)
from protocol.parity import MAGIC_PARITY, Member, ParityHeader, decode_parity, encode_parity
from protocol.tree import DirNode, FileNode, LinkNode, encode_tree, tree_id
from syncd.apply.incoming import content_key
from syncd.media.parity.code import StripeCode

OUT = Path(__file__).resolve().parent.parent / "protocol" / "vectors" / "media.json"
SEED = bytes(range(32))
CREATED = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
SITE = bytes(range(16))
EXPORT_ID = "20260101T000000Z-0a1b2c3d"

LINK = b"sha256:" + b"0" * 64
DATA = b"layer bytes " * 10


def digest(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


def signer(message: bytes) -> Signature:
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return Signature(public, key.sign(message))


def target() -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """A root with a file, a subdirectory holding a link file, and a symlink."""
    sub = encode_tree([FileNode("link", 0o644, len(LINK), CREATED, ((digest(LINK), len(LINK)),))])
    root = encode_tree(
        [
            FileNode("data", 0o644, len(DATA), CREATED, ((digest(DATA), len(DATA)),)),
            LinkNode("latest", "repo/link"),
            DirNode("repo", 0o755, tree_id(sub)),
        ]
    )
    return tree_id(root), [(tree_id(root), root), (tree_id(sub), sub)]


def index_parts() -> tuple[VolumeHeader, list[PackFile], bytes, list[BlobEntry]]:
    root, records = target()
    size = len(DATA) + len(LINK)
    header = VolumeHeader(EXPORT_ID, CREATED, 1, 1, root, 2, size, True, SITE, 2, size)
    pack_bytes = DATA + LINK
    files = [PackFile("pack-0001", len(pack_bytes), digest(pack_bytes))]
    blobs = [
        BlobEntry(digest(DATA), 0, 0, len(DATA)),
        BlobEntry(digest(LINK), 0, len(DATA), len(LINK)),
    ]
    return header, files, encode_trees(records), blobs


def receipt_parts() -> tuple[ReceiptHeader, bytes, list[tuple[bytes, int]]]:
    root, records = target()
    last = LastExport(EXPORT_ID, CREATED, False, (1,))
    header = ReceiptHeader(SITE, 3, CREATED, root, 2, len(DATA) + len(LINK), True, last)
    return header, encode_trees(records), [(digest(b"staged"), 6)]


def _fields(value: object) -> dict[str, object]:
    fields = {name: getattr(value, name) for name in value.__dataclass_fields__}  # type: ignore[attr-defined]
    if "lineage" in fields and fields["lineage"] is None:
        del fields["lineage"]  # the vectors are volumes without one (SPEC.md 9.3: optional)
    return fields


def describe(value: object) -> object:
    """JSON-friendly form: bytes as hex, tree maps as sorted pairs, dataclasses by field."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple | list):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return sorted([k.hex(), v.hex()] for k, v in value.items())
    if hasattr(value, "__dataclass_fields__"):
        return {k: describe(v) for k, v in _fields(value).items()}
    return value


# -- hostile files ---------------------------------------------------------------------------


def frame(kind: Kind, *fields: object) -> bytes:
    body = pack([int(kind), *fields])
    return struct.pack(">I", len(body)) + body


def sealed(body: bytes) -> bytes:
    """`body` closed by a correct END frame, so that only the defect planted in it shows."""
    return body + frame(Kind.END, digest(body), None)


def volume_frame(**changes: object) -> bytes:
    header, _, _, _ = index_parts()
    values = {**_fields(header), **changes}
    if values.pop("parity") and changes.get("format") == 2:
        raise ValueError("a format-2 VOLUME frame of the vectors keeps its parity out")
    return frame(
        Kind.VOLUME,
        values.pop("format", 1),
        *values.values(),
    )


def index_with(
    *, volume: bytes | None = None, files: object = None, trees: bytes | None = None
) -> bytes:
    _, good_files, good_trees, blobs = index_parts()
    listing = files if files is not None else [[f.name, f.size, f.checksum] for f in good_files]
    entries = [[b.digest, b.file, b.offset, b.length] for b in blobs]
    body = (
        MAGIC_INDEX
        + (volume if volume is not None else volume_frame())
        + frame(Kind.FILES, listing)
        + (trees if trees is not None else good_trees)
        + frame(Kind.BLOBS, entries)
    )
    return sealed(body)


def evil_record() -> bytes:
    """A root record naming '..': canonical msgpack with the right id, an unsafe name."""
    return pack([["..", 0, 0o644, len(DATA), 0, [[digest(DATA), len(DATA)]]]])


def evil_index() -> bytes:
    record = evil_record()
    return index_with(
        volume=volume_frame(target=tree_id(record)),
        trees=frame(Kind.TREES, [[tree_id(record), record]]),
    )


def hostile() -> list[dict[str, object]]:
    good = index_with()
    _, files, _, _ = index_parts()
    checksum = files[0].checksum
    cases: list[tuple[str, bytes, int]] = [
        ("pack file named ../evil", index_with(files=[["../evil", 80, checksum]]), 3),
        ("pack file named /etc/passwd", index_with(files=[["/etc/passwd", 80, checksum]]), 3),
        ("pack file named with ':'", index_with(files=[["pack:1", 80, checksum]]), 3),
        ("tree record naming ..", evil_index(), 3),
        ("export id with '/'", index_with(volume=volume_frame(export_id="a/../b")), 3),
        ("frame length 4 GiB - 1", MAGIC_INDEX + b"\xff\xff\xff\xff", 2),
        (
            "array header declaring 4 billion entries",
            MAGIC_INDEX + struct.pack(">I", 6) + b"\xdd\xff\xff\xff\xff\x01",
            2,
        ),
        ("volume number as a string", index_with(volume=volume_frame(volume="1")), 1),
        ("volume number as a boolean", index_with(volume=volume_frame(volume=True)), 1),
        ("volume beyond the count", index_with(volume=volume_frame(volume=2)), 1),
        ("unknown format", index_with(volume=volume_frame(format=3)), 7),
        ("format 2 without its parity field", index_with(volume=volume_frame(format=2)), 1),
        ("checksum of other bytes", good[:-33] + bytes(32) + good[-1:], 5),
        ("truncated", good[:-10], 8),
        ("bytes after END", good + b"\x00", 1),
        ("not an index", b"SYNCDXXX" + good[8:], 1),
    ]
    return [{"name": name, "hex": data.hex(), "code": code} for name, data, code in cases]


# -- format 2: the transfer manifest, parity volumes (SPEC.md 9.9, 9.10) -------------------------

BLOCK = 4096


def manifest() -> TransferManifest:
    registry = "cache/docker/registry/v2"
    images = (
        ImageChange(Change.ADDED, registry, "openshift/release", "4.18.1", "sha256:" + "1" * 64,
                    "", ("linux/amd64", "linux/arm64")),
        ImageChange(Change.CHANGED, registry, "ubi9/ubi", "9.5", "sha256:" + "2" * 64,
                    "sha256:" + "3" * 64, ("linux/amd64",)),
        ImageChange(Change.REMOVED, registry, "old/tool", "v1", "", "sha256:" + "4" * 64, ()),
    )  # fmt: skip
    paths = (
        PathChange(Change.ADDED, "data", len(DATA), content_key(((digest(DATA), len(DATA)),))),
        PathChange(
            Change.CHANGED, "repo/link", len(LINK), content_key(((digest(LINK), len(LINK)),))
        ),
        PathChange(Change.REMOVED, "gone", 0, None),
    )
    return TransferManifest("receipt #3 of site 'default'", bytes(range(32)), images, paths)


def parity_parts() -> tuple[VolumeHeader, bytes, bytes, list[BlobEntry], bytes, bytes]:
    """A format-2 export of one data volume and one parity volume: the data volume's
    header, its index (signed), its pack, its blob entries, the parity volume's index
    (signed) and its parity file."""
    header, files, trees, blobs = index_parts()
    header = replace(header, parity=1)
    shared = encode_manifest(manifest())
    pack = DATA + LINK
    data_index = encode_index(header, files, trees, blobs, signer, manifest=shared)
    block = pack + bytes(BLOCK - len(pack))
    (parity_block,) = StripeCode(1, 1).encode([block])
    decoded = decode_index(data_index)
    member = Member(
        1, tuple(files), tuple(blobs), (digest(block),), decoded.checksum, decoded.signature
    )
    parity_files = [PackFile("parity-0001", BLOCK, digest(parity_block))]
    p_header = ParityHeader(replace(header, volume=2), BLOCK, 1)
    parity_index = encode_parity(
        p_header, parity_files, [digest(parity_block)], [member], shared=shared + trees, sign=signer
    )
    return header, data_index, pack, blobs, parity_index, parity_block


def hostile_parity() -> list[dict[str, object]]:
    _, data_index, _, _, good, _ = parity_parts()
    parsed = decode_parity(good)
    shared = encode_manifest(parsed.manifest) + encode_trees(parsed.trees.items())

    def again(
        header: ParityHeader | None = None, member: Member | None = None, blocks: object = None
    ) -> bytes:
        return encode_parity(
            header or parsed.header,
            parsed.files,
            parsed.blocks if blocks is None else blocks,  # type: ignore[arg-type]
            [member or parsed.members[0]],
            shared=shared,
        )

    h = parsed.header
    m = parsed.members[0]
    cases: list[tuple[str, bytes, int]] = [
        ("block size not a power of two", again(header=replace(h, block_size=5000)), 1),
        ("block size too small", again(header=replace(h, block_size=1024)), 1),
        ("more stripes than the parity files hold", again(header=replace(h, stripes=2)), 1),
        ("member numbered 2 where 1 belongs", again(member=replace(m, volume=2)), 1),
        ("member with a block checksum too many", again(member=replace(m, blocks=m.blocks * 2)), 1),
        ("parity volume numbered inside the data volumes",
         again(header=replace(h, volume=replace(h.volume, volume=1))), 1),
        ("wider than GF(2^8) allows",
         again(header=replace(h, volume=replace(h.volume, volumes=200, parity=57, volume=201))), 1),
        ("a data index where a parity index belongs", data_index, 1),
        ("cut short", good[:-20], 8),
    ]  # fmt: skip
    return [{"name": name, "hex": data.hex(), "code": code} for name, data, code in cases]


def hostile_manifests() -> list[dict[str, object]]:
    header, files, trees, blobs = index_parts()
    header = replace(header, parity=0)
    good = manifest()
    image = good.images[0]
    path = good.paths[0]

    def with_image(**change: str) -> TransferManifest:
        return replace(good, images=(replace(image, **change),))  # type: ignore[arg-type]

    def with_path(text: str) -> TransferManifest:
        return replace(good, paths=(replace(path, path=text),))

    variants = [
        ("manifest tag with a space", with_image(tag="a b"), 1),
        ("manifest repository in capitals", with_image(repository="Open/Shift"), 1),
        ("manifest digest not hex", with_image(digest="sha256:xyz"), 1),
        ("manifest path escaping the root", with_path("../etc/passwd"), 3),
        ("manifest absolute path", with_path("/etc/passwd"), 3),
        ("manifest basis with an escape sequence", replace(good, basis="\x1b[2Jgone"), 1),
    ]
    cases = [
        (name, encode_index(header, files, trees, blobs, manifest=encode_manifest(m)), code)
        for name, m, code in variants
    ]
    counted = encode_manifest(good)
    # MANIFEST announces one more path than its CHANGES frames hold.
    head = pack(
        [int(Kind.MANIFEST), good.basis, good.basis_root, len(good.images), len(good.paths) + 1]
    )
    first = struct.unpack(">I", counted[:4])[0] + 4
    wrong = struct.pack(">I", len(head)) + head + counted[first:]
    cases.append(("manifest announcing more paths than it holds",
                  encode_index(header, files, trees, blobs, manifest=wrong), 1))  # fmt: skip
    return [{"name": name, "hex": data.hex(), "code": code} for name, data, code in cases]


def build() -> dict[str, object]:
    header, files, trees, blobs = index_parts()
    unsigned = encode_index(header, files, trees, blobs)
    signed = encode_index(header, files, trees, blobs, signer)
    r_header, r_trees, staged = receipt_parts()
    receipt = encode_receipt(r_header, r_trees, staged, signer)
    return {
        "format": 1,
        "public_key": signer(b"").public_key.hex(),
        "pack": (DATA + LINK).hex(),
        "index": {"hex": unsigned.hex(), "decoded": describe(decode_index(unsigned))},
        "signed_index": {"hex": signed.hex(), "decoded": describe(decode_index(signed))},
        "receipt": {"hex": receipt.hex(), "decoded": describe(decode_receipt(receipt))},
        "hostile_indexes": hostile(),
        "magic": {
            "index": MAGIC_INDEX.hex(),
            "receipt": MAGIC_RECEIPT.hex(),
            "parity": MAGIC_PARITY.hex(),
        },
        **build_format2(),
    }


def build_format2() -> dict[str, object]:
    _, data_index, _, _, parity_index, parity_block = parity_parts()
    return {
        "manifest_index": {"hex": data_index.hex(), "decoded": describe(decode_index(data_index))},
        "parity_index": {
            "hex": parity_index.hex(),
            "decoded": describe(decode_parity(parity_index)),
        },
        "parity_block_size": BLOCK,
        "parity_file": parity_block.hex(),
        "hostile_manifests": hostile_manifests(),
        "hostile_parity": hostile_parity(),
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {OUT}")
