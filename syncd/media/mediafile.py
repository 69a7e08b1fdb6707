"""Reading a volume index or a receipt: proven before it is decoded.

A media file comes from a disk that may have been tampered with, and decoding one costs
several times its size in memory (an unsigned index of 320 MiB once took 2.1 GB and 30 s
to decode before `--require-signed-by` refused it). So, before any of it is decoded:

1. its END frame is read from the end of the file alone (protocol/media.py
   `read_trailer`: END has one canonical size each way, signed or not);
2. the signature policy is applied to it: an unsigned file where a key is required, or
   one signed by another key or whose signature does not match its checksum, is refused
   after reading 141 bytes;
3. the checksum is compared with the BLAKE3 of every byte before END, read in chunks
   (memory: one chunk);
4. only then is the file read into memory, hashed again as it is (the medium may answer
   differently the second time), and handed to the caller to decode with the limits of
   SPEC.md section 5; the caller checks that decoding found this same END.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import blake3

from protocol.errors import ProtocolError
from protocol.media import TAIL_BYTES, Trailer, check_magic, read_trailer, signed_message
from syncd.media.signing import signature_problem
from syncd.units import format_bytes

CHUNK_BYTES = 4 << 20


class MediaFileRefused(Exception):
    """Why a media file is refused; the caller names the file and its volume."""


def read_verified(
    path: Path, magic: bytes, required_key: bytes | None, limit: int, *, follow: bool = False
) -> tuple[memoryview, Trailer]:
    """The bytes of the media file `path` once its signature (per `required_key`) and its
    checksum hold, with its END frame. `follow` allows `path` itself to be a symlink (a
    receipt named by the user); a volume's index never is one."""
    # O_NONBLOCK: a FIFO swapped in after the caller looked must not block the open (it
    # is then refused as not a regular file); reads of a regular file ignore the flag.
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise MediaFileRefused(f"cannot open it: {exc.strerror}") from exc
    try:
        return _verified(fd, magic, required_key, limit)
    except OSError as exc:
        raise MediaFileRefused(f"cannot read it: {exc.strerror}") from exc
    except ProtocolError as exc:
        raise MediaFileRefused(str(exc)) from exc
    finally:
        os.close(fd)


def _verified(
    fd: int, magic: bytes, required_key: bytes | None, limit: int
) -> tuple[memoryview, Trailer]:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise MediaFileRefused("not a regular file")
    size = info.st_size
    if size > limit:
        raise MediaFileRefused(f"larger than {format_bytes(limit)}")
    check_magic(magic, os.pread(fd, len(magic), 0))
    tail_at = max(0, size - TAIL_BYTES)
    trailer = read_trailer(magic, bytes(_whole(fd, tail_at, size - tail_at)), size)
    problem = signature_problem(
        trailer.signature, signed_message(magic, trailer.checksum), required_key
    )
    if problem is not None:
        raise MediaFileRefused(problem)
    if _hash_prefix(fd, trailer.offset) != trailer.checksum:
        raise MediaFileRefused("its checksum does not match its bytes (damaged or tampered)")
    data = _whole(fd, 0, size)
    if blake3.blake3(data[: trailer.offset], max_threads=blake3.blake3.AUTO).digest() != (
        trailer.checksum
    ):
        raise MediaFileRefused("it changed while it was read")
    return data, trailer


def _hash_prefix(fd: int, length: int) -> bytes:
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    offset = 0
    while offset < length:
        chunk = os.pread(fd, min(CHUNK_BYTES, length - offset), offset)
        if not chunk:
            raise MediaFileRefused("it shrank while it was read")
        hasher.update(chunk)
        offset += len(chunk)
    return hasher.digest()


def pread_exactly(fd: int, offset: int, length: int) -> memoryview | None:
    """`length` bytes of `fd` from `offset`, or None when the file ends first."""
    buffer = bytearray(length)
    view = memoryview(buffer)
    got = 0
    while got < length:
        n = os.preadv(fd, [view[got:]], offset + got)
        if n == 0:
            return None
        got += n
    return view


def _whole(fd: int, offset: int, length: int) -> memoryview:
    data = pread_exactly(fd, offset, length)
    if data is None:
        raise MediaFileRefused("it shrank while it was read")
    return data


def same_trailer(decoded_checksum: bytes, decoded_signature: object, trailer: Trailer) -> bool:
    """Whether decoding found the END frame that was checked (a crafted file could hold
    another frame chain than the one its last bytes suggest)."""
    return decoded_checksum == trailer.checksum and decoded_signature == trailer.signature
