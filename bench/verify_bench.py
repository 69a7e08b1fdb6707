"""How fast `syncd verify` is, as ratios to standard tools measured in the same run.

- D: `syncd verify --deep` on oc-mirror's cache of the LARGE sample (month 1, direct mode,
  ~1.2 GB of blobs; the same tree scan_bench uses, reused if present) against hashing the
  same blob files on all cores two ways: a small Python script (hashlib, one thread per
  core) and `find | xargs -0 -P nproc -n 8 sha256sum`. Targets: <= 1.2 for both. Also
  reported: deep verify of the whole root (cache + content: the archives' blobs are
  hashed too) against the hashlib script over the same bytes.
- S: shallow `syncd verify` of a registry storage with >= 200,000 link files against a
  bare walk (`find DIR -printf '%s %T@\\n'`). Target <= 1.5. The tree is built here
  (see `build_link_tree`), shaped like bench/linktree.py's (several hundred repositories
  with '/' in their names, lognormal tags per repository, indexes over 1-3 platforms,
  older revisions), but consistent, so that it verifies clean: every descriptor of a blob
  gives the same size, and every config and layer has a `data` file of that size (a
  sparse file: the walk, not the disk, is measured). linktree's manifests give a shared
  layer a new random size in each manifest, so its trees cannot verify clean.

Each pair runs A B A B ... after one untimed warm-up of each (page cache warm for both);
figures are medians. syncd runs as a user runs it (`python -m syncd`, interpreter start
included), from a copy of its sources taken at the start. Run:

    PYTHONPATH=/work/main /tmp/v/bin/python -m bench.verify_bench [--quick] [--workdir DIR]
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    Command,
    Pairs,
    Row,
    arguments,
    cached_tree,
    derived_row,
    freeze_code,
    machine,
    machine_text,
    make_log,
    markdown_table,
    ratio_row,
    read_result,
    save_results,
    settle,
    startup_row,
    stat_walk,
)
from bench.samples import Sizes, month_one, sizes_for

log = make_log("verify-bench")
V2 = "docker/registry/v2"
CACHE_V2 = Path(".oc-mirror/.cache") / V2

# The baseline "small Python script": hashlib over every file, one thread per core.
HASHLIB_SCRIPT = """\
import hashlib, os, sys
from concurrent.futures import ThreadPoolExecutor
paths = [os.path.join(d, f) for top in sys.argv[1:] for d, _, fs in os.walk(top) for f in fs]
def digest(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
with ThreadPoolExecutor(os.cpu_count()) as pool:
    for _ in pool.map(digest, paths):
        pass
"""


_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_INDEX = "application/vnd.oci.image.index.v1+json"
_ORGS = ("openshift-release-dev", "redhat", "rhel9", "ubi9", "odf4", "rhacm2", "quay", "kubevirt")
_WORDS = ("cluster", "logging", "storage", "network", "mesh", "virt", "keycloak", "vault")
_PARTS = ("operator", "bundle", "controller", "agent", "exporter", "proxy", "cli", "index")
_ARCHES = ("amd64", "arm64", "ppc64le")
_MTIME_NS = 1_704_067_200 * 1_000_000_000


class _TreeWriter:
    def __init__(self, v2: Path, seed: int) -> None:
        self.v2 = str(v2)
        self.rng = random.Random(seed)
        self.sizes: dict[str, int] = {}
        self.links = 0
        self.counter = 0
        self.dirs: set[str] = set()

    def digest(self) -> str:
        self.counter += 1
        return hashlib.sha256(f"verify-bench/{self.counter}".encode()).hexdigest()

    def blob(self, size: int) -> str:
        """A config or layer: a sparse `data` file of `size` bytes (the walk is measured)."""
        digest = self.digest()
        path = self.path(f"blobs/sha256/{digest[:2]}/{digest}/data")
        with open(path, "wb") as out:
            out.truncate(size)
        os.utime(path, ns=(_MTIME_NS, _MTIME_NS))
        self.sizes[digest] = size
        return digest

    def manifest(self, body: dict[str, Any]) -> tuple[str, int]:
        data = json.dumps(body, indent=3).encode()
        digest = hashlib.sha256(data).hexdigest()
        self.file(f"blobs/sha256/{digest[:2]}/{digest}/data", data)
        return digest, len(data)

    def link(self, rel: str, digest: str) -> None:
        self.file(rel, f"sha256:{digest}".encode())
        self.links += 1

    def file(self, rel: str, data: bytes) -> None:
        path = self.path(rel)
        with open(path, "wb") as out:
            out.write(data)
        os.utime(path, ns=(_MTIME_NS, _MTIME_NS))

    def path(self, rel: str) -> str:
        folder = f"{self.v2}/{rel.rpartition('/')[0]}"
        if folder not in self.dirs:
            os.makedirs(folder, exist_ok=True)  # noqa: PTH103 - str paths
            self.dirs.add(folder)
        return f"{self.v2}/{rel}"

    def descriptor(self, digest: str, media_type: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {"digest": f"sha256:{digest}", "size": self.sizes[digest]}
        if media_type:
            out["mediaType"] = media_type
        return out


def build_link_tree(root: Path, links: int, seed: int = 1) -> dict[str, int]:
    """Registry storage under `root` with at least `links` link files, verifying clean."""
    out = _TreeWriter(root / V2, seed)
    rng = out.rng
    repos = images = 0
    while out.links < links:
        repo = "/".join((rng.choice(_ORGS), f"{rng.choice(_WORDS)}-{rng.choice(_PARTS)}-{repos}"))
        repos += 1
        base = f"repositories/{repo}"
        shared = [out.blob(rng.randint(10_000_000, 80_000_000)) for _ in range(rng.randint(2, 4))]
        layer_links = set(shared)
        for number in range(min(400, max(1, round(rng.lognormvariate(math.log(13), 1.0))))):
            images += 1
            layer_links |= _tag(out, base, f"v{1 + number // 25}.{number % 25}", shared)
        for digest in sorted(layer_links):
            out.link(f"{base}/_layers/sha256/{digest}/link", digest)
    return {"repositories": repos, "images": images, "links": out.links, "blobs": out.counter}


def _tag(out: _TreeWriter, base: str, tag: str, shared: list[str]) -> set[str]:
    """One tag: a manifest, or an index over 2-3 of them; sometimes an older revision."""
    rng = out.rng
    platforms = rng.choice((1, 1, 2, 3))
    used: set[str] = set()
    children: list[tuple[str, int]] = []
    for _ in range(platforms):
        config = out.blob(rng.randint(1_000, 20_000))
        own = [out.blob(rng.randint(10_000, 200_000_000)) for _ in range(rng.randint(3, 11))]
        layers = shared[: rng.randint(1, len(shared))] + own
        used |= {config, *layers}
        body = {
            "schemaVersion": 2,
            "mediaType": _MANIFEST,
            "config": out.descriptor(config),
            "layers": [out.descriptor(d) for d in layers],
        }
        children.append(out.manifest(body))
    revisions = [digest for digest, _ in children]
    top = revisions[0]
    if platforms > 1:
        manifests = [
            {
                "mediaType": _MANIFEST,
                "digest": f"sha256:{d}",
                "size": size,
                "platform": {"architecture": arch, "os": "linux"},
            }
            for (d, size), arch in zip(children, _ARCHES, strict=False)
        ]
        top, _ = out.manifest({"schemaVersion": 2, "mediaType": _INDEX, "manifests": manifests})
        revisions.append(top)
    history = [top]
    if rng.random() < 0.25:  # the tag named an older manifest before
        config = out.blob(rng.randint(1_000, 20_000))
        used.add(config)
        older = {
            "schemaVersion": 2,
            "mediaType": _MANIFEST,
            "config": out.descriptor(config),
            "layers": [out.descriptor(d) for d in shared],
        }
        digest, _ = out.manifest(older)
        revisions.append(digest)
        history.append(digest)
    for digest in revisions:
        out.link(f"{base}/_manifests/revisions/sha256/{digest}/link", digest)
    for digest in history:
        out.link(f"{base}/_manifests/tags/{tag}/index/sha256/{digest}/link", digest)
    out.link(f"{base}/_manifests/tags/{tag}/current/link", top)
    return used


# -- the bench -------------------------------------------------------------------------------


class Bench(Pairs):
    def __init__(self, workdir: Path, python: str, runs: int, code: Path) -> None:
        super().__init__(runs, log)
        self.python = python
        self.out = workdir / "verify-out"
        self.out.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, PYTHONPATH=str(code))

    def verify(self, name: str, root: Path, *, deep: bool) -> Command:
        argv = [self.python, "-m", "syncd", "verify", "--json", str(root)]
        return Command(
            name,
            [*argv, "--deep"] if deep else argv,
            env=self.env,
            stdout=self.out / f"{name}.json",
        )

    def verify_result(self, name: str) -> dict[str, Any]:
        return read_result(self.out / f"{name}.json")

    def hashlib_all(self, name: str, *tops: Path) -> Command:
        return Command(name, [self.python, "-c", HASHLIB_SCRIPT, *map(str, tops)])

    @staticmethod
    def sha256sum_all(name: str, top: Path) -> Command:
        script = (
            'set -o pipefail; find "$1" -type f -print0 '
            '| xargs -0 -P "$(nproc)" -n 8 sha256sum > /dev/null'
        )
        return Command(name, ["bash", "-c", script, "bench", str(top)])


def build_trees(workdir: Path, sizes: Sizes) -> tuple[Path, Path]:
    tree_d = month_one(workdir, sizes.ocmirror, sizes.ocmirror_name, log)  # scan_bench's L
    tree_s = cached_tree(
        workdir,
        f"verify-links-{sizes.links}",
        {"generator": "bench.verify_bench.build_link_tree", "version": 1, "links": sizes.links},
        lambda root: log(json.dumps(build_link_tree(root, sizes.links))),
        log=log,
    )
    return tree_d, tree_s


def _checked(bench: Bench, name: str) -> dict[str, Any]:
    """The last run's report must be clean: a broken tree would measure the wrong thing."""
    result = bench.verify_result(name)
    if not result["ok"]:
        raise SystemExit(f"{name}: the benchmark tree does not verify clean: {result['summary']}")
    summary: dict[str, Any] = result["summary"]
    return summary


def measure(bench: Bench, tree_d: Path, tree_s: Path) -> list[Row]:
    cache = tree_d / CACHE_V2
    blobs = cache / "blobs"
    deep, by_hashlib = bench.pair(
        "D_deep_hashlib",
        bench.verify("D-deep-cache", cache, deep=True),
        bench.hashlib_all("D: hashlib threads over blobs/", blobs),
    )
    deep_again, by_sha256sum = bench.pair(
        "D_deep_sha256sum",
        bench.verify("D-deep-cache", cache, deep=True),
        bench.sha256sum_all("D: find | xargs -P nproc sha256sum", blobs),
    )
    d_summary = _checked(bench, "D-deep-cache")
    whole, whole_hashlib = bench.pair(
        "D_deep_root",
        bench.verify("D-deep-root", tree_d, deep=True),
        bench.hashlib_all("D: hashlib threads over blobs/ and content/", blobs, tree_d / "content"),
    )
    root_summary = _checked(bench, "D-deep-root")
    shallow, walked = bench.pair(
        "S_shallow",
        bench.verify("S-shallow", tree_s, deep=False),
        stat_walk("S: find -printf", tree_s),
    )
    s_summary = _checked(bench, "S-shallow")
    started, bare = bench.startup(bench.python, bench.env, "verify")
    gb = d_summary["bytes_hashed"] / 1e9
    bench.figures["D_cache"] = {"root": str(cache), **d_summary}
    bench.figures["D_root"] = {"root": str(tree_d), **root_summary}
    bench.figures["S_tree"] = {"root": str(tree_s), **s_summary, **_count(tree_s)}
    bench.figures["D_GBps"] = round(gb / deep.seconds, 3)
    return [
        ratio_row(
            f"D verify --deep of the cache ({gb:.2f} GB) / hashlib on all cores",
            deep,
            by_hashlib,
            1.2,
        ),
        ratio_row(
            "D verify --deep of the cache / find \\| xargs -P nproc sha256sum",
            deep_again,
            by_sha256sum,
            1.2,
        ),
        ratio_row(
            f"D verify --deep of the whole root ({root_summary['bytes_hashed'] / 1e9:.2f} GB)"
            " / hashlib on all cores over the same files",
            whole,
            whole_hashlib,
            None,
        ),
        derived_row(
            "D verify --deep of the cache less start-up / hashlib less python start-up (derived)",
            deep.seconds - started.seconds,
            by_hashlib.seconds - bare.seconds,
        ),
        startup_row("verify", started, bare),
        ratio_row(
            f"S shallow verify ({bench.figures['S_tree']['links']:,} links) / find -printf",
            shallow,
            walked,
            1.5,
        ),
    ]


def _count(root: Path) -> dict[str, int]:
    links = files = dirs = 0
    for _folder, subdirs, names in os.walk(root):
        dirs += len(subdirs)
        files += len(names)
        links += names.count("link")
    return {"links": links, "files": files, "dirs": dirs}


def report_markdown(
    sizes: Sizes, info: dict[str, Any], figures: dict[str, Any], rows: list[Row]
) -> str:
    d, r, s = figures["D_cache"], figures["D_root"], figures["S_tree"]
    lines = [
        f"# syncd verify benchmark ({sizes.label}, {time.strftime('%Y-%m-%d %H:%M')})",
        "",
        machine_text(info),
        "",
        f"Medians of {sizes.runs} alternating runs after one warm-up each (range in brackets).",
        "",
        markdown_table(rows),
        "",
        f"- D: {d['root']}: {d['images_ok']} images, {d['blobs_checked']} blobs, "
        f"{d['bytes_hashed']:,} bytes hashed; deep verify {figures['D_GBps']} GB/s including "
        "interpreter start-up.",
        f"- D whole root: {r['root']}: {r['bytes_hashed']:,} bytes hashed (cache and archives).",
        f"- S: {s['root']}: {s['links']:,} link files, {s['files']:,} files, {s['dirs']:,} dirs, "
        f"{s['images_ok']:,} images (tags and untagged revisions listed), {s['blobs_checked']:,} "
        "blobs stat'ed, every manifest read and hashed.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__, runs=None)
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs syncd")
    args = parser.parse_args(argv)
    sizes = sizes_for(args.quick, args.runs)
    runs = sizes.runs
    workdir: Path = args.workdir.resolve()

    tree_d, tree_s = build_trees(workdir, sizes)
    info = machine(workdir)
    if (load := settle(args, log)) is not None:
        info["load_before_measuring"] = load
    # A code copy of its own: scan_bench may be running from workdir/code at the same time.
    code, info["code_digest"] = freeze_code(workdir / "verify-code")
    log(f"syncd runs from a copy of {REPO} in {code} (sources sha256 {info['code_digest']})")
    bench = Bench(workdir, args.python, runs, code)
    rows = measure(bench, tree_d, tree_s)
    info["load_at_end"] = [round(x, 2) for x in os.getloadavg()]

    text = report_markdown(sizes, info, bench.figures, rows)
    print(text)
    data = {
        "sizes": asdict(sizes),
        "machine": info,
        "figures": bench.figures,
        "rows": [row.as_json() for row in rows],
    }
    written = save_results("verify", args, text, data)
    log(f"wrote {written}.md and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
