"""Helpers for the media tests: the real CLI run in-process, sample months, key pairs.

Commands run through `syncd.cli.main` in this process (no interpreter start-up per
call), with stdout and stderr captured, so that each test can afford many runs.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.media import Signature, Signer, decode_index, encode_index, encode_trees
from syncd.cli import main


@dataclass(frozen=True, slots=True)
class Ran:
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.out)
        return value


def syncd(*args: str | Path) -> Ran:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse refusing the command line
            code = int(exc.code or 0)
    return Ran(code, out.getvalue(), err.getvalue())


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns(".syncd"))
    return dst


def become(src: Path, month: Path) -> Path:
    """Make `src` hold `month`'s tree, keeping its state folder (and so its lineage,
    as a source that oc-mirror rewrites keeps it)."""
    for entry in src.iterdir():
        if entry.name != ".syncd":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    shutil.copytree(
        month, src, symlinks=True, ignore=shutil.ignore_patterns(".syncd"), dirs_exist_ok=True
    )
    return src


def export(src: Path, to: Path, *args: str | Path) -> dict[str, Any]:
    ran = syncd("export", src, "--to", to, "--json", *args)
    assert ran.code == 0, ran.err
    return ran.json


def import_(root: Path, *dirs: Path, expect: int = 0, args: tuple[str, ...] = ()) -> Ran:
    ran = syncd("import", *dirs, "--root", root, "--json", *args)
    assert ran.code == expect, f"exit {ran.code}, expected {expect}: {ran.err}{ran.out}"
    return ran


def receipt(root: Path, to: Path, *args: str | Path) -> dict[str, Any]:
    ran = syncd("receipt", "--root", root, "--to", to, "--json", *args)
    assert ran.code == 0, ran.err
    return ran.json


def status(root: Path) -> dict[str, Any]:
    return syncd("import", "--status", "--root", root, "--json").json


def volumes_of(summary: dict[str, Any]) -> list[Path]:
    return [Path(v["path"]) for v in summary["volumes"]]


def keypair(folder: Path, name: str) -> tuple[Path, Path]:
    """An OpenSSH ed25519 key pair made by ssh-keygen: (private, public)."""
    key = folder / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
        check=True,
        capture_output=True,
    )
    return key, key.with_name(name + ".pub")


def rewrite_index(
    volume: Path,
    *,
    keep_signature: bool = False,
    signer: Signer | None = None,
    checksums: dict[str, bytes] | None = None,
    **pack_names: str,
) -> None:
    """Re-encode a volume's index with pack files renamed (old_name=new) or given other
    `checksums` (by name), its own checksum recomputed, and no signature, the old one, or
    one by `signer`: a well-formed index naming what it likes."""
    path = volume / "index"
    index = decode_index(path.read_bytes())
    old = index.signature

    def forged(message: bytes) -> Signature:
        assert old is not None
        return old

    given = checksums or {}
    files = [
        type(f)(
            pack_names.get(f.name.replace("-", "_"), f.name), f.size, given.get(f.name, f.checksum)
        )
        for f in index.files
    ]
    records = sorted(index.trees.items(), key=lambda item: item[0] != index.header.target)
    sign = forged if keep_signature else signer
    trees = encode_trees(records)
    path.write_bytes(encode_index(index.header, files, trees, index.blobs, sign))


def files_in(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}
