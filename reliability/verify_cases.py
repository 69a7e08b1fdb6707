"""Real-life breakages of a far side's content folder, far cache and image set config.

Each kind turns a pristine far root (month 1's cache and working-dir, month 2's archives
in content/) into a broken one, by a seeded choice (which archive, where to cut, which
blob). What oc-mirror would do is not written here: the oracle finds out.
"""

from __future__ import annotations

import random
import re
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from syncd.sample import tarformat

V2 = Path(".oc-mirror/.cache/docker/registry/v2")
CONTENT = Path("content")


@dataclass(slots=True)
class Case:
    root: Path  # the far root: content/ and .oc-mirror/.cache
    config: str  # the ImageSetConfiguration the upload is given
    rng: random.Random

    @property
    def content(self) -> Path:
        return self.root / CONTENT

    @property
    def v2(self) -> Path:
        return self.root / V2

    def archives(self) -> list[Path]:
        return sorted(self.content.glob("mirror_[0-9][0-9][0-9][0-9][0-9][0-9].tar"))

    def pick_archive(self) -> Path:
        return self.rng.choice(self.archives())

    def members(self, archive: Path) -> list[tarfile.TarInfo]:
        with tarfile.open(archive) as tar:
            return tar.getmembers()


Breakage = Callable[[Case], None]


def _prefix_copy(case: Case, name: str) -> None:
    source = case.pick_archive()
    data = source.read_bytes()
    (case.content / name.format(n=source.name)).write_bytes(
        data[: case.rng.randrange(1, len(data))]
    )


def sidecar_checksum(case: Case) -> None:
    suffix = case.rng.choice([".sha256", ".md5", ".sha256sum", ".asc"])
    archive = case.pick_archive()
    (case.content / (archive.name + suffix)).write_text(f"{'ab' * 32}  {archive.name}\n")


def rsync_temporary(case: Case) -> None:
    tail = "".join(case.rng.choice("ABCDEFGHabcdefgh0123456789") for _ in range(6))
    _prefix_copy(case, ".{n}." + tail)


def partial_download(case: Case) -> None:
    _prefix_copy(case, "{n}." + case.rng.choice(["part", "crdownload", "partial"]))


def old_copy(case: Case) -> None:
    archive = case.pick_archive()
    shutil.copyfile(archive, case.content / (archive.name + case.rng.choice([".old", ".bak", "~"])))


def empty_archive(case: Case) -> None:
    (case.content / f"mirror_{case.rng.randrange(10, 99):06d}.tar").write_bytes(b"")


def ignored_names(case: Case) -> None:
    archive = case.pick_archive()
    name = case.rng.choice(
        ["mirror_1.tar", archive.name.upper(), "mirror_00001.tar", "MIRROR_000001.tar"]
    )
    shutil.copyfile(archive, case.content / name)


def directory_named_like_an_archive(case: Case) -> None:
    (case.content / f"mirror_{case.rng.randrange(10, 99):06d}.tar").mkdir()


def missing_archive(case: Case) -> None:
    archives = case.archives()
    which = case.rng.choice(["first", "middle", "last"])
    index = {"first": 0, "last": len(archives) - 1}.get(which, len(archives) // 2)
    archives[index].unlink()


def lost_archive_already_in_cache(case: Case) -> None:
    """An earlier, interrupted upload extracted this archive's blobs into the cache."""
    archive = case.pick_archive()
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.isfile() and "/blobs/" in member.name:
                target = case.root / ".oc-mirror/.cache" / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                extracted = tar.extractfile(member)
                assert extracted is not None
                target.write_bytes(extracted.read())
    archive.unlink()


def truncated_archive(case: Case) -> None:
    archive = case.pick_archive()
    size = archive.stat().st_size
    with archive.open("r+b") as handle:
        handle.truncate(case.rng.randrange(512, size))


def truncated_at_member(case: Case) -> None:
    """Cut right after a member's data, or after its padding: Go's reader ends cleanly."""
    archive = case.pick_archive()
    with tarfile.open(archive) as tar:
        member = case.rng.choice([m for m in tar.getmembers() if m.size])
    end = member.offset_data + member.size
    if case.rng.random() < 0.5:
        end += -member.size % 512
    with archive.open("r+b") as handle:
        handle.truncate(end)


def flipped_byte_in_blob(case: Case) -> None:
    """A byte flipped inside a blob member: the archive reads, the blob lies."""
    archive = case.pick_archive()
    blobs = [m for m in case.members(archive) if "/blobs/" in m.name and m.size]
    if not blobs:
        return
    member = case.rng.choice(blobs)
    with archive.open("r+b") as handle:
        handle.seek(member.offset_data + case.rng.randrange(member.size))
        value = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([value[0] ^ 0x5A]))


def broken_tag_outside_config(case: Case) -> None:
    tag = case.v2 / "repositories/scratch/leftover/_manifests/tags/t/current"
    tag.mkdir(parents=True)
    (tag / "link").write_text("sha256:" + f"{case.rng.getrandbits(256):064x}")


def truncated_cache_blob(case: Case) -> None:
    blobs = sorted(case.v2.glob("blobs/sha256/*/*/data"))
    blob = case.rng.choice(blobs)
    data = blob.read_bytes()
    blob.write_bytes(data[: len(data) // 2])


def missing_cache_blob(case: Case) -> None:
    blobs = sorted(case.v2.glob("blobs/sha256/*/*/data"))
    case.rng.choice(blobs).unlink()


def without_members(case: Case, matches: Callable[[str], bool]) -> None:
    """Rewrite every archive without the matching members (Go's header rules kept)."""
    for archive in case.archives():
        kept = []
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if member.isfile() and not matches(member.name):
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    kept.append((member, extracted.read()))
        with archive.open("wb") as out:
            for member, data in kept:
                out.write(
                    tarformat.member_header(member.name, len(data), member.mode, int(member.mtime))
                )
                out.write(data + tarformat.padding(len(data)))
            out.write(tarformat.END_OF_ARCHIVE)


def _drop_everywhere(case: Case, pattern: str) -> None:
    regex = re.compile(pattern)
    without_members(case, lambda name: regex.search(name) is not None)
    base = case.root / ".oc-mirror/.cache"
    for path in sorted(base.rglob("*"), reverse=True):
        rel = path.relative_to(base).as_posix()
        if regex.search(rel) and path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in sorted(case.content.glob("working-dir/**/*"), reverse=True):
        rel = path.relative_to(case.content).as_posix()
        if regex.search(rel) and path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def missing_signature(case: Case) -> None:
    version = case.rng.choice(["4.18.1", "4.18.2"])
    _drop_everywhere(case, rf"working-dir/signatures/{re.escape(version)}-")


def missing_graph_data(case: Case) -> None:
    _drop_everywhere(case, r"working-dir/hold-release/cincinnati-graph-data/")


def missing_image_references(case: Case) -> None:
    version = case.rng.choice(["4.18.1", "4.18.2"])
    _drop_everywhere(case, rf"hold-release/ocp-release/{re.escape(version)}-x86_64/")


def missing_graph_image(case: Case) -> None:
    where = case.rng.choice(["archives only", "everywhere"])
    if where == "archives only":
        without_members(case, lambda name: "openshift/graph-image/_manifests/tags/" in name)
    else:
        _drop_everywhere(case, r"openshift/graph-image/_manifests/tags/latest/")


def missing_filtered_catalog(case: Case) -> None:
    _drop_everywhere(case, r"working-dir/operator-catalogs/.*/digest$")


def missing_helm_chart(case: Case) -> None:
    _drop_everywhere(case, r"working-dir/helm/charts/")


def index_child_absent(case: Case) -> None:
    """A catalog index child's revision link gone; the config filters linux/amd64."""
    revisions = sorted(
        case.v2.glob("repositories/redhat/redhat-operator-index/_manifests/revisions/sha256/*")
    )
    archived = {
        m.name.split("/")[-2]
        for a in case.archives()
        for m in case.members(a)
        if "redhat-operator-index/_manifests/revisions/" in m.name
    }
    names = sorted({p.name for p in revisions} | archived)
    victim = case.rng.choice(names)
    _drop_everywhere(case, rf"redhat-operator-index/_manifests/revisions/sha256/{victim}/")


def signature_blob_missing(case: Case) -> None:
    """A cosign .sig tag whose payload layer is gone."""
    links = sorted(case.v2.glob("repositories/**/_manifests/tags/*.sig/current/link"))
    if not links:
        return
    digest = case.rng.choice(links).read_text().strip()
    import json  # noqa: PLC0415

    manifest = case.v2 / f"blobs/sha256/{digest[7:9]}/{digest[7:]}/data"
    layer = json.loads(manifest.read_bytes())["layers"][0]["digest"]
    _drop_everywhere(case, rf"blobs/sha256/{layer[7:9]}/{layer[7:]}/")


def tainted_member(case: Case) -> None:
    archive = case.pick_archive()
    data = b"sha256:" + b"0" * 64
    name = case.rng.choice(["working-dir/../../escape", "docker/registry/v2/../../../x"])
    raw = archive.read_bytes()
    end = len(raw) - 1024
    header = tarformat.member_header(name, len(data), 0o644, 1_700_000_000)
    archive.write_bytes(
        raw[:end] + header + data + tarformat.padding(len(data)) + tarformat.END_OF_ARCHIVE
    )


def config_additional_not_mirrored(case: Case) -> None:
    extra = "  - name: registry.redhat.io/ubi9/not-mirrored:1.0\n"
    case.config = case.config.replace("  additionalImages:\n", "  additionalImages:\n" + extra)


def config_blocks_broken_image(case: Case) -> None:
    """An additional image broken in the cache, and blocked by the config."""
    links = sorted(case.v2.glob("repositories/additional/*/*/_manifests/tags/*/current/link"))
    link = case.rng.choice(links)
    repo = link.parents[3].relative_to(case.v2 / "repositories").parent.as_posix()
    _drop_everywhere(case, rf"{re.escape(repo)}/_manifests/revisions/")
    case.config += f"  blockedImages:\n  - name: {re.escape(repo)}\n"


def config_graph_off_graph_missing(case: Case) -> None:
    _drop_everywhere(case, r"openshift/graph-image/_manifests/tags/latest/")
    case.config = case.config.replace("graph: true", "graph: false")


def config_release_by_tag(case: Case) -> None:
    case.config = case.config.replace(
        "    channels:\n",
        "    release: quay.io/openshift-release-dev/ocp-release:4.18.2-x86_64\n    channels:\n",
    )


def pristine(case: Case) -> None:
    return


def working_dir_file_gone_on_disk(case: Case) -> None:
    """Files deleted from the far working-dir that the archives bring back."""
    files = sorted(p for p in (case.content / "working-dir").rglob("*") if p.is_file())
    for path in case.rng.sample(files, min(5, len(files))):
        path.unlink()


KINDS: dict[str, Breakage] = {
    "pristine": pristine,
    "sidecar checksum file": sidecar_checksum,
    "rsync temporary": rsync_temporary,
    "partial download": partial_download,
    "old copy": old_copy,
    "empty archive": empty_archive,
    "ignored names": ignored_names,
    "directory named like an archive": directory_named_like_an_archive,
    "missing archive": missing_archive,
    "lost archive already in cache": lost_archive_already_in_cache,
    "truncated archive": truncated_archive,
    "truncated at a member": truncated_at_member,
    "flipped byte in a blob": flipped_byte_in_blob,
    "broken tag outside the config": broken_tag_outside_config,
    "truncated cache blob": truncated_cache_blob,
    "missing cache blob": missing_cache_blob,
    "missing signature": missing_signature,
    "missing graph data": missing_graph_data,
    "missing image-references": missing_image_references,
    "missing graph image": missing_graph_image,
    "missing filtered catalog": missing_filtered_catalog,
    "missing helm chart": missing_helm_chart,
    "index child absent": index_child_absent,
    "signature blob missing": signature_blob_missing,
    "tainted member": tainted_member,
    "additional image not mirrored": config_additional_not_mirrored,
    "blocked broken image": config_blocks_broken_image,
    "graph off, graph image gone": config_graph_off_graph_missing,
    "release by tag": config_release_by_tag,
    "working-dir files gone on disk": working_dir_file_gone_on_disk,
}
DEEP_ONLY = frozenset({"flipped byte in a blob"})  # shallow verify reads no layer bytes
