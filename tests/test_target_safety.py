"""A typo never deletes data: targets that are no mirror are refused (issue 14, item 3).

Pushes (local, over SSH, to a forced command), `serve` on its own and imports, each
into a folder holding someone's files; targets nested in their source; and the cases
that must keep working: a first push into an existing oc-mirror tree, an empty folder.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mediautil import copy_tree, export, syncd
from tests.pushutil import push, run_push, snapshot_id, syncd_env
from tests.sshd import SSHServer

REMOTE = f"{shlex.quote(sys.executable)} -m syncd"


def victim(folder: Path) -> Path:
    (folder / "important").mkdir(parents=True)
    (folder / "important" / "db.conf").write_text("precious\n")
    return folder


def small_source(folder: Path) -> Path:
    folder.mkdir()
    (folder / "a").write_text("hi\n")
    return folder


def untouched(folder: Path) -> bool:
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
    return names == ["important", "important/db.conf"]


def test_push_into_an_unrelated_folder_is_refused_until_forced(tmp_path: Path) -> None:
    src, far = small_source(tmp_path / "msrc"), victim(tmp_path / "victim")
    refused = run_push(src, str(far))
    assert refused.returncode == 2
    assert "refusing to make" in refused.stderr and "important" in refused.stderr
    assert "--force" in refused.stderr and "Traceback" not in refused.stderr
    assert untouched(far)
    forced = push(src, str(far), "--force")
    assert forced["status"] == "applied" and forced["files_deleted"] == 1


def test_serve_itself_refuses_the_folder(tmp_path: Path) -> None:
    """The far side checks on its own: a client that skips the check changes nothing."""
    far = victim(tmp_path / "victim")
    command = [sys.executable, "-m", "syncd", "serve", "--stdio", "--root", str(far)]
    ran = subprocess.run(
        command,
        check=False,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=syncd_env(),
    )
    assert ran.returncode == 2
    assert "refusing to make" in ran.stderr and "1 entry (important)" in ran.stderr
    assert untouched(far)  # not even a state folder


@pytest.mark.needs_sshd
def test_push_over_ssh_is_refused_by_the_far_side(sshd: SSHServer, tmp_path: Path) -> None:
    src, far = small_source(tmp_path / "msrc"), victim(tmp_path / "victim")
    refused = run_push(src, f"ssh://far{far}", "--remote-syncd", REMOTE, env=sshd.env())
    assert refused.returncode == 2
    assert "far side: syncd serve: error: refusing to make" in refused.stderr
    assert untouched(far)
    forced = push(src, f"ssh://far{far}", "--remote-syncd", REMOTE, "--force", env=sshd.env())
    assert forced["status"] == "applied"


@pytest.mark.needs_sshd
def test_a_forced_command_decides_force_itself(sshd: SSHServer, tmp_path: Path) -> None:
    src, far = small_source(tmp_path / "msrc"), victim(tmp_path / "victim")
    sshd.force_command(f"{REMOTE} serve --stdio --root {shlex.quote(str(far))}")
    refused = run_push(src, f"far-forced:{far}", "--force", env=sshd.env())
    assert refused.returncode == 2 and "refusing to make" in refused.stderr
    assert untouched(far)
    sshd.force_command(f"{REMOTE} serve --stdio --root {shlex.quote(str(far))} --force")
    assert push(src, f"far-forced:{far}", env=sshd.env())["status"] == "applied"


def test_first_push_into_an_existing_oc_mirror_tree(
    tiny_months: dict[int, Path], tmp_path: Path
) -> None:
    src = copy_tree(tiny_months[1], tmp_path / "src")
    far = tmp_path / "far"
    far.mkdir()
    copy_tree(src / ".oc-mirror", far / ".oc-mirror")  # the cache alone, as oc-mirror left it
    (far / "notes.txt").write_text("the site's own\n")
    summary = push(src, str(far))
    assert summary["status"] == "applied"
    assert snapshot_id(far) == summary["snapshot"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert push(src, str(empty))["status"] == "applied"


def test_nested_targets_are_refused_by_real_path(tmp_path: Path) -> None:
    src = small_source(tmp_path / "src")
    link = tmp_path / "link"
    link.symlink_to(src)
    for source, target in (
        (src, src / "sub"),
        (src, link / "sub"),
        (src, src),
        (src / "inner", src.parent),
    ):
        if not source.exists():
            source.mkdir()
        ran = run_push(source, str(target))
        assert ran.returncode == 2, ran.stderr
        assert "nothing was changed" in ran.stderr
    assert not (src / "sub").exists()
    assert (src / "a").read_text() == "hi\n"


def test_import_into_a_content_folder_is_refused(
    tiny_months: dict[int, Path], tmp_path: Path
) -> None:
    src = copy_tree(tiny_months[1], tmp_path / "src")
    media = tmp_path / "media"
    export(src, media, "--full")
    site = copy_tree(tiny_months[1], tmp_path / "site")
    before = sorted(p.name for p in (site / "content").iterdir())
    ran = syncd("import", media, "--root", site / "content", "--json")
    assert ran.code == 2
    assert "mirror_000001.tar" in ran.err and "parent" in ran.err
    assert ran.json["error"].startswith("refusing to make") and ran.json["format"] == 1
    assert sorted(p.name for p in (site / "content").iterdir()) == before
    assert syncd("import", media, "--root", site).code == 0  # the real root is fine
    fresh = tmp_path / "fresh"
    assert syncd("import", media, "--root", fresh).code == 0
    forced = victim(tmp_path / "victim")
    assert syncd("import", media, "--root", forced).code == 2 and untouched(forced)
    assert syncd("import", media, "--root", forced, "--force").code == 0


def test_an_empty_source_never_empties_the_far_side(
    tiny_months: dict[int, Path], tmp_path: Path
) -> None:
    """An unmounted file system looks like an empty SRC: push and export refuse it, so a
    far side is never wiped by accident; --allow-empty says it is meant."""
    far = copy_tree(tiny_months[1], tmp_path / "far")
    before = snapshot_id(far)
    empty = tmp_path / "mnt"
    (empty / "not-mounted-yet").mkdir(parents=True)  # folders, no file
    refused = run_push(empty, str(far))
    assert refused.returncode == 2 and "holds no files" in refused.stderr
    assert "--allow-empty" in refused.stderr and "Traceback" not in refused.stderr
    assert snapshot_id(far) == before
    assert push(empty, str(far), "--no-delete")["files_deleted"] == 0  # deletes nothing
    ran = syncd("export", empty, "--to", tmp_path / "media", "--full")
    assert ran.code == 2 and "holds no files" in ran.err
    assert not (tmp_path / "media").exists() or not any((tmp_path / "media").iterdir())
    assert syncd("export", empty, "--to", tmp_path / "media", "--full", "--allow-empty").code == 0
    emptied = push(empty, str(far), "--allow-empty")
    assert emptied["status"] == "applied" and emptied["files_deleted"] > 0
