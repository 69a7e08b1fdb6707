"""The volume planner (syncd/media/plan.py): every file and volume within its limits,
blobs in order, and clear refusals when a limit cannot be met."""

from __future__ import annotations

import argparse

import pytest

from protocol.limits import CHUNK_SIZE
from protocol.media import INDEX_PER_BLOB_MAX, INDEX_PER_FILE_MAX, MAX_VOLUMES
from syncd.commands.export import register
from syncd.media.plan import FAT32_MAX_FILE, MediaLimits, PlanError, VolumePlan, plan_volumes

GIB = 1 << 30


def blobs(count: int, size: int) -> list[tuple[bytes, int]]:
    return [(i.to_bytes(32, "big"), size) for i in range(count)]


def flatten(volumes: list[VolumePlan]) -> list[tuple[bytes, int]]:
    return [blob for v in volumes for p in v.packs for blob in p.blobs]


def test_the_default_file_limit_is_fat32s() -> None:
    assert FAT32_MAX_FILE == 4 * GIB - 1
    assert MediaLimits(None).max_file_size == FAT32_MAX_FILE
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["export", "src", "--to", "out"])
    assert int(args.max_file_size) == 4 * GIB - 1


def test_packs_of_a_large_export_are_split_below_4_gib() -> None:
    """300 full pieces (4.7 GiB) in one unlimited volume: two packs, each < 4 GiB."""
    wanted = blobs(300, CHUNK_SIZE)
    (volume,) = plan_volumes(wanted, 1000, MediaLimits(None))
    assert [p.size for p in volume.packs] == [255 * CHUNK_SIZE, 45 * CHUNK_SIZE]
    assert all(p.size <= FAT32_MAX_FILE for p in volume.packs)
    assert flatten([volume]) == wanted


def test_small_limits_give_several_volumes_each_within_them() -> None:
    wanted = [(i.to_bytes(32, "big"), 1000 + (i * 7919) % 90_000) for i in range(200)]
    limits = MediaLimits(volume_size=1_000_000, max_file_size=300_000)
    volumes = plan_volumes(wanted, 20_000, limits)
    assert len(volumes) > 5
    for volume in volumes:
        assert volume.total_max <= 1_000_000
        assert volume.index_max <= 300_000
        assert all(0 < p.size <= 300_000 for p in volume.packs)
    assert flatten(volumes) == wanted  # nothing lost, nothing reordered


def test_the_index_bound_counts_every_file_and_blob() -> None:
    limits = MediaLimits(volume_size=None, max_file_size=100)
    (volume,) = plan_volumes(blobs(5, 60), 500, MediaLimits(None))
    assert volume.index_max == 500 + INDEX_PER_FILE_MAX + 5 * INDEX_PER_BLOB_MAX
    with pytest.raises(PlanError, match="index"):
        plan_volumes(blobs(5, 60), 500, limits)


def test_an_export_with_nothing_to_send_still_has_one_volume() -> None:
    (volume,) = plan_volumes([], 4000, MediaLimits(volume_size=10_000))
    assert volume.packs == [] and volume.total_max == 4000


def test_a_piece_larger_than_the_file_limit_is_refused_by_name() -> None:
    with pytest.raises(PlanError, match=r"--max-file-size"):
        plan_volumes(blobs(1, 400_000), 1000, MediaLimits(None, max_file_size=300_000))


def test_a_volume_too_small_for_the_tree_records_is_refused() -> None:
    with pytest.raises(PlanError, match="tree records"):
        plan_volumes(blobs(1, 10), 2_000_000, MediaLimits(volume_size=1_000_000))
    with pytest.raises(PlanError, match="--volume-size"):
        plan_volumes(blobs(1, 990_000), 20_000, MediaLimits(volume_size=1_000_000))


def test_more_than_9999_volumes_is_refused() -> None:
    per_volume = 1000 + INDEX_PER_FILE_MAX + INDEX_PER_BLOB_MAX + 10
    with pytest.raises(PlanError, match=str(MAX_VOLUMES)):
        plan_volumes(blobs(MAX_VOLUMES + 1, 10), 1000, MediaLimits(volume_size=per_volume))
