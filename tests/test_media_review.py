"""What crosses, and the record of it: `syncd show`, the audit log, the inspection gate
(`import --inspect`, `serve --inspect` behind a real sshd), and one-way links
(`export --assume-delivered`)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mediautil import copy_tree, export, import_, receipt, syncd
from tests.pushutil import push, run_push, snapshot_id
from tests.sshd import SSHServer

VOLUMES = ("--volume-size", "300k", "--max-file-size", "200k")


@pytest.fixture
def months(tiny_months: dict[int, Path], tmp_path: Path) -> tuple[Path, Path]:
    """The far side at month 1 (imported), and the source at month 2 with a receipt."""
    src = copy_tree(tiny_months[1], tmp_path / "src")
    far = tmp_path / "far"
    export(src, tmp_path / "m1", "--full", *VOLUMES)
    import_(far, tmp_path / "m1")
    receipt(far, tmp_path / "r1")
    src2 = copy_tree(tiny_months[2], tmp_path / "src2")
    return src2, far


def test_show_prints_the_signed_manifest_of_what_an_export_carries(
    months: tuple[Path, Path], tmp_path: Path
) -> None:
    src, _ = months
    summary = export(src, tmp_path / "m2", "--receipt", tmp_path / "r1", *VOLUMES)
    shown = syncd("show", summary["folder"], "--json")
    assert shown.code == 0, shown.err
    data = shown.json
    assert data["format"] == 1 and data["kind"] == "export"
    manifest = data["manifest"]
    assert manifest["basis"].startswith("receipt #1")
    changed = [i for i in manifest["images"] if i["change"] == "changed"]
    assert changed and all(i["previous"] and i["digest"] != i["previous"] for i in changed)
    images = [i for i in manifest["images"] if i["change"] != "removed"]
    assert all(i["platforms"] for i in images if not i["tag"].endswith(".sig"))  # cosign: none
    counts = manifest["counts"]
    assert counts["files_added"] + counts["files_changed"] == sum(
        1 for p in manifest["paths"] if p["content"]
    )
    text = syncd("show", summary["folder"]).out
    assert "signature: none (unsigned)" in text and "changed  " in text
    # A tampered manifest is refused by the index's checksum, not shown.
    index = Path(summary["volumes"][0]["path"]) / "index"
    raw = bytearray(index.read_bytes())
    at = raw.find(b"openshift/")
    raw[at] = ord("x")
    index.write_bytes(bytes(raw))
    bad = syncd("show", index.parent)
    assert bad.code == 2 and "checksum does not match" in bad.err and not bad.out


def test_inspection_refusal_applies_nothing_keeps_staging_and_is_audited(
    months: tuple[Path, Path], tmp_path: Path
) -> None:
    src, far = months
    before = snapshot_id(far)
    summary = export(src, tmp_path / "m2", "--receipt", tmp_path / "r1", *VOLUMES)
    seen = tmp_path / "seen.json"
    check = (
        f'{shlex.quote(sys.executable)} -c "import json,os,sys; '
        "m=json.load(open(os.environ['SYNCD_INSPECT_MANIFEST'])); "
        "files=os.environ['SYNCD_INSPECT_FILES']; "
        "listed=sorted(p['path'] for p in m['paths'] if p['content']); "
        "there=sorted(os.path.relpath(os.path.join(d,f),files) for d,_,fs in os.walk(files) "
        "for f in fs); "
        f"json.dump([listed==there, m['source'], m['export'], os.getcwd()], open('{seen}','w')); "
        "print('malware found'); sys.exit(3)\""
    )
    ran = syncd("import", summary["folder"], "--root", far, "--inspect", check)
    assert ran.code == 2
    assert "inspection command exited with status 3" in ran.err and "malware found" in ran.err
    assert snapshot_id(far) == before
    same, source, export_id, cwd = json.loads(seen.read_text())
    assert same and source == "import" and export_id == summary["export"]
    assert not Path(cwd).exists()  # the laid-out copies are gone
    assert syncd("show", far).out.startswith("staged, not applied")
    again = import_(far, Path(summary["folder"]), args=("--inspect", "true")).json
    assert again["status"] == "applied" and sum(v["blobs_staged"] for v in again["volumes"]) == 0
    assert snapshot_id(far) == snapshot_id(src)
    entries = syncd("audit", "--root", far, "--json").json["entries"]
    assert [e["status"] for e in entries] == ["applied", "refused", "applied"]
    refused = entries[1]
    assert refused["inspection"]["exit_status"] == 3
    assert "malware found" in refused["inspection"]["output"]
    assert refused["before"] == refused["after"] or refused["after"] is None
    assert entries[2]["before"] == before and entries[2]["after"] == snapshot_id(src)
    assert any(i["change"] == "changed" for i in entries[2]["images"])
    text = syncd("audit", "--root", far).out
    assert "REFUSED  import of export" in text and "inspection: exit 3" in text


def test_assume_delivered_exports_only_what_is_new(
    tiny_months: dict[int, Path], tmp_path: Path
) -> None:
    src = copy_tree(tiny_months[1], tmp_path / "src")
    far = tmp_path / "far"
    first = export(src, tmp_path / "d1", "--assume-delivered", "--parity", "1", *VOLUMES)
    assert first["basis"] == "none"
    import_(far, tmp_path / "d1")
    two = tiny_months[2]
    src2 = copy_tree(two, tmp_path / "src2")
    (src2 / ".syncd").mkdir()
    for name in ("media",):
        subprocess.run(["cp", "-a", str(src / ".syncd" / name), str(src2 / ".syncd")], check=True)
    second = export(src2, tmp_path / "d2", "--assume-delivered", "--parity", "1", *VOLUMES)
    assert second["basis"] == "assumed"
    assert "assumed delivered: export " + first["export"] in second["basis_text"]
    # Exactly what a receipt would have said the far side lacks.
    receipt(far, tmp_path / "r")
    confirmed = export(src2, tmp_path / "r2", "--receipt", tmp_path / "r", *VOLUMES)
    assert (second["blobs"], second["blob_bytes"]) == (confirmed["blobs"], confirmed["blob_bytes"])
    assert import_(far, tmp_path / "d2").json["status"] == "applied"
    assert snapshot_id(far) == snapshot_id(src2)


@pytest.mark.needs_sshd
def test_serve_inspect_refuses_a_push_and_the_audit_names_the_key(
    tiny_months: dict[int, Path], tmp_path: Path
) -> None:
    server = SSHServer.start(tmp_path / "sshd", extra_config=["ExposeAuthInfo yes"])
    try:
        far = tmp_path / "far"
        serve = f"{shlex.quote(sys.executable)} -m syncd serve --stdio --root {far}"
        server.force_command(f"{serve} --inspect 'echo refused by policy; exit 1'")
        src = copy_tree(tiny_months[1], tmp_path / "src")
        refused = run_push(src, f"far-forced:{far}", env=server.env())
        assert refused.returncode == 2
        assert "inspection command exited with status 1" in refused.stderr
        assert not (far / "content").exists()
        server.force_command(f"{serve} --inspect true")
        assert push(src, f"far-forced:{far}", env=server.env())["status"] == "applied"
        fingerprint = subprocess.run(
            ["ssh-keygen", "-lf", str(server.ssh_dir / "id_forced.pub")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[1]
        entries = syncd("audit", "--root", far, "--json").json["entries"]
        assert [e["status"] for e in entries] == ["refused", "applied"]
        assert all(e["source"] == "push" and e["client"] == "127.0.0.1" for e in entries)
        assert entries[1]["key"] == f"ssh-ed25519 {fingerprint}"
    finally:
        server.stop()
