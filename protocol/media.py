"""Removable media: volume indexes and receipts (SPEC.md, section 9). Sans-IO.

Both are files of the same shape: an 8-byte magic, then frames (a u32 big-endian length
and one msgpack array `[kind, fields...]`, as on the wire), in a fixed order, ending with
an END frame that carries the BLAKE3 of every byte before it and an optional Ed25519
signature over that checksum. Decoding is bounded (each frame by `Limits.max_frame`,
each msgpack object by the codec) and strict: every field's type and range is checked,
every name validated and every tree record verified against its id where it is decoded,
so a hostile or damaged file yields ProtocolError and nothing else.

A volume index describes one volume of an export: the export and the volume, the target
snapshot with all of its tree records (any single volume lets the far side work out what
it lacks), the volume's pack files with their sizes and checksums, and where each blob
lies in them. The blob entries tile each pack exactly, so a pack is nothing but its
blobs, back to back, and verifying every blob verifies every byte of it.

A receipt is the far side's state for the next export: its site id, its fresh snapshot
(all tree records), the blobs it has staged, and the last export it imported.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

import blake3

from protocol.codec import pack, unpack
from protocol.errors import ErrorCode, ProtocolError
from protocol.fields import MAX_UINT, array, boolean, data, digest, exact_bytes, fixed, uint
from protocol.limits import CHUNK_SIZE, DEFAULT_LIMITS, DIGEST_SIZE, Limits
from protocol.tree import DirNode, decode_tree, tree_id

if TYPE_CHECKING:
    from protocol.manifest import TransferManifest

MAGIC_INDEX = b"SYNCDVOL"
MAGIC_RECEIPT = b"SYNCDRCT"
MAGIC_PARITY = b"SYNCDPAR"  # protocol/parity.py
FORMAT = 1
# Format 2 adds the transfer manifest and the parity count (SPEC.md 9.9, 9.10); an
# index without either is still written, and read, as format 1.
FORMAT_MANIFEST = 2
SIGNATURE_CONTEXT = b"syncd media signature v1\x00"
SITE_ID_SIZE = 16
LINEAGE_SIZE = 16
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
MAX_VOLUMES = 9999
MAX_FILES = 9999
MAX_INT = MAX_UINT  # integers are 0 to 2^63-1 unless stated (SPEC.md, 9.2)

# Export ids and file names become folder and file names on FAT/NTFS media: ASCII
# letters, digits, '.', '_' and '-', never ':' or '/', not starting with a dot.
SAFE_NAME = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}")

# Encoders put about this many bytes of tree records, or this many entries, in one frame.
TREES_FRAME_BYTES = 1 << 20
ENTRIES_PER_FRAME = 65536

# Upper bounds of an index's size, for planning a volume before its packs exist:
# everything but the tree frames and the blob entries; one entry; one pack file.
INDEX_FIXED_MAX = 1024
INDEX_PER_BLOB_MAX = 56
INDEX_PER_FILE_MAX = 128

_LENGTH = struct.Struct(">I")


class Kind(IntEnum):
    VOLUME = 1
    FILES = 2
    TREES = 3
    BLOBS = 4
    END = 5
    RECEIPT = 6
    STAGED = 7
    MANIFEST = 8  # protocol/manifest.py
    IMAGES = 9
    CHANGES = 10
    PARITY = 11  # protocol/parity.py
    MEMBER = 12
    BLOCKS = 13


@dataclass(frozen=True, slots=True)
class Signature:
    public_key: bytes  # raw Ed25519 public key
    signature: bytes  # over signed_message(magic, checksum)


# Signs a message (signed_message's bytes); supplied by the caller, which holds the key.
Signer = Callable[[bytes], Signature]


@dataclass(frozen=True, slots=True)
class VolumeHeader:
    export_id: str
    created_ns: int  # when the export was made; orders exports (SPEC.md 9.6)
    volume: int  # 1..volumes
    volumes: int
    target: bytes  # snapshot id the export brings the far side to
    target_files: int
    target_bytes: int
    delete: bool  # the far side deletes entries the target lacks
    site: bytes | None  # the far site the export was computed for; None: any site
    export_blobs: int  # blobs in all volumes of the export
    export_bytes: int
    # The exporting source's id (16 random bytes made once per state folder), so that a
    # far side can tell another source's exports from the next ones of its own (SPEC.md
    # 9.6). None: a volume made before lineages existed (the field is then absent).
    lineage: bytes | None = None
    parity: int = 0  # parity volumes of the export (format 2), numbered after `volumes`


@dataclass(frozen=True, slots=True)
class PackFile:
    name: str
    size: int
    checksum: bytes  # BLAKE3 of the file's bytes


@dataclass(frozen=True, slots=True)
class BlobEntry:
    digest: bytes
    file: int  # position in VolumeIndex.files
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class VolumeIndex:
    header: VolumeHeader
    files: tuple[PackFile, ...]
    trees: dict[bytes, bytes]  # tree id -> canonical record, every one reachable from target
    blobs: tuple[BlobEntry, ...]  # sorted by (file, offset), tiling each file
    checksum: bytes
    signature: Signature | None
    manifest: TransferManifest | None = None  # format 2

    def signed_message(self) -> bytes:
        return signed_message(MAGIC_INDEX, self.checksum)


@dataclass(frozen=True, slots=True)
class LastExport:
    export_id: str
    created_ns: int
    applied: bool
    volumes: tuple[int, ...]  # the volume numbers imported so far, ascending


@dataclass(frozen=True, slots=True)
class ReceiptHeader:
    site: bytes
    sequence: int  # receipts of one site are numbered 1, 2, ...
    created_ns: int
    root: bytes  # the far side's snapshot id
    files: int
    bytes: int
    complete: bool  # the far side's scan left nothing out
    last_export: LastExport | None


@dataclass(frozen=True, slots=True)
class Receipt:
    header: ReceiptHeader
    trees: dict[bytes, bytes]
    staged: tuple[tuple[bytes, int], ...]  # (digest, length) the far side holds in staging
    checksum: bytes
    signature: Signature | None

    def signed_message(self) -> bytes:
        return signed_message(MAGIC_RECEIPT, self.checksum)


def signed_message(magic: bytes, checksum: bytes) -> bytes:
    """What a signature signs: a context string, the file's magic and its checksum."""
    return SIGNATURE_CONTEXT + magic + checksum


# -- encoding -----------------------------------------------------------------------------


def _frame(kind: Kind, *fields: object) -> bytes:
    body = pack([int(kind), *fields])
    return _LENGTH.pack(len(body)) + body


def encode_trees(records: Iterable[tuple[bytes, bytes]]) -> bytes:
    """TREES frames for (tree id, record) pairs; the same bytes serve every volume."""
    frames: list[bytes] = []
    batch: list[list[bytes]] = []
    size = 0
    for key, record in records:
        if batch and size + len(record) > TREES_FRAME_BYTES:
            frames.append(_frame(Kind.TREES, batch))
            batch, size = [], 0
        batch.append([key, record])
        size += len(record) + 40
    if batch:
        frames.append(_frame(Kind.TREES, batch))
    return b"".join(frames)


def _batched(kind: Kind, items: Sequence[object]) -> bytes:
    return b"".join(
        _frame(kind, list(items[i : i + ENTRIES_PER_FRAME]))
        for i in range(0, len(items), ENTRIES_PER_FRAME)
    )


def _finish(body: bytes, magic: bytes, sign: Signer | None) -> bytes:
    checksum = blake3.blake3(body).digest()
    signature = None
    if sign is not None:
        made = sign(signed_message(magic, checksum))
        signature = [made.public_key, made.signature]
    return body + _frame(Kind.END, checksum, signature)


def encode_index(
    header: VolumeHeader,
    files: Sequence[PackFile],
    trees: bytes,
    blobs: Sequence[BlobEntry],
    sign: Signer | None = None,
    *,
    manifest: bytes | None = None,
) -> bytes:
    """A volume index; `trees` is `encode_trees` of the target's records, `manifest`
    `encode_manifest` of the transfer manifest (format 2; None: format 1)."""
    return _finish(index_body(header, files, trees, blobs, manifest), MAGIC_INDEX, sign)


def index_body(
    header: VolumeHeader,
    files: Sequence[PackFile],
    trees: bytes,
    blobs: Sequence[BlobEntry],
    manifest: bytes | None,
) -> bytes:
    """Every byte of an index before its END frame (a parity volume rebuilds a data
    volume's index from these parts and its END)."""
    if manifest is None and header.parity:
        raise ValueError("parity volumes need a format-2 index (with a manifest)")
    head = _frame(
        Kind.VOLUME, *volume_fields(header, FORMAT if manifest is None else FORMAT_MANIFEST)
    )
    listing = _frame(Kind.FILES, [[f.name, f.size, f.checksum] for f in files])
    entries = [[b.digest, b.file, b.offset, b.length] for b in blobs]
    return MAGIC_INDEX + head + listing + (manifest or b"") + trees + _batched(Kind.BLOBS, entries)


def volume_fields(h: VolumeHeader, format_: int) -> list[object]:
    """The VOLUME frame's fields in order: format 1 ends with the optional `lineage`,
    format 2 adds `parity` and then `lineage` (nil when absent); a parity index's PARITY
    frame starts with the same ones (protocol/parity.py)."""
    fields: list[object] = [
        format_,
        h.export_id,
        h.created_ns,
        h.volume,
        h.volumes,
        h.target,
        h.target_files,
        h.target_bytes,
        h.delete,
        h.site,
        h.export_blobs,
        h.export_bytes,
    ]
    if format_ == FORMAT:
        return fields if h.lineage is None else [*fields, h.lineage]
    return [*fields, h.parity, h.lineage]


def seal_index(body: bytes, sign: Signer | None) -> bytes:
    """`index_body` closed by its END frame, signed when `sign` is given."""
    return _finish(body, MAGIC_INDEX, sign)


def end_frame(checksum: bytes, signature: Signature | None) -> bytes:
    """An END frame as `_finish` writes it."""
    sig = None if signature is None else [signature.public_key, signature.signature]
    return _frame(Kind.END, checksum, sig)


def encode_receipt(
    header: ReceiptHeader,
    trees: bytes,
    staged: Sequence[tuple[bytes, int]],
    sign: Signer | None = None,
) -> bytes:
    h = header
    last = None
    if h.last_export is not None:
        e = h.last_export
        last = [e.export_id, e.created_ns, e.applied, list(e.volumes)]
    head = _frame(
        Kind.RECEIPT,
        FORMAT,
        h.site,
        h.sequence,
        h.created_ns,
        h.root,
        h.files,
        h.bytes,
        h.complete,
        last,
    )
    entries: list[list[object]] = [[digest, length] for digest, length in staged]
    body = MAGIC_RECEIPT + head + trees + _batched(Kind.STAGED, entries)
    return _finish(body, MAGIC_RECEIPT, sign)


# -- decoding: frames -----------------------------------------------------------------------


class _Frames:
    """The frames of one file, in order, each decoded within the limits, with one frame
    of look-ahead (a run of frames of one kind ends at the first of another)."""

    def __init__(self, data: bytes | memoryview, magic: bytes, limits: Limits) -> None:
        self._data = memoryview(data)
        self._limits = limits
        check_magic(magic, bytes(self._data[: len(magic)]))
        self._at = len(magic)
        self._peeked: tuple[list[object], int] | None = None

    def _read(self) -> tuple[list[object], int]:
        """The next frame and the offset where it starts."""
        if self._peeked is not None:
            frame, self._peeked = self._peeked, None
            return frame
        data, at = self._data, self._at
        if at + _LENGTH.size > len(data):
            raise ProtocolError(ErrorCode.TRUNCATED, "the file ends before its END frame")
        (length,) = _LENGTH.unpack_from(data, at)
        if length > self._limits.max_frame:
            raise ProtocolError(ErrorCode.LIMIT, f"frame of {length} bytes at offset {at}")
        end = at + _LENGTH.size + length
        if end > len(data):
            raise ProtocolError(ErrorCode.TRUNCATED, f"frame at offset {at} is cut short")
        value = unpack(data[at + _LENGTH.size : end], self._limits)
        if not isinstance(value, list) or not value or type(value[0]) is not int:
            raise ProtocolError(ErrorCode.MALFORMED, f"frame at offset {at} is not [kind, ...]")
        self._at = end
        return value, at

    def expect(self, kind: Kind, arity: int) -> list[object]:
        """The fields of the next frame, which must be of `kind` with `arity` fields."""
        frame, _ = self._read()
        return _fields(frame, kind, arity)

    def versioned(self, kind: Kind, arities: dict[int, tuple[int, ...]]) -> list[object]:
        """The fields of the next frame of `kind`, whose first field is a format number
        with the numbers of fields it allows (`arities`: a later optional field makes
        two); VERSION for another format."""
        frame, _ = self._read()
        if frame[0] != kind or len(frame) < 2:
            return _fields(frame, kind, min(min(a) for a in arities.values()))  # raises
        if type(frame[1]) is not int or frame[1] not in arities:
            raise ProtocolError(ErrorCode.VERSION, f"media format {frame[1]!r} is not supported")
        allowed = arities[frame[1]]
        return _fields(frame, kind, len(frame) - 1 if len(frame) - 1 in allowed else allowed[0])

    def each(self, kind: Kind) -> Iterator[list[object]]:
        """The arrays carried by the run of `kind` frames that comes next (maybe none)."""
        while True:
            frame, at = self._read()
            if frame[0] != kind:
                self._peeked = (frame, at)
                return
            (items,) = _fields(frame, kind, 1)
            yield array(items, f"{kind.name} frame")

    def end(self) -> tuple[bytes, Signature | None]:
        """Read the END frame, which must close the file and match its checksum."""
        frame, at = self._read()
        checksum_field, signature_field = _fields(frame, Kind.END, 2)
        checksum = digest(checksum_field, "END checksum")
        if self._at != len(self._data):
            raise ProtocolError(ErrorCode.MALFORMED, "bytes after the END frame")
        if blake3.blake3(self._data[:at]).digest() != checksum:
            raise ProtocolError(ErrorCode.HASH_MISMATCH, "checksum does not match the file")
        return checksum, _signature(signature_field)


def _fields(frame: list[object], kind: Kind, arity: int) -> list[object]:
    if frame[0] != kind:
        raise ProtocolError(ErrorCode.MALFORMED, f"expected a {kind.name} frame, got {frame[0]}")
    if len(frame) != arity + 1:
        raise ProtocolError(ErrorCode.MALFORMED, f"{kind.name} frame: wrong number of fields")
    return frame[1:]


def _signature(value: object) -> Signature | None:
    if value is None:
        return None
    key, sig = fixed(value, "signature", 2)
    return Signature(
        exact_bytes(key, "signature: public key", PUBLIC_KEY_SIZE),
        exact_bytes(sig, "signature: signature", SIGNATURE_SIZE),
    )


# -- the END frame alone, from the end of the file ------------------------------------------

# END is `[5, checksum, nil]` or `[5, checksum, [public_key, signature]]`. Its canonical
# encoding has one size each way, so it is found from the end of a file without reading
# what comes before it: a reader checks the signature, then the checksum, streaming, and
# decodes only a file that passed both.
END_FRAME_UNSIGNED = _LENGTH.size + 1 + 1 + (2 + DIGEST_SIZE) + 1
END_FRAME_SIGNED = END_FRAME_UNSIGNED - 1 + 1 + (2 + PUBLIC_KEY_SIZE) + (2 + SIGNATURE_SIZE)
TAIL_BYTES = END_FRAME_SIGNED  # the last bytes of a file that read_trailer needs


@dataclass(frozen=True, slots=True)
class Trailer:
    """A media file's END frame: `checksum` is claimed for the bytes before `offset`."""

    offset: int
    checksum: bytes
    signature: Signature | None


def check_magic(magic: bytes, head: bytes) -> None:
    """`head`, a file's first bytes, must start with `magic`."""
    if head[: len(magic)] != magic:
        raise ProtocolError(ErrorCode.MALFORMED, f"not a syncd {_what(magic)} (bad magic)")


def _what(magic: bytes) -> str:
    names = {MAGIC_INDEX: "volume index", MAGIC_PARITY: "parity index"}
    return names.get(magic, "receipt")


def read_trailer(magic: bytes, tail: bytes, size: int) -> Trailer:
    """The END frame of a file of `size` bytes whose last bytes are `tail` (the last
    TAIL_BYTES, or the whole file when shorter). Nothing else of the file is trusted or
    needed; decoding the whole file later must find this same frame."""
    what = _what(magic)
    if size < len(magic) + END_FRAME_UNSIGNED:
        raise ProtocolError(ErrorCode.TRUNCATED, f"the {what} is too short to hold its END frame")
    for length in (END_FRAME_SIGNED, END_FRAME_UNSIGNED):
        if size - length < len(magic):
            continue
        frame = tail[len(tail) - length :]
        if _LENGTH.unpack_from(frame)[0] != length - _LENGTH.size:
            continue
        try:
            value = unpack(frame[_LENGTH.size :])
        except ProtocolError:
            continue
        if not isinstance(value, list) or len(value) != 3 or value[0] != Kind.END:
            continue
        checksum = digest(value[1], "END checksum")
        return Trailer(size - length, checksum, _signature(value[2]))
    raise ProtocolError(ErrorCode.MALFORMED, f"the {what} does not end with an END frame")


# -- decoding: values -----------------------------------------------------------------------


def safe_name(value: object, what: str) -> str:
    """A name usable as a file or folder name on any medium (SAFE_NAME), else BAD_PATH."""
    if not isinstance(value, str):
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}: expected a string")
    if SAFE_NAME.fullmatch(value) is None:
        raise ProtocolError(ErrorCode.BAD_PATH, f"{what} {value!r} is not a safe file name")
    return value


def _format(value: object) -> None:
    if value != FORMAT or type(value) is not int:
        raise ProtocolError(ErrorCode.VERSION, f"media format {value!r} is not supported")


# -- decoding: volume index -------------------------------------------------------------------


def decode_index(data: bytes | memoryview, limits: Limits = DEFAULT_LIMITS) -> VolumeIndex:
    """Decode and validate a whole volume index (its checksum included, not its signature:
    checking that needs a key, see syncd/media/signing.py)."""
    # Imported here: protocol/manifest.py builds on this module's frame reader.
    from protocol.manifest import decode_manifest  # noqa: PLC0415

    frames = _Frames(data, MAGIC_INDEX, limits)
    fields = frames.versioned(Kind.VOLUME, _VOLUME_ARITY)
    header = _volume_header(fields)
    (listing,) = frames.expect(Kind.FILES, 1)
    files = _files(listing)
    manifest = decode_manifest(frames) if fields[0] == FORMAT_MANIFEST else None
    trees = _trees(frames, header.target, limits)
    blobs = _blobs(frames, files)
    checksum, signature = frames.end()
    return VolumeIndex(header, files, trees, blobs, checksum, signature, manifest)


def peek_header(data: bytes | memoryview, limits: Limits = DEFAULT_LIMITS) -> VolumeHeader:
    """The header of a volume index from its first bytes alone, unverified: enough to put
    volumes in order before each is read and verified in full."""
    return _volume_header(_Frames(data, MAGIC_INDEX, limits).versioned(Kind.VOLUME, _VOLUME_ARITY))


# Format 1: 12 fields, 13 with a lineage; format 2: 14 (parity, then lineage or nil).
_VOLUME_ARITY = {FORMAT: (12, 13), FORMAT_MANIFEST: (14,)}


def _volume_header(f: list[object]) -> VolumeHeader:
    volumes = uint(f[4], "volume count", 1, MAX_VOLUMES)
    site = None if f[9] is None else exact_bytes(f[9], "site id", SITE_ID_SIZE)
    return VolumeHeader(
        export_id=safe_name(f[1], "export id"),
        created_ns=uint(f[2], "created"),
        volume=uint(f[3], "volume number", 1, volumes),
        volumes=volumes,
        target=digest(f[5], "target snapshot"),
        target_files=uint(f[6], "target files"),
        target_bytes=uint(f[7], "target bytes"),
        delete=boolean(f[8], "delete"),
        site=site,
        export_blobs=uint(f[10], "export blobs"),
        export_bytes=uint(f[11], "export bytes"),
        **_volume_tail(f, volumes),
    )


def _volume_tail(f: list[object], volumes: int) -> dict[str, Any]:
    """`parity` and `lineage`, where each format puts them (volume_fields)."""
    if f[0] == FORMAT:
        return {"lineage": _lineage(f[12]) if len(f) > 12 else None}
    return {
        "parity": uint(f[12], "parity volumes", 0, MAX_VOLUMES - volumes),
        "lineage": None if f[13] is None else _lineage(f[13]),
    }


def _lineage(value: object) -> bytes:
    return exact_bytes(value, "lineage", LINEAGE_SIZE)


def _files(value: object) -> tuple[PackFile, ...]:
    items = array(value, "FILES")
    if len(items) > MAX_FILES:
        raise ProtocolError(ErrorCode.LIMIT, f"more than {MAX_FILES} pack files")
    files: list[PackFile] = []
    for item in items:
        name, size, checksum = fixed(item, "pack file", 3)
        files.append(
            PackFile(
                safe_name(name, "pack file name"),
                uint(size, "pack file size"),
                digest(checksum, "pack file checksum"),
            )
        )
    names = [f.name for f in files]
    if len(set(names)) != len(names) or "index" in names:
        raise ProtocolError(ErrorCode.BAD_PATH, "pack file names repeat or name the index")
    return tuple(files)


def _trees(frames: _Frames, root: bytes, limits: Limits) -> dict[bytes, bytes]:
    """Every TREES frame: records verified against their ids, validated, and exactly the
    set reachable from `root`."""
    records: dict[bytes, bytes] = {}
    for items in frames.each(Kind.TREES):
        for item in items:
            key_field, record_field = fixed(item, "tree", 2)
            key, record = digest(key_field, "tree id"), data(record_field, "tree record")
            if tree_id(record) != key:
                raise ProtocolError(ErrorCode.HASH_MISMATCH, f"tree {key.hex()}: wrong record")
            if records.setdefault(key, record) is not record:
                raise ProtocolError(ErrorCode.MALFORMED, f"tree {key.hex()} is listed twice")
    _check_closure(records, root, limits)
    return records


def _check_closure(records: dict[bytes, bytes], root: bytes, limits: Limits) -> None:
    seen = {root}
    todo = [root]
    while todo:
        key = todo.pop()
        record = records.get(key)
        if record is None:
            raise ProtocolError(ErrorCode.MALFORMED, f"tree {key.hex()} is missing")
        for node in decode_tree(record, limits):
            if isinstance(node, DirNode) and node.tree not in seen:
                seen.add(node.tree)
                todo.append(node.tree)
    if len(seen) != len(records):
        raise ProtocolError(ErrorCode.MALFORMED, "tree records not reachable from the root")


def _blobs(frames: _Frames, files: tuple[PackFile, ...]) -> tuple[BlobEntry, ...]:
    """Every BLOBS frame: entries in (file, offset) order, tiling each file exactly."""
    entries: list[BlobEntry] = []
    seen: set[bytes] = set()
    ends = [0] * len(files)
    last_file = 0
    for items in frames.each(Kind.BLOBS):
        for item in items:
            entry = _blob_entry(item, len(files))
            if entry.digest in seen:
                raise ProtocolError(ErrorCode.MALFORMED, f"blob {entry.digest.hex()} twice")
            if entry.file < last_file or entry.offset != ends[entry.file]:
                raise ProtocolError(
                    ErrorCode.MALFORMED, f"blob {entry.digest.hex()}: not where the last one ended"
                )
            seen.add(entry.digest)
            last_file, ends[entry.file] = entry.file, entry.offset + entry.length
            entries.append(entry)
    for file, end in zip(files, ends, strict=True):
        if end != file.size:
            raise ProtocolError(
                ErrorCode.MALFORMED, f"{file.name}: blobs cover {end} of its {file.size} bytes"
            )
    return tuple(entries)


def _blob_entry(item: object, files: int) -> BlobEntry:
    key, file, offset, length = fixed(item, "blob entry", 4)
    if not files:
        raise ProtocolError(ErrorCode.MALFORMED, "a blob entry, but no pack file")
    return BlobEntry(
        digest(key, "blob digest"),
        uint(file, "blob file", 0, files - 1),
        uint(offset, "blob offset"),
        uint(length, "blob length", 1, CHUNK_SIZE),
    )


# -- decoding: receipt ------------------------------------------------------------------------


def decode_receipt(data: bytes | memoryview, limits: Limits = DEFAULT_LIMITS) -> Receipt:
    """Decode and validate a whole receipt (checksum included, not its signature)."""
    frames = _Frames(data, MAGIC_RECEIPT, limits)
    header = _receipt_header(frames.expect(Kind.RECEIPT, 9))
    trees = _trees(frames, header.root, limits)
    staged = _staged(frames)
    checksum, signature = frames.end()
    return Receipt(header, trees, staged, checksum, signature)


def _receipt_header(f: list[object]) -> ReceiptHeader:
    _format(f[0])
    return ReceiptHeader(
        site=exact_bytes(f[1], "site id", SITE_ID_SIZE),
        sequence=uint(f[2], "receipt sequence", 1),
        created_ns=uint(f[3], "created"),
        root=digest(f[4], "snapshot"),
        files=uint(f[5], "files"),
        bytes=uint(f[6], "bytes"),
        complete=boolean(f[7], "complete"),
        last_export=None if f[8] is None else _last_export(f[8]),
    )


def _last_export(value: object) -> LastExport:
    export_id, created, applied, volumes = fixed(value, "last export", 4)
    numbers = [uint(v, "imported volume", 1, MAX_VOLUMES) for v in array(volumes, "volumes")]
    if numbers != sorted(set(numbers)):
        raise ProtocolError(ErrorCode.NOT_CANONICAL, "imported volumes not strictly ascending")
    return LastExport(
        safe_name(export_id, "export id"),
        uint(created, "export created"),
        boolean(applied, "applied"),
        tuple(numbers),
    )


def _staged(frames: _Frames) -> tuple[tuple[bytes, int], ...]:
    staged: dict[bytes, int] = {}
    for items in frames.each(Kind.STAGED):
        for item in items:
            key_field, length = fixed(item, "staged blob", 2)
            key = digest(key_field, "staged digest")
            if key in staged:
                raise ProtocolError(ErrorCode.MALFORMED, f"staged blob {key.hex()} twice")
            staged[key] = uint(length, "staged length", 1, CHUNK_SIZE)
    return tuple(staged.items())
