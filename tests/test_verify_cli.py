"""`syncd verify` as a command and as the library call the daemon makes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from syncd.sample import TINY, generate_month
from syncd.scan.api import scan_root
from syncd.state import StateDir
from syncd.verify import VerifyOptions, verify_root
from tests.scanutil import run_cli

CACHE = Path(".oc-mirror/.cache")


@pytest.fixture(scope="module")
def month1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("m1") / "root"
    generate_month(root, 1, TINY, via_registry=False)
    return root


def copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True)
    return target


def test_json_report_of_a_sound_tree(month1: Path) -> None:
    done = run_cli("verify", "--json", "--deep", str(month1))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["deep"] is True
    # The cache is judged through the content folder that uploads from it.
    assert [s["kind"] for s in report["sections"]] == ["content"]
    summary = report["summary"]
    assert summary["images_broken"] == 0 and summary["errors"] == 0
    assert summary["images_ok"] == 12  # the images the archived config derives
    assert summary["bytes_hashed"] > 400_000 and summary["blobs_checked"] > 50
    content = report["sections"][0]
    assert content["config"].startswith("isc_2026-01-01T00:00:00Z in mirror_")
    codes = {p["code"] for p in content["problems"]}
    assert "isc-from-archive" in codes  # said: no --config was given
    assert [a["verdict"] for a in content["archives_picked"]] == ["ok"] * 3
    kinds = {d["kind"] for d in content["derived"]}
    assert kinds == {"release", "release-component", "graph", "catalog", "operator", "additional"}
    (sparse,) = [d for d in content["derived"] if d["image"] == "rhbk/keycloak-rhel9:26.0.0"]
    assert sparse["platforms"] == ["linux/amd64"] and sparse["verdict"] == "ok"
    opened = {o["path"] for o in content["working_dir_opened"] if o["present"]}
    assert "working-dir/hold-release/cincinnati-graph-data/amd64-stable-4.18.json" in opened


def test_human_report_lists_images_and_a_summary(month1: Path) -> None:
    done = run_cli("verify", str(month1))
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert any(line.startswith("content ") for line in lines)
    assert "  ok      openshift/graph-image:latest" in lines
    assert lines[-1].startswith("OK: 12 images ok, 0 broken; 0 errors")


def test_sparse_indexes_outside_oc_mirror_cache_need_the_flag(month1: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    copy(month1 / CACHE / "docker", plain / "docker")
    done = run_cli("verify", "--json", str(plain))
    assert done.returncode == 1
    report = json.loads(done.stdout)
    codes = {p["code"] for s in report["sections"] for p in s["problems"]}
    assert codes == {"child-missing"}
    assert run_cli("verify", "--allow-sparse-index", str(plain)).returncode == 0


def test_against_a_snapshot(month1: Path, tmp_path: Path) -> None:
    root = copy(month1, tmp_path / "root")
    taken = scan_root(root, StateDir(root))
    snapshot = tmp_path / "snapshot"
    shutil.copyfile(taken.snapshot_path, snapshot)
    done = run_cli("verify", "--against", str(snapshot), str(root))
    assert done.returncode == 0, done.stdout
    assert f"snapshot: {taken.summary.id_hex}" in done.stdout
    changed = root / "content" / "working-dir" / "logs"
    (changed / "extra.log").write_text("new\n")
    done = run_cli("verify", "--json", "--against", str(snapshot), str(root))
    assert done.returncode == 1
    (against,) = [s for s in json.loads(done.stdout)["sections"] if s["kind"] == "against"]
    paths = [p["path"] for p in against["problems"]]
    assert str(changed / "extra.log") in paths
    assert all(p["code"] == "tree-differs" for p in against["problems"])


def test_against_a_missing_snapshot_is_a_usage_error(month1: Path, tmp_path: Path) -> None:
    done = run_cli("verify", "--against", str(tmp_path / "nope"), str(month1))
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_library_entry_point_for_the_daemon(month1: Path, tmp_path: Path) -> None:
    root = copy(month1, tmp_path / "root")
    report = verify_root(root, VerifyOptions())
    assert report.ok and report.lines()[-1].startswith("OK:")
    assert json.loads(json.dumps(report.as_json()))["ok"] is True
    (root / "content" / "mirror_000002.tar").unlink()  # blobs: the cache has none either
    shutil.rmtree(root / CACHE)
    broken = verify_root(root)
    assert not broken.ok
    (content,) = broken.sections
    assert content.images and not any(image.ok for image in content.images)


def test_content_folder_given_as_the_root_finds_the_cache_beside_it(
    month1: Path, tmp_path: Path
) -> None:
    root = copy(month1, tmp_path / "root")
    report = verify_root(root / "content")
    (content,) = report.sections
    assert dict(content.facts)["cache"] == str(root / CACHE / "docker/registry/v2")
    assert report.ok
    elsewhere = copy(root / "content", tmp_path / "elsewhere" / "content")
    alone = verify_root(elsewhere, VerifyOptions(cache_dir=root))
    assert alone.ok and dict(alone.sections[0].facts)["cache"].startswith(str(root))
