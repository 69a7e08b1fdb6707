"""A volume index or receipt is proven before it is decoded (issue 13, item 6): its END
frame is read from the end of the file, the signature policy applied to it, and the
checksum compared streaming; only then is the file decoded. A refused file is never
decoded and costs one read chunk of memory, whatever its size."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import blake3
import pytest

from protocol.codec import pack
from protocol.framing import HEADER
from protocol.media import MAGIC_INDEX, MAGIC_RECEIPT, Kind, Signature, signed_message
from reliability import hostile_cases as hc
from syncd.media import basis, volume
from syncd.media.errors import ReceiptRefused, VolumeRefused
from syncd.media.signing import load_public_key, load_signer
from syncd.media.sites import SiteBook
from syncd.state import StateDir
from tests.mediautil import import_, keypair

BIG = 64 << 20


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("keys")
    return {name: keypair(folder, name) for name in ("ours", "theirs")}


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object) -> None:
        raise AssertionError("a file that is refused must not be decoded")

    monkeypatch.setattr(volume, "decode_index", refuse)
    monkeypatch.setattr(basis, "decode_receipt", refuse)


def end_frame(checksum: bytes, signature: Signature | None) -> bytes:
    sig = None if signature is None else [signature.public_key, signature.signature]
    body = pack([int(Kind.END), checksum, sig])
    return HEADER.pack(len(body)) + body


def junk_file(path: Path, magic: bytes, size: int, signer: Path | None, *, honest: bool) -> None:
    """`magic`, then zeros up to `size` (sparse: cheap to make), then END. With `honest`
    the checksum is the real one, else a wrong one; signed by `signer` when given."""
    with path.open("wb") as out:
        out.write(magic)
        out.truncate(size)
    prefix = path.read_bytes() if honest else b""
    checksum = blake3.blake3(prefix).digest() if honest else b"\x07" * 32
    signature = load_signer(signer)(signed_message(magic, checksum)) if signer else None
    with path.open("ab") as out:
        out.write(end_frame(checksum, signature))


def volume_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "20260101T000000Z-0a1b2c3d" / "vol-0001"
    folder.mkdir(parents=True)
    (folder / "pack-0001").write_bytes(hc.sound_pack())
    return folder


def refused_volume(folder: Path, required: Path | None) -> tuple[str, int]:
    """(the refusal, peak bytes allocated while opening the volume)."""
    key = load_public_key(required) if required else None
    tracemalloc.start()
    try:
        with pytest.raises(VolumeRefused) as refused:
            volume.open_volume(folder, key)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return str(refused.value), peak


@pytest.mark.usefixtures("no_decoding")
def test_a_large_unsigned_index_is_refused_from_its_end_alone(
    tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    folder = volume_dir(tmp_path)
    junk_file(folder / "index", MAGIC_INDEX, BIG, None, honest=False)
    problem, peak = refused_volume(folder, keys["ours"][1])
    assert "vol-0001" in problem and "unsigned, but a signature is required" in problem
    assert peak < 1 << 20, peak


@pytest.mark.usefixtures("no_decoding")
@pytest.mark.parametrize("case", ["another key", "bad checksum", "no END frame"])
def test_a_large_index_that_fails_is_refused_before_decoding(
    tmp_path: Path, keys: dict[str, tuple[Path, Path]], case: str
) -> None:
    folder = volume_dir(tmp_path)
    index = folder / "index"
    if case == "another key":
        junk_file(index, MAGIC_INDEX, BIG, keys["theirs"][0], honest=False)
        expected = "signed by another key"
    elif case == "bad checksum":  # signed by the right key, bytes changed after signing
        junk_file(index, MAGIC_INDEX, BIG, keys["ours"][0], honest=False)
        expected = "checksum does not match"
    else:
        junk_file(index, MAGIC_INDEX, BIG, None, honest=False)
        with index.open("ab") as out:
            out.write(b"\x00" * 7)
        expected = "does not end with an END frame"
    problem, peak = refused_volume(folder, keys["ours"][1])
    assert expected in problem, problem
    assert peak < 16 << 20, peak  # one read chunk (4 MiB) and the hasher


def test_a_sound_index_still_opens(tmp_path: Path) -> None:
    folder = volume_dir(tmp_path)
    (folder / "index").write_bytes(hc.sound_index())
    opened = volume.open_volume(folder, None)
    assert opened.index.files[0].name == "pack-0001"


def test_an_index_whose_frames_end_elsewhere_is_refused(tmp_path: Path) -> None:
    """A sound index with a second, self-consistent END appended: the end of the file
    passes on its own, but decoding finds the real END first and then extra bytes."""
    folder = volume_dir(tmp_path)
    sound = hc.sound_index()
    checksum = blake3.blake3(sound).digest()
    (folder / "index").write_bytes(sound + end_frame(checksum, None))
    problem, _ = refused_volume(folder, None)
    assert "bytes after the END frame" in problem, problem


@pytest.mark.usefixtures("no_decoding")
def test_an_unsigned_receipt_is_refused_before_decoding(
    tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    receipt = tmp_path / "receipt"
    junk_file(receipt, MAGIC_RECEIPT, BIG, None, honest=True)
    book = SiteBook.load(StateDir(tmp_path, tmp_path / "state"), "default")
    with pytest.raises(ReceiptRefused, match="unsigned, but a signature is required"):
        basis.choose_basis(
            book, receipt=receipt, full=False, required_key=load_public_key(keys["ours"][1])
        )


def test_import_refuses_a_large_unsigned_index_by_name(
    tmp_path: Path, keys: dict[str, tuple[Path, Path]]
) -> None:
    """`syncd import`: exit 2, the volume named, nothing applied."""
    folder = volume_dir(tmp_path / "media")
    junk_file(folder / "index", MAGIC_INDEX, BIG, None, honest=True)
    far = tmp_path / "far"
    required = ("--require-signed-by", str(keys["ours"][1]))
    done = import_(far, tmp_path / "media", expect=2, args=required)
    assert "vol-0001" in done.err and "unsigned" in done.err
    assert "Traceback" not in done.err
    assert not any(p.name != ".syncd" for p in far.iterdir())
