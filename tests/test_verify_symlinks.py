"""verify never follows a symlink out of the tree, and REPORT carries no file bytes.

The far side's tree came from the connected side: a tag's `current/link` or a blob's
`data` may be a symlink to any file of the far host. After a push whose HELLO asks for
verify, `syncd serve` checks parity and sends a REPORT back; it must say that a link is
not a valid one, never quote what the file holds, nor its size or digest.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from syncd.sample import TINY, generate_month
from syncd.scan.api import scan_root
from syncd.session.client import PushOptions, PushOutcome, push_session
from syncd.snapshot import SnapshotReader
from syncd.state import StateDir
from syncd.transport.local import open_local
from syncd.verify import VerifyOptions, verify_root
from tests.pushutil import far_syncd

SECRET = b'{"schemaVersion": 2, "note": "TOPSECRET-far-host-only-4f1c"}'.ljust(7919) + b"\n"
REGISTRY = Path("registry/docker/registry/v2")  # a registry tree of its own, checked whole


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("symlinks") / "src"
    generate_month(root, 1, TINY, via_registry=False)
    scan_root(root, StateDir(root))
    return root


def push(source: Path, far: Path, remote: list[str]) -> PushOutcome:
    async def run() -> PushOutcome:
        channel = await open_local(far, remote_syncd=remote)
        try:
            options = PushOptions(source, False, str(far), verify=True)
            with SnapshotReader(StateDir(source).snapshot) as snapshot:
                return await push_session(channel, snapshot, options)
        finally:
            await channel.close()

    return asyncio.run(run())


def outside_file(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "secret.json"
    secret.parent.mkdir()
    secret.write_bytes(SECRET)
    return secret


def assert_nothing_of(secret: Path, text: str) -> None:
    data = secret.read_bytes()
    assert b"TOPSECRET" not in text.encode() and "TOPSECRET" not in text
    assert hashlib.sha256(data).hexdigest() not in text
    assert str(len(data)) not in text.replace("sha256:", "")
    assert str(secret) not in text


def test_a_tag_link_symlinked_out_of_the_root(source: Path, tmp_path: Path) -> None:
    secret = outside_file(tmp_path)
    far = tmp_path / "far"
    shutil.copytree(source, far, ignore=shutil.ignore_patterns(".syncd"))
    current = far / REGISTRY / "repositories/x/y/_manifests/tags/t/current"
    current.mkdir(parents=True)
    os.symlink(secret, current / "link")
    outcome = push(source, far, far_syncd(tmp_path))
    report = outcome.report
    assert report is not None and report.verify == "failed"
    assert "link-unreadable" in report.summary and "x/y:t" in report.summary
    assert_nothing_of(secret, report.summary + report.output)
    local = verify_root(far)
    text = json.dumps(local.as_json()) + "\n".join(local.lines())
    assert "is a symbolic link: not followed" in text
    assert_nothing_of(secret, text)


def test_a_blob_data_symlinked_out_of_the_root(source: Path, tmp_path: Path) -> None:
    secret = outside_file(tmp_path)
    digest = "sha256:" + "ab" * 32  # the tree's own word for it: not the file's hash
    far = tmp_path / "far"
    shutil.copytree(source, far, ignore=shutil.ignore_patterns(".syncd"))
    v2 = far / REGISTRY
    hexpart = digest[7:]
    repo = v2 / "repositories/x/y/_manifests"
    for link in ("tags/t/current/link", f"revisions/sha256/{hexpart}/link"):
        (repo / link).parent.mkdir(parents=True)
        (repo / link).write_text(digest)
    data = v2 / f"blobs/sha256/{hexpart[:2]}/{hexpart}/data"
    data.parent.mkdir(parents=True)
    os.symlink(secret, data)
    outcome = push(source, far, far_syncd(tmp_path))
    report = outcome.report
    assert report is not None and report.verify == "failed"
    assert "blob-unreadable" in report.summary
    # The digest the link names is the tree's own word, and may be said; what the
    # outside file holds, its size and its own hash are never read.
    summary = report.summary.replace(digest, "<named>")
    assert_nothing_of(secret, summary + report.output)
    for deep in (False, True):
        local = verify_root(far, VerifyOptions(deep=deep))
        text = (json.dumps(local.as_json()) + "\n".join(local.lines())).replace(digest, "<named>")
        assert "is a symbolic link: not followed" in text
        assert_nothing_of(secret, text)


def test_a_symlinked_cache_or_archive_is_not_followed(source: Path, tmp_path: Path) -> None:
    """A content folder whose archive or whose cache is a symlink out of the root."""
    far = tmp_path / "far"
    shutil.copytree(source, far, ignore=shutil.ignore_patterns(".syncd"))
    elsewhere = tmp_path / "elsewhere"
    (far / ".oc-mirror").rename(elsewhere)
    os.symlink(elsewhere, far / ".oc-mirror")
    archive = far / "content" / "mirror_000001.tar"
    archive.rename(tmp_path / "outside.tar")
    os.symlink(tmp_path / "outside.tar", archive)
    report = verify_root(far)
    (content,) = report.sections
    assert dict(content.facts)["cache"] == "none found"
    assert not report.ok
    assert any("is a symbolic link: not followed" in f.problem.message for f in content.findings)
