"""The hostile campaign's inputs: crafted tree records, frames, bombs and volume indexes.

Every builder here returns bytes that a hostile peer or medium could hold; none of them
goes through the validating encoders (encode_tree would refuse to write '..').
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import blake3
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocol.codec import pack
from protocol.connection import MIN_PEER_FRAME
from protocol.framing import HEADER
from protocol.media import MAGIC_INDEX, Kind, decode_index, encode_index, encode_trees
from protocol.messages import Hello, MsgType, Offer, encode_message
from protocol.tree import tree_id

VECTORS = Path(__file__).resolve().parent.parent / "protocol" / "vectors"
DATA = b"hello, far side"
PIECE = blake3.blake3(DATA).digest()
FOUR_GIB = b"\xff\xff\xff\xff"


def file_item(name: str, data: bytes = DATA) -> list[object]:
    digest = blake3.blake3(data).digest()
    return [name, 0, 0o644, len(data), 0, [[digest, len(data)]]]


def dir_item(name: str, tree: bytes) -> list[object]:
    return [name, 1, 0o755, tree]


def link_item(name: str, target: str) -> list[object]:
    return [name, 2, target]


def record(*children: list[object]) -> tuple[bytes, bytes]:
    """(id, record) of a tree with these children, encoded without any validation."""
    data = pack(list(children))
    return tree_id(data), data


def not_utf8_record() -> tuple[bytes, bytes]:
    """A file named by two bytes that are not UTF-8 (msgpack str header, raw bytes)."""
    data = pack([file_item("AA")]).replace(b"\xa2AA", b"\xa2\xff\xfe", 1)
    return tree_id(data), data


def deep_chain(
    levels: int, data: bytes = DATA, leaf: str = "f", middle: str = ""
) -> dict[bytes, bytes]:
    """Nested directories of 255-byte names (`middle` after the level's number), a file
    `leaf` of `data` at the bottom: a path over PATH_MAX. The first entry returned is the
    root."""
    key, record_ = record(file_item(leaf, data))
    chain = {key: record_}
    for level in range(levels):
        name = f"{level:03d}{middle}" + "d" * (252 - len(middle.encode()))
        key, record_ = record(dir_item(name, key))
        chain = {key: record_, **chain}
    return chain


# name -> (children of the root record, expected codes, a word the error must contain)
EVIL_NAMES: dict[str, tuple[list[object], tuple[str, ...], str]] = {
    "name '..'": (file_item(".."), ("BAD_PATH",), ".."),
    "name '.'": (file_item("."), ("BAD_PATH",), "'.'"),
    "name with '/'": (file_item("a/b"), ("BAD_PATH",), "/"),
    "absolute name": (file_item("/etc/cron.d/evil"), ("BAD_PATH",), "/"),
    "name with NUL": (file_item("x\x00y"), ("BAD_PATH",), "NUL"),
    "empty name": (file_item(""), ("BAD_PATH",), "invalid name"),
    "name of 256 bytes": (file_item("n" * 256), ("LIMIT",), "255"),
    "symlink target with NUL": (link_item("l", "/tmp\x00x"), ("MALFORMED",), "target"),
    "symlink target of 5000 bytes": (link_item("l", "t" * 5000), ("LIMIT",), "too long"),
}


def frame(body: bytes) -> bytes:
    return HEADER.pack(len(body)) + body


# name -> (msgpack payload sent as a frame while the server waits for TREES, codes)
BOMBS: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "array32 declaring 4 Gi items": (b"\xdd" + FOUR_GIB, ("LIMIT",)),
    "map32 declaring 4 Gi pairs": (b"\xdf" + FOUR_GIB, ("LIMIT",)),
    # msgpack finds these cut short before it compares them with the limit: TRUNCATED.
    "bin32 declaring 4 GiB": (b"\xc6" + FOUR_GIB, ("LIMIT", "TRUNCATED")),
    "str32 declaring 4 GiB": (b"\xdb" + FOUR_GIB, ("LIMIT", "TRUNCATED")),
    "ext32 declaring 4 GiB": (b"\xc9" + FOUR_GIB + b"\x01", ("LIMIT", "MALFORMED")),
    "100,000 nested arrays": (b"\x91" * 100_000, ("MALFORMED", "LIMIT", "TRUNCATED")),
    "100,000 nested maps": (b"\x81\xa1k" * 100_000 + b"\x00", ("MALFORMED", "LIMIT")),
    "TREES holding an array32 of 4 Gi": (b"\x92\x05\xdd" + FOUR_GIB, ("LIMIT",)),
    "TREES record declaring 16 MiB": (
        b"\x92\x05\x91\x92\xc4\x20" + PIECE * 1 + b"\xc6\x01\x00\x00\x00",
        ("TRUNCATED", "MALFORMED", "LIMIT"),
    ),
}


def hello(**params: str | int | bool) -> bytes:
    base: dict[str, str | int | bool] = {"max_frame": MIN_PEER_FRAME + 65536}
    return frame(pack(encode_message(Hello((1, 1), "hostile", (), {**base, **params}))))


def offer(root: bytes) -> bytes:
    return frame(pack(encode_message(Offer(root, 1, 1, True, True))))


def raw_message(kind: MsgType, *fields: object) -> bytes:
    return frame(pack([int(kind), *fields]))


# -- media ---------------------------------------------------------------------------------


def media_vectors() -> dict[str, object]:
    vectors: dict[str, object] = json.loads((VECTORS / "media.json").read_text())
    return vectors


def sound_pack() -> bytes:
    return bytes.fromhex(str(media_vectors()["pack"]))


def hostile_index_vectors() -> dict[str, bytes]:
    hostile = media_vectors()["hostile_indexes"]
    assert isinstance(hostile, list)
    return {f"vector: {h['name']}": bytes.fromhex(h["hex"]) for h in hostile}


def index_with_trees(root: bytes, trees: dict[bytes, bytes]) -> bytes:
    """The golden unsigned index with its target and tree records replaced by `trees`
    (checksum recomputed): self-consistent bytes that name whatever `trees` names."""
    index = decode_index(sound_index())
    header = replace(index.header, target=root, site=None)  # for any site: no receipt needed
    records = sorted(trees.items(), key=lambda item: item[0] != root)
    return encode_index(header, index.files, encode_trees(records), index.blobs, None)


def media_blob() -> bytes:
    """The first blob of the golden pack, for file records in crafted indexes to name."""
    entry = decode_index(sound_index()).blobs[0]
    return sound_pack()[entry.offset : entry.offset + entry.length]


def sound_index() -> bytes:
    vector = media_vectors()["index"]
    assert isinstance(vector, dict)
    return bytes.fromhex(vector["hex"])


# -- large indexes (issue 13, item 6) --------------------------------------------------------


def big_index(size: int) -> bytes:
    """An unsigned, decodable index of about `size` bytes: the golden one with its target
    replaced by a root of directories of 10,000 files each (about 1 MiB per record)."""
    blob = media_blob()
    digest = blake3.blake3(blob).digest()
    records: list[tuple[bytes, bytes]] = []
    subdirs: list[list[object]] = []
    total = r = 0
    while total < size:
        r += 1
        pad = "p" * 40
        items = [
            [f"f{r:05d}-{i:05d}-{pad}", 0, 0o644, len(blob), 0, [[digest, len(blob)]]]
            for i in range(10_000)
        ]
        key, data = record(*items)
        records.append((key, data))
        total += len(data)
        subdirs.append(dir_item(f"d{r:05d}", key))
    root, data = record(*subdirs)
    return index_with_trees(root, {root: data, **dict(records)})


def write_junk_index(path: Path, size: int) -> None:
    """`size` bytes that start like an index and end with an honest, unsigned END frame,
    zeros between (sparse, so cheap to make): never decodable, refused before that."""
    with path.open("wb") as out:
        out.write(MAGIC_INDEX)
        out.truncate(size)
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    checksum = hasher.update_mmap(path).digest()
    with path.open("ab") as out:
        out.write(frame(pack([int(Kind.END), checksum, None])))


def write_public_key(path: Path) -> None:
    """An OpenSSH ed25519 public key no index is signed with."""
    key = Ed25519PrivateKey.generate().public_key()
    path.write_bytes(key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH) + b"\n")


# -- texts shown to people (issue 14, item 6; issue 13, item 7) ------------------------------
# What a hostile far side or medium would write to reach an operator's terminal or log:
# colours, a window title (OSC 0), bells, other C0 controls, DEL, a C1 CSI, bidi
# overrides and bytes that are not UTF-8. reliability/hostile_text.py uses them.

TERMINAL_TRICKS = "\033[1;31mRED\033[0m \x1b]0;owned\x07 \001\007\x7f \x9b2J \u202eevil\u202c"
NOT_UTF8 = b"\xff\xfe\xc3"


def escape_names(levels: int, data: bytes = DATA) -> dict[bytes, bytes]:
    """deep_chain's path over PATH_MAX, named with terminal escapes."""
    return deep_chain(levels, data, leaf="\x1b]0;owned\x07", middle="\x1b[2J\x07\u202e")
