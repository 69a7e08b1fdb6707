"""Tar member headers as Go's archive/tar writes them when no format is asked for.

oc-mirror builds its archives with Go's `tar.FileInfoHeader` + `Writer.WriteHeader`, so
the generated archives use the same rules: a USTAR header when the name fits in 100
bytes, or can be split at a `/` into a 155-byte prefix and a 100-byte name (Go keeps the
longest prefix that fits); otherwise a PAX 'x' record named `<dir>/PaxHeaders.0/<base>`
carrying `path` (and `size` past 8 GiB) before a USTAR-magic main header. The archive
ends with two zero blocks and no record padding. The owner defaults to 0/0 (root) so
that the same tree gives the same bytes on any machine; an `Owner` with a large id (an
SSSD or AD account) or a name over 32 characters makes Go add `uid`/`gid` and
`uname`/`gname` PAX records to every member, writing zero and the truncated name in the
USTAR fields (archive/tar writer.go's formatter: a number that does not fit is written
as zero, a string is cut to its field).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

BLOCK = 512
END_OF_ARCHIVE = bytes(2 * BLOCK)
_NAME, _PREFIX = 100, 155
_MAX_OCTAL_SIZE = 8**11 - 1  # an 11-digit octal size field holds up to 8 GiB - 1
_MAX_OCTAL_ID = 8**7 - 1  # a 7-digit octal uid/gid field: 2,097,151
_MAX_OWNER_NAME = 32


@dataclass(frozen=True, slots=True)
class Owner:
    uid: int = 0
    name: str = "root"


ROOT = Owner()


def padding(size: int) -> bytes:
    """Zero bytes that round member data of `size` bytes up to a whole block."""
    return bytes(-size % BLOCK)


def member_header(name: str, size: int, mode: int, mtime: int, owner: Owner = ROOT) -> bytes:
    """Header block(s) for a regular file member."""
    records: dict[str, str] = {}
    if owner.uid > _MAX_OCTAL_ID:
        records["uid"] = records["gid"] = str(owner.uid)
    if len(owner.name) > _MAX_OWNER_NAME or not owner.name.isascii():
        records["uname"] = records["gname"] = owner.name
    prefix, short = "", name
    if len(name) > _NAME or not name.isascii():
        split = _split_ustar(name)
        if split is None:
            records["path"] = name
        else:
            prefix, short = split
    if size > _MAX_OCTAL_SIZE:
        records["size"] = str(size)
    main = _main_block(short, prefix, size if "size" not in records else 0, mode, mtime, owner)
    if not records:
        return main
    return _pax_block(name, records) + main


def _split_ustar(name: str) -> tuple[str, str] | None:
    if not name.isascii():
        return None
    limit = min(len(name), _PREFIX + 1)
    cut = name.rfind("/", 0, limit)
    if cut <= 0 or cut > _PREFIX or not 0 < len(name) - cut - 1 <= _NAME:
        return None
    return name[:cut], name[cut + 1 :]


def _main_block(  # noqa: PLR0917 - the header's fields, in the header's order
    name: str, prefix: str, size: int, mode: int, mtime: int, owner: Owner = ROOT
) -> bytes:
    block = bytearray(BLOCK)
    owner_id = owner.uid if owner.uid <= _MAX_OCTAL_ID else 0
    _put_str(block, 0, 100, _ascii(name))
    _put_octal(block, 100, 8, mode)
    _put_octal(block, 108, 8, owner_id)
    _put_octal(block, 116, 8, owner_id)
    _put_octal(block, 124, 12, size)
    _put_octal(block, 136, 12, mtime)
    block[156] = ord("0")
    _put_str(block, 265, 32, _ascii(owner.name))
    _put_str(block, 297, 32, _ascii(owner.name))
    _put_octal(block, 329, 8, 0)
    _put_octal(block, 337, 8, 0)
    _put_str(block, 345, 155, prefix)
    return _finish(block)


def _pax_block(name: str, records: dict[str, str]) -> bytes:
    data = "".join(_pax_record(key, records[key]) for key in sorted(records)).encode()
    head, base = posixpath.split(name)
    pax_name = _ascii(posixpath.join(head, "PaxHeaders.0", base))[:_NAME].rstrip("/")
    block = bytearray(BLOCK)
    _put_str(block, 0, 100, pax_name)
    for offset, width in ((100, 8), (108, 8), (116, 8), (136, 12)):
        _put_octal(block, offset, width, 0)
    _put_octal(block, 124, 12, len(data))
    block[156] = ord("x")
    return _finish(block) + data + padding(len(data))


def _pax_record(key: str, value: str) -> str:
    # The length prefix counts itself, so it may need one more digit once included.
    body = f" {key}={value}\n"
    size = len(body) + len(str(len(body)))
    if len(str(size)) + len(body) != size:
        size += 1
    return f"{size}{body}"


def _finish(block: bytearray) -> bytes:
    block[257:265] = b"ustar\x0000"
    block[148:156] = b" " * 8
    _put_octal(block, 148, 7, sum(block))
    block[155] = ord(" ")
    return bytes(block)


def _put_str(block: bytearray, offset: int, width: int, text: str) -> None:
    raw = text.encode()[:width]
    block[offset : offset + len(raw)] = raw


def _put_octal(block: bytearray, offset: int, width: int, value: int) -> None:
    # Zero-padded octal with a NUL in the last byte, as Go's formatOctal writes it.
    digits = format(value, "o").rjust(width - 1, "0")
    _put_str(block, offset, width - 1, digits)
    block[offset + width - 1] = 0


def _ascii(text: str) -> str:
    return "".join(ch for ch in text if ch.isascii())
