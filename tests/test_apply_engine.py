"""The far side's apply (syncd/apply/engine.py) on real sample trees.

Sources are oc-mirror-like trees from `generate_month`; the transfer is simulated by
staging the pieces the far tree lacks. The truth is checked twice: the far tree must scan
to the source's snapshot id, and Debian's docker-registry serving the far cache must let
skopeo pull every tag.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from protocol.tree import DirNode, FileNode, encode_tree, tree_id
from syncd.apply import (
    ApplyError,
    ApplyHooks,
    ApplyResult,
    MissingPieces,
    Staging,
    UnsafePath,
    apply_target,
    resume_pending,
)
from syncd.plan.diff import Side, diff_trees
from syncd.sample import list_images, pull_all
from syncd.sample.ocmirror import CACHE
from syncd.sample.regstore import Storage
from syncd.snapshot import SnapshotReader
from syncd.state import StateDir
from tests.conftest import RegistryFactory
from tests.test_apply_support import (
    Source,
    copy_tree,
    far_index,
    listing,
    make_source,
    records_of,
    registry_problems,
    scan_id,
    source_pieces,
    stage_transfer,
)

ARCHIVE_1 = "content/mirror_000001.tar"
ARCHIVE_2 = "content/mirror_000002.tar"


@pytest.fixture(scope="module")
def month1(tmp_path_factory: pytest.TempPathFactory) -> Source:
    return make_source(tmp_path_factory.mktemp("m1") / "root", 1)


@pytest.fixture(scope="module")
def month2(tmp_path_factory: pytest.TempPathFactory, month1: Source) -> Source:
    root = tmp_path_factory.mktemp("m2") / "root"
    copy_tree(month1.root, root)
    return make_source(root, 2, first=2)


def far_at_month1(tmp_path: Path, month1: Source) -> Path:
    far = tmp_path / "far"
    copy_tree(month1.root, far)
    return far


def apply(source: Source, far: Path, staging: Staging, *, delete: bool = True) -> ApplyResult:
    with records_of(source) as snapshot:
        return apply_target(far, StateDir(far), source.id, snapshot.record, staging, delete=delete)


def assert_pulls_everything(far: Path, source: Source, registry_factory: RegistryFactory) -> None:
    registry = registry_factory(far / CACHE, read_only=True)
    images = list_images(registry)
    assert images == Storage.under(source.root / CACHE).images()
    failed = {name: r.error for name, r in pull_all(registry, images).items() if not r.ok}
    assert failed == {}


@pytest.mark.needs_registry
def test_first_apply_into_an_empty_root_serves_every_tag(
    tmp_path: Path, month1: Source, registry_factory: RegistryFactory
) -> None:
    far = tmp_path / "far"
    far.mkdir()
    staging = stage_transfer(month1, far)
    # Tree records come from staging, as a session would have received them.
    result = apply_target(far, StateDir(far), month1.id, staging.tree_record, staging, delete=True)
    assert result.root == month1.id == scan_id(far)
    assert result.files_written > 0 and result.bytes_written > 0
    assert listing(far) == listing(month1.root)
    assert staging.blob_count == 0  # cleared after success
    state = StateDir(far).path
    assert not (state / "journal").exists()
    assert not (state / "work").exists() and not (state / "trash").exists()
    assert registry_problems(far) == []
    assert_pulls_everything(far, month1, registry_factory)


@pytest.mark.needs_registry
def test_month_two_onto_month_one(
    tmp_path: Path, month1: Source, month2: Source, registry_factory: RegistryFactory
) -> None:
    far = far_at_month1(tmp_path, month1)
    staging = stage_transfer(month2, far)
    result = apply(month2, far, staging)
    assert scan_id(far) == month2.id
    assert not (far / ARCHIVE_2).exists()  # oc-mirror removed it; delete=True follows
    # The archives month 1 had and month 2 does not (oc-mirror rewrote the set).
    gone = {p.name for p in (month1.root / "content").glob("mirror_*.tar")}
    gone -= {p.name for p in (month2.root / "content").glob("mirror_*.tar")}
    assert result.files_deleted == len(gone) >= 1
    assert registry_problems(far) == []
    assert_pulls_everything(far, month2, registry_factory)


def test_pieces_only_in_replaced_files_are_copied_to_staging_first(
    tmp_path: Path, month1: Source, month2: Source
) -> None:
    far = far_at_month1(tmp_path, month1)
    # Pieces of month 2's archive that the far side holds only in month 1's archives,
    # which this very apply replaces (mirror_000001.tar) or deletes (mirror_000002.tar).
    index = far_index(far, weak=lambda path: path in (ARCHIVE_1, ARCHIVE_2))
    only_in_archives = set()
    for path, digest, _ in source_pieces(month2):
        location = index.locate(digest)
        if path == ARCHIVE_1 and location and location.weak:
            only_in_archives.add(digest)
    assert only_in_archives, "the sample should share archive-only pieces across months"
    staging = stage_transfer(month2, far)
    assert not any(staging.has_blob(d) for d in only_in_archives)  # nobody sent them
    result = apply(month2, far, staging)
    assert result.pieces_copied >= len(only_in_archives)
    assert scan_id(far) == month2.id


def test_a_missing_piece_stops_the_apply_before_any_change(
    tmp_path: Path, month1: Source, month2: Source
) -> None:
    far = far_at_month1(tmp_path, month1)
    before = listing(far)
    index = far_index(far)
    lacking = next(
        (path, digest)
        for path, digest, _ in source_pieces(month2)
        if path.endswith("/data") and not index.has(digest)
    )
    staging = stage_transfer(month2, far, skip=frozenset({lacking[1]}))
    with pytest.raises(MissingPieces) as raised:
        apply(month2, far, staging)
    message = str(raised.value)
    assert "1 pieces" in message and lacking[1].hex()[:16] in message and lacking[0] in message
    assert listing(far) == before
    assert scan_id(far) == month1.id
    assert not (StateDir(far).path / "journal").exists()
    assert resume_pending(far, StateDir(far), staging=staging) is None


def test_delete_false_keeps_what_the_target_lacks(
    tmp_path: Path, month1: Source, month2: Source
) -> None:
    far = far_at_month1(tmp_path, month1)
    (far / "content" / "notes.txt").write_text("kept\n")
    (far / "local" / "deep").mkdir(parents=True)
    staging = stage_transfer(month2, far)
    result = apply(month2, far, staging, delete=False)
    assert (far / ARCHIVE_2).is_file()
    assert (far / "content" / "notes.txt").read_text() == "kept\n"
    assert (far / "local" / "deep").is_dir()
    assert result.root != month2.id and result.files_deleted == 0
    with records_of(month2) as target, SnapshotReader(StateDir(far).snapshot) as now:
        changes = list(diff_trees(target.tree, target.root, now.tree, now.root))
    gone = {f"content/{p.name}" for p in (month1.root / "content").glob("mirror_*.tar")}
    gone -= {f"content/{p.name}" for p in (month2.root / "content").glob("mirror_*.tar")}
    assert ARCHIVE_2 in gone
    assert {c.path for c in changes} == {*gone, "content/notes.txt", "local"}
    assert all(c.side is Side.ONLY_B for c in changes)
    assert registry_problems(far) == []
    # With delete=True the extras go, and nothing needs sending again.
    result = apply(month2, far, Staging.open(StateDir(far)))
    assert result.root == month2.id == scan_id(far)


def test_applying_twice_is_harmless(tmp_path: Path, month1: Source, month2: Source) -> None:
    far = far_at_month1(tmp_path, month1)
    apply(month2, far, stage_transfer(month2, far))
    before = listing(far)
    again = apply(month2, far, Staging.open(StateDir(far)))
    assert again.root == month2.id
    assert (again.steps, again.files_written, again.files_deleted) == (0, 0, 0)
    assert listing(far) == before
    assert resume_pending(far, StateDir(far)) is None


class Injected(Exception):
    pass


def test_a_symlink_that_appears_where_a_directory_is_expected_stops_the_apply(
    tmp_path: Path, month1: Source, month2: Source
) -> None:
    far = far_at_month1(tmp_path, month1)
    sentinel = tmp_path / "outside"
    sentinel.mkdir()
    staging = stage_transfer(month2, far)
    blobs = far / CACHE / "docker/registry/v2/blobs/sha256"
    moved = tmp_path / "moved-blobs"

    def swap_in_symlink(step: int, what: str) -> None:
        if step == 1:  # after the scan and checks: a race the plan cannot know about
            blobs.rename(moved)
            blobs.symlink_to(sentinel, target_is_directory=True)

    with records_of(month2) as snapshot, pytest.raises(UnsafePath) as raised:
        apply_target(
            far,
            StateDir(far),
            month2.id,
            snapshot.record,
            staging,
            delete=True,
            hooks=ApplyHooks(swap_in_symlink),
        )
    assert str(blobs) in str(raised.value)
    assert list(sentinel.iterdir()) == []
    # Put the directory back: the pending apply then finishes.
    blobs.unlink()
    moved.rename(blobs)
    result = resume_pending(far, StateDir(far), staging=staging)
    assert result is not None and result.resumed and result.root == month2.id
    assert list(sentinel.iterdir()) == []


def test_a_symlink_in_the_far_tree_is_replaced_not_followed(
    tmp_path: Path, month1: Source, month2: Source
) -> None:
    far = far_at_month1(tmp_path, month1)
    sentinel = tmp_path / "outside"
    sentinel.mkdir()
    hold = far / "content/working-dir/hold-release"
    shutil.rmtree(hold)
    hold.symlink_to(sentinel, target_is_directory=True)
    staging = stage_transfer(month2, far)
    result = apply(month2, far, staging)
    assert result.root == month2.id
    assert hold.is_dir() and not hold.is_symlink()
    assert list(sentinel.iterdir()) == []


def make_plain(root: Path, entries: dict[str, str | None]) -> None:
    """Files (text), directories (None), and symlinks ('-> target')."""
    for path, body in entries.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if body is None:
            target.mkdir()
        elif body.startswith("-> "):
            target.symlink_to(body[3:])
        else:
            target.write_text(body)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            os.utime(Path(folder) / name, ns=(10**18, 10**18), follow_symlinks=False)


def test_kind_changes_and_plain_trees(tmp_path: Path) -> None:
    source = tmp_path / "source"
    far = tmp_path / "far"
    make_plain(
        source,
        {
            "was-file/inner.txt": "now a dir",
            "was-dir": "now a file",
            "was-link": "now a file too",
            "file-to-link": "-> was-dir",
            "same/keep.txt": "same",
            "ro/inside.txt": "under a read-only directory",
        },
    )
    (source / "ro").chmod(0o555)
    make_plain(
        far,
        {
            "was-file": "a file",
            "was-dir/old.txt": "old",
            "was-link": "-> nowhere",
            "file-to-link": "plain",
            "same/keep.txt": "same",
            "gone/deep/x.txt": "x",
        },
    )
    src = Source(source, scan_id(source))
    staging = stage_transfer(src, far)
    result = apply(src, far, staging)
    assert result.root == src.id == scan_id(far)
    assert listing(far) == listing(source)
    assert (far / "ro").stat().st_mode & 0o777 == 0o555


def test_pieces_are_found_in_files_that_stay(tmp_path: Path) -> None:
    """A renamed file needs no transfer: its pieces come from the old name, which stays
    (delete=False) or is read before it goes (delete=True)."""
    big = os.urandom(300_000)
    for delete in (False, True):
        source, far = tmp_path / f"s{delete}", tmp_path / f"f{delete}"
        make_plain(source, {"new-name.bin": "", "x/y": "z"})
        make_plain(far, {"old-name.bin": "", "x/y": "z"})
        for root, name in ((source, "new-name.bin"), (far, "old-name.bin")):
            (root / name).write_bytes(big)
            os.utime(root / name, ns=(10**18, 10**18))
        src = Source(source, scan_id(source))
        staging = stage_transfer(src, far)
        assert staging.blob_count == 0  # the far side has every piece already
        result = apply(src, far, staging, delete=delete)
        assert (far / "new-name.bin").read_bytes() == big
        assert (far / "old-name.bin").exists() is not delete
        assert result.pieces_copied == (1 if delete else 0)


def test_a_target_may_not_write_into_the_state_folder(tmp_path: Path) -> None:
    source, far = tmp_path / "source", tmp_path / "far"
    make_plain(source, {"a.txt": "a"})
    far.mkdir()
    src = Source(source, scan_id(source))
    # A hostile record set: the source's root plus a '.syncd' entry.
    with records_of(src) as snapshot:
        children = snapshot.tree(snapshot.root)
        inner = encode_tree([FileNode("journal", 0o644, 0, 0, ())])
        evil = encode_tree(
            sorted([*children, DirNode(".syncd", 0o755, tree_id(inner))], key=lambda n: n.name)
        )
        records = {tree_id(inner): inner, tree_id(evil): evil}
        with pytest.raises(ApplyError, match="keeps its syncd state"):
            apply_target(
                far,
                StateDir(far),
                tree_id(evil),
                records.get,
                Staging.open(StateDir(far)),
                delete=True,
            )
    assert sorted(p.name for p in far.iterdir()) == [".syncd"]


def test_a_target_may_not_remove_the_folder_holding_the_state(tmp_path: Path) -> None:
    source, far = tmp_path / "source", tmp_path / "far"
    make_plain(source, {"a.txt": "a"})
    make_plain(far, {"keep/x": "x"})
    state = StateDir(far, far / "keep" / "state")
    src = Source(source, scan_id(source))
    with records_of(src) as snapshot, Staging.open(state) as staging:
        staging.add_blob(*next((d, data) for _, d, data in source_pieces(src)))
        with pytest.raises(ApplyError, match="holds the syncd state folder"):
            apply_target(far, state, src.id, snapshot.record, staging, delete=True)
        assert (far / "keep" / "x").is_file() and not (far / "a.txt").exists()
        result = apply_target(far, state, src.id, snapshot.record, staging, delete=False)
    assert (far / "a.txt").read_text() == "a" and (far / "keep" / "x").is_file()
    assert result.files_written == 1
