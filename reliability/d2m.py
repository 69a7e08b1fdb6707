"""A disk-to-mirror oracle: what `oc-mirror --from file://content docker://...` would do.

Built from real components and separately from verify's archive code:
1. pick the archives as internal/pkg/archive/unarchive.go does (openshift/oc-mirror,
   commit 855b64a3): every entry of the content folder, in name order, whose name the
   unanchored `mirror_[0-9]{6}\\.tar` matches; an empty one fails the run;
2. extract each with a tar reader that follows Go's archive/tar reader.go (its own
   code here, not syncd's): a bad checksum, a short header or data, part of a padding,
   or a zero block followed by data fails; nothing at all after a member's data ends
   the archive cleanly; only type '0' members are written, routed by whether the name
   contains `working-dir` or `docker/registry/v2`, a later file overwriting an earlier
   one, a path escaping its destination failing the run. The destination is a fresh
   copy of the far cache and of the content folder's working-dir;
3. derive the images from the extracted working-dir and cache (`syncd.verify.derive`,
   the collectors' model, over the files on disk);
4. serve the extracted cache with Debian's docker-registry and copy every derived image
   with skopeo, as oc-mirror copies it: an index with every instance (`--all`) or, under
   a platform filter, each chosen instance by digest; and each cosign `.sig` tag a
   copied manifest has, when the registry serves one.

The oracle's verdict is OK when nothing failed; `failure` says what did.
"""

from __future__ import annotations

import json
import posixpath
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from syncd.sample import Registry
from syncd.sample.skopeo import skopeo_path
from syncd.verify.beneath import Beneath
from syncd.verify.derive import Derived, derive
from syncd.verify.digests import parse_link
from syncd.verify.fsstore import FsStore
from syncd.verify.imageset import ConfigError, ImageSetConfig, parse_config
from syncd.verify.wdview import DiskWorkingDir

PICK = re.compile(r"mirror_[0-9]{6}\.tar")
V2 = "docker/registry/v2"
CACHE = Path(".oc-mirror/.cache")
_TIMEOUT = 300


@dataclass(slots=True)
class Verdict:
    ok: bool
    failure: str = ""
    images: dict[str, str] = field(default_factory=dict)  # image -> "" or why it failed


class ReadFailure(Exception):
    """Go's reader (or the extraction) fails here."""


def run_oracle(content: Path, cache_base: Path, config_text: str, scratch: Path) -> Verdict:
    """Would disk-to-mirror succeed on `content` with the far cache under `cache_base`?"""
    try:
        config = parse_config(config_text, "the config")
    except ConfigError as exc:
        return Verdict(False, f"config: {exc}")
    work = Path(tempfile.mkdtemp(prefix="d2m-", dir=scratch))
    try:
        cache, folder = _fresh(content, cache_base, work)
        try:
            _extract_all(content, cache, folder)
        except ReadFailure as exc:
            return Verdict(False, f"extraction: {exc}")
        return _copy_all(config, cache, folder, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fresh(content: Path, cache_base: Path, work: Path) -> tuple[Path, Path]:
    cache, folder = work / "cache", work / "content"
    source_cache = cache_base / CACHE
    if source_cache.is_dir():
        shutil.copytree(source_cache, cache, symlinks=True)
    cache.mkdir(exist_ok=True)
    folder.mkdir()
    if (content / "working-dir").is_dir():
        shutil.copytree(content / "working-dir", folder / "working-dir", symlinks=True)
    return cache, folder


# -- extraction -------------------------------------------------------------------------


def _extract_all(content: Path, cache: Path, folder: Path) -> None:
    names = sorted(entry.name for entry in content.iterdir())
    picked = [name for name in names if PICK.search(name)]
    if not picked:
        raise ReadFailure(f"no tar archives matching {PICK.pattern} found")
    for name in picked:
        path = content / name
        if path.stat().st_size == 0:
            raise ReadFailure(f"empty archive file {name}")
        try:
            with path.open("rb") as archive:
                for member, data in _go_members(archive):
                    _write(member, data, cache, folder)
        except IsADirectoryError:
            raise ReadFailure(f"{name}: is a directory") from None


def _write(name: str, data: bytes, cache: Path, folder: Path) -> None:
    if "working-dir" in name:
        base = folder
    elif V2 in name:
        base = cache
    else:
        return
    joined = posixpath.normpath("/x/" + name)
    if not joined.startswith("/x/"):
        raise ReadFailure(f"content filepath is tainted: {name}")
    target = base / joined[3:]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    except OSError as exc:
        raise ReadFailure(f"cannot write {name}: {exc.strerror}") from None


def _go_members(archive: object) -> Iterator[tuple[str, bytes]]:
    """(name, data) of each regular member, read as Go's tar.Reader reads."""
    read = archive.read  # type: ignore[attr-defined]
    pax: dict[str, str] = {}
    long_name: str | None = None
    while True:
        block = read(512)
        if not block:
            return
        if len(block) < 512:
            raise ReadFailure("unexpected EOF in a header")
        if block == bytes(512):
            second = read(512)
            if not second or second == bytes(512):
                return
            if len(second) < 512:
                raise ReadFailure("unexpected EOF after a zero block")
            raise ReadFailure("invalid tar header (zero block followed by data)")
        _checksum(block)
        kind, size = block[156], _number(block[124:136])
        if "size" in pax and kind not in b"xgLK":
            size = int(pax["size"])
        if kind in b"12345":
            size = 0
        data = read(size)
        if len(data) < size:
            raise ReadFailure("unexpected EOF in a member's data")
        pad = -size % 512
        if pad:
            padding = read(pad)
            if padding and len(padding) < pad:
                raise ReadFailure("unexpected EOF in padding")
        if kind == ord("x"):
            pax = _pax(data)
        elif kind == ord("L"):
            long_name = data.split(b"\0", 1)[0].decode("utf-8", "replace")
        elif kind not in b"gK":
            name = pax.get("path") or long_name or _name(block)
            pax, long_name = {}, None
            if kind == ord("0") or (kind == 0 and not name.endswith("/")):
                yield name, data
        if pad and not padding:
            return  # Go's tryReadFull of the padding met EOF at once: a clean end


def _checksum(block: bytes) -> None:
    stored = _number(block[148:156])
    blank = block[:148] + b" " * 8 + block[156:]
    unsigned = sum(blank)
    signed = sum(b - 256 if b > 127 else b for b in blank)
    if stored not in (unsigned, signed):
        raise ReadFailure("invalid tar header (checksum)")


def _number(field_bytes: bytes) -> int:
    if field_bytes[0] & 0x80:
        return int.from_bytes(bytes([field_bytes[0] & 0x7F]) + field_bytes[1:], "big")
    text = field_bytes.split(b"\0", 1)[0].strip(b" ")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise ReadFailure("invalid tar header (number)") from None


def _name(block: bytes) -> str:
    name = block[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
    if block[257:263] == b"ustar\0":
        prefix = block[345:500].split(b"\0", 1)[0].decode("utf-8", "replace")
        if prefix:
            return f"{prefix}/{name}"
    return name


def _pax(data: bytes) -> dict[str, str]:
    records, position = {}, 0
    while position < len(data):
        length = int(data[position : data.index(b" ", position)])
        record = data[position : position + length].decode("utf-8", "replace")
        key, _, value = record.split(" ", 1)[1].rstrip("\n").partition("=")
        records[key] = value
        position += length
    return records


# -- copying ----------------------------------------------------------------------------


class _Resolver:
    def __init__(self, store: FsStore) -> None:
        self.store = store

    def resolve(self, repo: str, tag: str) -> str | None:
        raw = self.store.read_link(f"repositories/{repo}/_manifests/tags/{tag}/current/link")
        digest = parse_link(raw or b"")
        if digest is None or self.store.blob_size(digest) is None:
            return None
        revision = f"repositories/{repo}/_manifests/revisions/sha256/{digest[7:]}/link"
        return digest if self.store.read_link(revision) is not None else None


def derived_images(
    config: ImageSetConfig, cache: Path, folder: Path
) -> tuple[list[Derived], list[str]]:
    """The images and collection errors, from the extracted working-dir and cache."""
    store = FsStore(cache / V2)
    try:
        with Beneath.open(folder) as opened:
            out = derive(config, DiskWorkingDir(opened), _Resolver(store))
    finally:
        store.close()
    return out.images, out.errors


def _copy_all(config: ImageSetConfig, cache: Path, folder: Path, work: Path) -> Verdict:
    images, errors = derived_images(config, cache, folder)
    if errors:
        return Verdict(False, "collection: " + "; ".join(errors))
    verdict = Verdict(True)
    with Registry(cache, read_only=True) as registry:
        for image in images:
            why = _copy(registry.host, image, work)
            verdict.images[image.image] = why
            if why:
                verdict.ok, verdict.failure = False, f"copy {image.image}: {why}"
    return verdict


def _copy(host: str, image: Derived, work: Path) -> str:
    repo = image.image.rpartition(":")[0]
    raw, why = _inspect(host, image.image)
    if raw is None:
        return why
    document = json.loads(raw)
    children = document.get("manifests") if isinstance(document, dict) else None
    if children is not None and image.platforms is not None:
        chosen = [
            c["digest"]
            for c in children
            if not c.get("platform")
            or f"{c['platform'].get('os')}/{c['platform'].get('architecture')}" in image.platforms
        ]
        for digest in chosen:
            why = _skopeo_copy(host, f"{repo}@{digest}", work, whole=False)
            if why:
                return why
        digests = chosen
    else:
        why = _skopeo_copy(host, image.image, work, whole=True)
        if why:
            return why
        digests = [c["digest"] for c in children or ()]
    top = "sha256:" + __import__("hashlib").sha256(raw).hexdigest()
    for digest in [top, *digests]:
        why = _signature(host, repo, digest, work)
        if why:
            return why
    return ""


def _signature(host: str, repo: str, digest: str, work: Path) -> str:
    tag = f"{repo}:sha256-{digest.removeprefix('sha256:')}.sig"
    raw, why = _inspect(host, tag)
    if raw is None:
        return "" if "manifest unknown" in why.lower() else f"signature {tag}: {why}"
    return _skopeo_copy(host, tag, work, whole=True)


def _inspect(host: str, image: str) -> tuple[bytes | None, str]:
    done = _run(
        [skopeo_path(), "inspect", "--raw", "--tls-verify=false", f"docker://{host}/{image}"]
    )
    if done.returncode != 0:
        return None, done.stderr.decode("utf-8", "replace").strip() or "inspect failed"
    return done.stdout, ""


def _skopeo_copy(host: str, image: str, work: Path, *, whole: bool) -> str:
    target = Path(tempfile.mkdtemp(prefix="copy-", dir=work))
    command = [skopeo_path(), "copy", "--insecure-policy", "--src-tls-verify=false"]
    command += ["--all"] if whole else []
    done = _run([*command, f"docker://{host}/{image}", f"dir:{target}"])
    shutil.rmtree(target, ignore_errors=True)
    if done.returncode != 0:
        return done.stderr.decode("utf-8", "replace").strip() or "copy failed"
    return ""


def _run(command: list[str]) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(command, capture_output=True, timeout=_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(command, -1, b"", b"timed out")
