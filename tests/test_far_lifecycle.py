"""The far side's one invariant, tried the way issues 13 and 14 found it broken, with
real `syncd serve` sessions and real volumes: a failed, interrupted, hostile or
space-starved session never blocks a later honest one, and nothing that arrived whole is
lost."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import blake3
import pytest

from protocol.tree import FileNode, encode_tree, tree_id
from reliability.farside import run_syncd, write_tar
from reliability.linkdrop import calibrate, push_through
from reliability.serve_driver import Script, converse
from syncd.apply.journal import read_journal
from syncd.faults import ENV
from syncd.state import StateDir
from tests.pushutil import snapshot_id
from tests.test_apply_support import copy_tree, registry_problems, small_tmpfs

MEMBER = 300_000


def archive_tree(root: Path, seed: str, members: int = 8) -> Path:
    """A tree holding one tar archive of `members` random members (several pieces, over
    the size from which the far side assembles files in place)."""
    rng = random.Random(seed)
    write_tar(root / "data.tar", [rng.randbytes(MEMBER) for _ in range(members)])
    return root


def push_json(
    src: Path, far: Path, *args: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    done = run_syncd("push", src, far, "--json", *args, env=env)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_a_leftover_work_file_never_blocks_a_later_push(tmp_path: Path) -> None:
    """Issue 13 item 2: a push interrupted while a large file was being assembled, then a
    changed source: every later push failed with "pieces are neither received nor on the
    far side; nothing was changed"."""
    src, far = archive_tree(tmp_path / "src", "v1"), tmp_path / "far"
    done = run_syncd("push", src, far, env={ENV: "blob:4"})  # far side killed mid-file
    assert done.returncode != 0
    assert any((far / ".syncd" / "incoming").iterdir())
    shutil.rmtree(src)
    archive_tree(src, "v2")  # every member new: the old work file's holes stay unfilled
    first = push_json(src, far)
    assert first["status"] == "applied" and snapshot_id(far) == first["snapshot"]
    again = push_json(src, far)
    assert again["status"] == "up-to-date"


def test_volume_one_of_an_export_whose_volume_two_never_comes(tmp_path: Path) -> None:
    """Issue 13 item 2 (media): a newer complete export of the same source must then
    import (SPEC 9.6)."""
    far, src = tmp_path / "far", tmp_path / "src"
    volumes = []
    for name in ("old", "new"):
        archive_tree(src, name, members=6)  # next month's content, same source
        media = tmp_path / f"media-{name}"
        sizes = ("--volume-size", "900k", "--max-file-size", "400k")
        done = run_syncd("export", src, "--to", media, "--full", *sizes)
        assert done.returncode == 0, done.stderr
        volumes.append(sorted(media.glob("*/vol-*")))
    assert len(volumes[0]) >= 2
    done = run_syncd("import", volumes[0][0], "--root", far)
    assert done.returncode == 1  # staged, volumes still missing
    done = run_syncd("import", *volumes[1], "--root", far, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "applied"
    assert snapshot_id(far) == snapshot_id(src)


def test_a_resume_that_fails_the_same_way_twice_is_given_up(
    tiny_months: dict[int, Path], tmp_path: Path
) -> None:
    """Issue 13 item 3: a journal whose apply cannot complete made every later session
    replay it and exit 2 before HELLO, so an honest client got a closed stream and no
    ERROR; only deleting .syncd/journal by hand recovered."""
    far = copy_tree_of(tiny_months[1], tmp_path / "far")
    src = copy_tree_of(tiny_months[2], tmp_path / "src")
    done = run_syncd("push", src, far, env={ENV: "step:6"})  # killed mid-apply
    assert done.returncode != 0 and read_journal(StateDir(far)) is not None
    for lost in ("staging", "incoming"):  # what the resume needs is gone
        shutil.rmtree(far / ".syncd" / lost)
    receipt = tmp_path / "receipt"
    done = run_syncd("receipt", "--root", far, "--to", receipt)
    assert done.returncode == 0, done.stderr  # the failed resume did not block it
    journal = read_journal(StateDir(far))
    assert journal is not None and journal.failures == 1  # killed, then one failed resume
    assert "MissingPieces" in journal.failed
    # An honest push now: the resume fails the same way, is given up, the push goes on.
    result = push_json(src, far)
    assert result["status"] == "applied" and snapshot_id(far) == result["snapshot"]
    assert read_journal(StateDir(far)) is None
    assert registry_problems(far, tiny_months[1], tiny_months[2]) == []


def test_a_failed_resume_is_given_up_without_a_push_too(
    tiny_months: dict[int, Path], tmp_path: Path
) -> None:
    far = copy_tree_of(tiny_months[1], tmp_path / "far")
    src = copy_tree_of(tiny_months[2], tmp_path / "src")
    assert run_syncd("push", src, far, env={ENV: "step:9"}).returncode != 0
    shutil.rmtree(far / ".syncd" / "staging")
    for attempt in (1, 2):
        done = run_syncd("receipt", "--root", far, "--to", tmp_path / f"r{attempt}")
        assert done.returncode == 0, done.stderr
    assert read_journal(StateDir(far)) is None  # given up on the second failure
    assert registry_problems(far, tiny_months[1], tiny_months[2]) == []
    status = run_syncd("import", "--status", "--root", far)
    assert status.returncode == 0 and "interrupted" not in status.stdout


def test_a_declared_size_is_refused_up_front_and_blocks_nothing(
    tiny_months: dict[int, Path], tmp_path: Path
) -> None:
    """Issue 13 items 2 and 5: a 20 KB tree record declaring an 8 GiB file became an 8 GiB
    sparse work file that every later session hashed. Now the far side refuses a target
    it has no room for before it stages anything, and allocates nothing."""
    with small_tmpfs(tmp_path / "mnt", 64 << 20) as mount:
        if mount is None:
            pytest.skip("cannot mount a small tmpfs here (mounting needs root)")
        declared_size_on_a_small_disk(tiny_months, mount / "far", tmp_path)


def declared_size_on_a_small_disk(months: dict[int, Path], far: Path, tmp_path: Path) -> None:
    copy_tree_of(months[1], far)
    piece = blake3.blake3(b"never sent").digest()
    record = encode_tree([FileNode("huge", 0o644, 1 << 33, 0, ((piece, 1 << 24),) * 512)])
    reply = converse(far, Script(tree_id(record), trees={tree_id(record): record}))
    assert reply.error is not None and "not enough space" in reply.error.message, reply
    assert "short" in reply.error.message and "Traceback" not in reply.stderr
    incoming = far / ".syncd" / "incoming"
    assert not incoming.exists() or not any(incoming.iterdir())
    src = copy_tree_of(months[2], tmp_path / "src")
    assert push_json(src, far)["status"] == "applied"


def test_an_import_over_the_staging_quota_is_refused_up_front(
    tiny_months: dict[int, Path], tmp_path: Path
) -> None:
    far = copy_tree_of(tiny_months[1], tmp_path / "far")
    src = archive_tree(copy_tree_of(tiny_months[2], tmp_path / "src"), "quota")
    media = tmp_path / "media"
    assert run_syncd("export", src, "--to", media).returncode == 0
    done = run_syncd("import", media, "--root", far, "--staging-max", "1M")
    assert done.returncode == 2 and "staging quota of 1.00 MB (--staging-max)" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_syncd("import", media, "--root", far, "--staging-max", "1G")
    assert done.returncode == 0, done.stderr
    assert snapshot_id(far) == snapshot_id(src)


def test_a_dropped_link_keeps_every_blob_that_arrived_whole(
    tiny_months: dict[int, Path], tmp_path: Path
) -> None:
    """Issue 14 item 10: a push whose link dropped 8 s into a 1 MB/s transfer sent it all
    again. The link drops here mid-frame, once with EOF and once with SIGHUP as well."""
    base = copy_tree_of(tiny_months[1], tmp_path / "base")
    src = archive_tree(copy_tree_of(tiny_months[2], tmp_path / "src"), "drop")
    record = tmp_path / "record.json"
    far = tmp_path / "far"
    copy_tree(base, far, with_state=True)
    forwarded, total = calibrate(src, str(far), record, {})
    for mode in ("eof", "hup"):
        shutil.rmtree(far)
        copy_tree(base, far, with_state=True)
        push_through(src, str(far), record, forwarded * 2 // 3, mode, {})
        seen = json.loads(record.read_text())
        assert seen["dropped"] and seen["whole_blob_bytes"] > 0
        remaining = total - seen["whole_blob_bytes"]
        result = push_json(src, far)
        assert result["status"] == "applied" and snapshot_id(far) == snapshot_id(src)
        assert result["payload_bytes"] <= remaining, (mode, seen, result["payload_bytes"])


def copy_tree_of(source: Path, destination: Path) -> Path:
    copy_tree(source, destination)
    return destination


def test_five_pushes_that_hang_up_never_lock_out_an_honest_one(
    tiny_months: dict[int, Path], tmp_path: Path
) -> None:
    """Issue 13 item 5: five pushes that sent every blob but the last and hung up filled a
    96 MiB disk, and honest pushes then failed with "cannot stage ... No space left on
    device" forever. Staging is bounded, and what no target needs goes first."""
    with small_tmpfs(tmp_path / "mnt", 20 << 20) as mount:
        if mount is None:
            pytest.skip("cannot mount a small tmpfs here (mounting needs root)")
        far = copy_tree_of(tiny_months[1], mount / "far")
        record = tmp_path / "record.json"
        for number in range(5):
            # The far tree plus 3.6 MB of its own: its push is nearly all that archive,
            # and the link drops when 97% of that has gone.
            src = copy_tree_of(tiny_months[1], tmp_path / f"hostile-{number}")
            archive = archive_tree(src, f"hostile-{number}", members=12) / "data.tar"
            drop_at = archive.stat().st_size * 97 // 100
            code, stderr = push_through(src, str(far), record, drop_at, "eof", {})
            assert json.loads(record.read_text())["dropped"], (code, stderr)
            stats = os.statvfs(mount)
            assert stats.f_bavail * stats.f_frsize > 2 << 20  # never filled
        honest = copy_tree_of(tiny_months[2], tmp_path / "honest")
        archive_tree(honest, "honest", members=12)
        result = push_json(honest, far)
        assert result["status"] == "applied" and snapshot_id(far) == snapshot_id(honest)


def test_a_session_that_cannot_start_still_answers_with_error(
    tiny_months: dict[int, Path], tmp_path: Path
) -> None:
    """Issue 13 item 3: what failed before HELLO (the resume, the root's lock) closed the
    stream on an honest client without a word."""
    far = copy_tree_of(tiny_months[1], tmp_path / "far")
    with StateDir(far).lock():  # another session holds the root
        reply = converse(far, Script(b"\x01" * 32))
    assert reply.error is not None and "in use by" in reply.error.message, reply
    assert reply.exit_code == 2 and "Traceback" not in reply.stderr
