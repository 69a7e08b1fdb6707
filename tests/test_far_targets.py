"""What the far side writes for a target, over real `syncd serve` sessions (issue 13:
items 1, 3, 4 and 8). A target is refused at planning, with nothing written, when it holds
a symlink leaving the root; it is written as this side can hold it (modes masked, times
as the file system keeps them, any cut); the next session finds it up to date; and a
change of mode or time never reaches another hard link of the far file."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from protocol.errors import ErrorCode
from protocol.messages import Result
from reliability import hostile_cases
from reliability.otheruser import (
    as_other_user,
    other_user_available,
    other_user_env,
    other_user_folder,
    remove_other_user_folder,
)
from reliability.serve_driver import Reply, Script, converse
from syncd.apply.canon import Times
from tests.mediautil import syncd
from tests.pushutil import snapshot_id, syncd_env
from tests.targetutil import D, F, L, Spec, Target, build


def serve(far: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "syncd", "serve", "--stdio", "--root", str(far), *flags]


def offer(far: Path, target: Target, *flags: str) -> Reply:
    return converse(
        far, Script(target.root, target.trees, target.blobs), command=serve(far, *flags)
    )


def result(reply: Reply) -> Result:
    assert reply.error is None, reply.error
    assert "Traceback" not in reply.stderr
    found = [e for e in reply.events if isinstance(e, Result)]
    assert found, reply.events
    return found[0]


def refused(far: Path, spec: Spec, *flags: str) -> str:
    """The BAD_PATH refusal of `spec`; the far tree and its state stay as they were."""
    before = snapshot_id(far)
    reply = offer(far, build(spec), *flags)
    assert reply.error is not None and reply.error.code == ErrorCode.BAD_PATH, reply.events
    assert reply.exit_code == 2 and "Traceback" not in reply.stderr
    assert snapshot_id(far) == before
    assert not (far / ".syncd" / "journal").exists()
    return reply.error.message


# -- item 1: symlinks that leave the root --------------------------------------------------


OUTSIDE_LINKS: dict[str, tuple[Spec, str]] = {
    "absolute": ({"x/passwd": L("/etc/passwd")}, "'x/passwd' -> '/etc/passwd'"),
    "'..' past the root": ({"a/b/up": L("../../../etc/shadow")}, "'a/b/up'"),
    "'..' after a name": ({"a/l": L("b/../../../x"), "a/b/f": F()}, "after a name"),
    "registry tag link": (
        {
            ".oc-mirror/.cache/docker/registry/v2/repositories/ns/app/_manifests/tags/t/"
            "current/link": L("/etc/shadow")
        },
        "current/link' -> '/etc/shadow'",
    ),
}


@pytest.mark.parametrize("case", list(OUTSIDE_LINKS))
def test_a_symlink_leaving_the_root_is_refused_at_planning(far: Path, case: str) -> None:
    spec, named = OUTSIDE_LINKS[case]
    message = refused(far, {"keep/file": F(b"existing"), **spec})
    assert named in message and "--allow-outside-symlinks" in message, message


def test_a_shared_subtree_is_judged_where_it_lies(far: Path) -> None:
    """One record (`l -> ../../x`) at two depths: below the root at depth 2, out of it at
    depth 1. Records are shared by id, so the check is made per place, not per record."""
    inside: Spec = {"c/d/l": L("../../x"), "x": F()}
    assert result(offer(far, build(inside))).status == "applied"
    message = refused(far, {**inside, "e/l": L("../../x")})
    assert "'e/l' -> '../../x'" in message


def test_symlinks_below_the_root_are_kept(far: Path) -> None:
    spec: Spec = {"a/b/f": F(), "a/b/up": L("../../a/b/f"), "a/same": L("./b/f"), "top": L(".")}
    assert result(offer(far, build(spec))).status == "applied"
    assert os.readlink(far / "a" / "b" / "up") == "../../a/b/f"


def test_the_far_operator_may_allow_them(far: Path) -> None:
    spec: Spec = {"x/passwd": L("/etc/passwd"), "up": L("../outside")}
    assert result(offer(far, build(spec), "--allow-outside-symlinks")).status == "applied"
    assert os.readlink(far / "x" / "passwd") == "/etc/passwd"


# -- item 4: modes -------------------------------------------------------------------------


MODES: Spec = {
    "suid": F(mode=0o6755),
    "world": F(mode=0o666),
    "secret": F(mode=0o000),
    "sticky": D(0o1777),
    "sticky/f": F(),
    "closed": D(0o000),
    "closed/f": F(),
}


def modes(far: Path) -> dict[str, int]:
    return {
        name: stat.S_IMODE(os.lstat(far / name).st_mode)
        for name in ("suid", "world", "secret", "sticky", "closed")
    }


def test_modes_are_masked_to_0755_with_owner_access(far: Path) -> None:
    assert result(offer(far, build(MODES))).status == "applied"
    assert modes(far) == {
        "suid": 0o755,
        "world": 0o644,
        "secret": 0o400,
        "sticky": 0o755,
        "closed": 0o500,
    }
    # The next session finds the tree up to date: the plan compares what this side writes.
    again = result(offer(far, build(MODES)))
    assert again.status == "up-to-date" and again.root == build(MODES).root


def test_preserve_modes_keeps_them(far: Path) -> None:
    assert result(offer(far, build(MODES), "--preserve-modes")).status == "applied"
    assert modes(far) == {
        "suid": 0o6755,
        "world": 0o666,
        "secret": 0o400,
        "sticky": 0o1777,
        "closed": 0o500,
    }


# -- item 3: what the far side cannot reproduce as sent ------------------------------------


def test_a_file_cut_otherwise_is_written_and_checked_by_its_bytes(far: Path) -> None:
    """A 21-byte file sent as two pieces: this side's scanner would make one of it."""
    spec: Spec = {"f21": F(b"0123456789abcdefghijk", cuts=(10, 11))}
    applied = result(offer(far, build(spec)))
    assert applied.status == "applied" and applied.root == build(spec).root
    assert (far / "f21").read_bytes() == b"0123456789abcdefghijk"
    assert not (far / ".syncd" / "journal").exists()
    assert result(offer(far, build(spec))).status == "up-to-date"


def test_times_are_stored_as_the_file_system_keeps_them() -> None:
    ext4 = Times(low=-(2**31), high=2**34 - 2**31 - 1)
    assert ext4.stored(-(2**63)) == -(2**31) * 10**9
    assert ext4.stored(-(2**31) * 10**9 + 5) == -(2**31) * 10**9  # at the bound: no ns
    assert ext4.stored(1_700_000_000_123_456_789) == 1_700_000_000_123_456_789
    whole = Times(granularity=10**9)
    assert whole.stored(1_700_000_000_123_456_789) == 1_700_000_000_000_000_000
    assert Times().stored(-(2**63)) == -(2**63) and Times().stored(2**63 - 1) == 2**63 - 1


def test_a_time_out_of_range_is_written_clamped_and_then_up_to_date(far: Path) -> None:
    """-2^63 ns: ext4 clamps it to 1901, tmpfs keeps it; either way the check agrees."""
    spec: Spec = {"old": F(mtime_ns=-(2**63)), "new": F(mtime_ns=2**63 - 1)}
    applied = result(offer(far, build(spec)))
    assert applied.status == "applied" and applied.root == build(spec).root
    assert not (far / ".syncd" / "journal").exists()
    assert result(offer(far, build(spec))).status == "up-to-date"


def test_a_changed_tree_is_descended_only_where_it_changed(far: Path) -> None:
    """A source whose directories are 0775 (umask 002) never has the far side's ids; the
    far side remembers which offered trees it holds (aliases), so the next push asks
    only for the trees that changed."""
    spec: Spec = {f"d{i}/e/f": F(mode=0o664) for i in range(5)}
    spec.update({f"d{i}": D(0o775) for i in range(5)})
    assert result(offer(far, build(spec))).status == "applied"
    spec["d0/new"] = F(b"more")
    reply = offer(far, build(spec))
    assert result(reply).status == "applied"
    assert "descent: 2 trees from the source" in reply.stderr, reply.stderr


# -- item 8: a new mode or time never reaches another hard link ------------------------------


def test_a_mode_change_never_reaches_a_hard_link_outside(far: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside-file"
    outside.write_bytes(b"hello, far side")
    outside.chmod(0o600)
    os.utime(outside, ns=(0, 0))
    os.link(outside, far / "linked")
    spec: Spec = {"keep/file": F(b"existing"), "linked": F(mode=0o755, mtime_ns=10**18)}
    assert result(offer(far, build(spec))).status == "applied"
    st = outside.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_nlink) == (0o600, 0, 1)
    assert outside.read_bytes() == b"hello, far side"
    far_st = (far / "linked").stat()
    assert (stat.S_IMODE(far_st.st_mode), far_st.st_mtime_ns) == (0o755, 10**18)


# -- the same rules for import and for a local push --------------------------------------


def media_with(spec: Spec, folder: Path) -> Path:
    """A volume (any site) whose target is `spec`; its files hold the golden pack's blob."""
    blob = hostile_cases.media_blob()
    with_blob: Spec = {p: replace(e, data=blob) if isinstance(e, F) else e for p, e in spec.items()}
    target = build(with_blob)
    volume = folder / "20260101T000000Z-0a1b2c3d" / "vol-0001"
    volume.mkdir(parents=True)
    (volume / "index").write_bytes(hostile_cases.index_with_trees(target.root, target.trees))
    (volume / "pack-0001").write_bytes(hostile_cases.sound_pack())
    return folder


def test_import_refuses_a_symlink_leaving_the_root(far: Path, tmp_path: Path) -> None:
    media = media_with({"keep/file": F(), "x/passwd": L("/etc/passwd")}, tmp_path / "media")
    before = snapshot_id(far)
    done = syncd("import", media, "--root", far)
    assert done.code == 2 and "Traceback" not in done.err
    assert "'x/passwd' -> '/etc/passwd'" in done.err, done.err
    assert snapshot_id(far) == before
    allowed = syncd("import", media, "--root", far, "--allow-outside-symlinks")
    assert allowed.code == 0, allowed.err
    assert os.readlink(far / "x" / "passwd") == "/etc/passwd"


def test_import_masks_modes_unless_told(far: Path, tmp_path: Path) -> None:
    media = media_with({"suid": F(mode=0o4755)}, tmp_path / "media")
    assert syncd("import", media, "--root", far).code == 0
    assert stat.S_IMODE((far / "suid").stat().st_mode) == 0o755
    other = tmp_path / "other"
    assert syncd("import", media, "--root", other, "--preserve-modes").code == 0
    assert stat.S_IMODE((other / "suid").stat().st_mode) == 0o4755


def test_a_local_push_follows_the_same_rules(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    (src / "bin" / "tool").chmod(0o4755)
    (src / "bin" / "passwd").symlink_to("/etc/passwd")
    far = tmp_path / "far"
    done = syncd("push", src, far)
    assert done.code == 2 and "'bin/passwd' -> '/etc/passwd'" in done.err, done.err
    assert not (far / "bin").exists()
    done = syncd("push", src, far, "--allow-outside-symlinks")
    assert done.code == 0, done.err
    assert stat.S_IMODE((far / "bin" / "tool").stat().st_mode) == 0o755
    # A masked mode is what this far side holds for the offer: the push is exact (exit 0),
    # and the next one is up to date.
    again = syncd("push", src, far, "--allow-outside-symlinks", "--json")
    assert again.code == 0 and '"up-to-date"' in again.out, again.out
    over_ssh = syncd("push", src, "host:/srv/mirror", "--preserve-modes")
    assert over_ssh.code == 2 and "local TARGET only" in over_ssh.err


# -- a far side run by its own user ----------------------------------------------------------


@pytest.fixture
def own_far() -> Iterator[Path]:
    if not other_user_available():
        pytest.skip("needs root and setpriv to run serve as a second user")
    far = other_user_folder("far")
    yield far
    remove_other_user_folder(far)


def as_user(far: Path, target: Target) -> Reply:
    env = other_user_env(syncd_env())
    return converse(
        far,
        Script(target.root, target.trees, target.blobs),
        command=as_other_user(serve(far)),
        env=env,
    )


TAGS = ".oc-mirror/.cache/docker/registry/v2/repositories/ns/app/_manifests/tags"


def test_a_read_only_directory_gains_a_file_and_keeps_its_mode(own_far: Path) -> None:
    one: Spec = {"d": D(0o555), "d/a": F(), f"{TAGS}/t": D(0o555), f"{TAGS}/t/current/link": F()}
    assert result(as_user(own_far, build(one))).status == "applied"
    two: Spec = {**one, "d/b": F(b"second"), f"{TAGS}/u": D(0o555), f"{TAGS}/u/current/link": F()}
    applied = result(as_user(own_far, build(two)))
    assert applied.status == "applied" and applied.root == build(two).root
    assert (own_far / "d" / "b").read_bytes() == b"second"
    for folder in ("d", f"{TAGS}/t", f"{TAGS}/u"):
        assert stat.S_IMODE((own_far / folder).stat().st_mode) == 0o555, folder
    assert result(as_user(own_far, build(two))).status == "up-to-date"
    # And a read-only directory can go, whole.
    three: Spec = {"d2": D(0o555), "d2/a": F()}
    assert result(as_user(own_far, build(three))).status == "applied"
    assert not (own_far / "d").exists() and not (own_far / ".oc-mirror").exists()
