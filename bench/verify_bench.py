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

import argparse
import contextlib
import hashlib
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    DEFAULT_WORKDIR,
    REPO,
    RESULTS,
    Command,
    Row,
    Series,
    alternate,
    cached_tree,
    freeze_code,
    machine,
    markdown_table,
    seconds_text,
    wait_for_quiet,
    write_json,
)
from syncd.sample import LARGE, SMALL, SampleSpec, generate_month

LOAD_THRESHOLD = 0.5
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


@dataclass(frozen=True, slots=True)
class Sizes:
    label: str
    ocmirror: SampleSpec
    ocmirror_name: str
    links: int
    runs: int


FULL = Sizes("full", LARGE, "ocmirror-large-m1", 200_000, 5)
QUICK = Sizes("quick", SMALL, "ocmirror-small-m1", 20_000, 3)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the link tree -----------------------------------------------------------------------

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


class Bench:
    def __init__(self, workdir: Path, python: str, runs: int, code: Path) -> None:
        self.python = python
        self.runs = runs
        self.out = workdir / "verify-out"
        self.out.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, PYTHONPATH=str(code))
        self.figures: dict[str, Any] = {}

    def verify(self, name: str, root: Path, *, deep: bool) -> Command:
        argv = [self.python, "-m", "syncd", "verify", "--json", str(root)]
        return Command(
            name,
            [*argv, "--deep"] if deep else argv,
            env=self.env,
            stdout=self.out / f"{name}.json",
        )

    def verify_result(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads((self.out / f"{name}.json").read_text())
        return result

    def hashlib_all(self, name: str, *tops: Path) -> Command:
        return Command(name, [self.python, "-c", HASHLIB_SCRIPT, *map(str, tops)])

    @staticmethod
    def sha256sum_all(name: str, top: Path) -> Command:
        script = (
            'set -o pipefail; find "$1" -type f -print0 '
            '| xargs -0 -P "$(nproc)" -n 8 sha256sum > /dev/null'
        )
        return Command(name, ["bash", "-c", script, "bench", str(top)])

    def startup(self) -> Command:
        return Command(
            "python -m syncd verify --help",
            [self.python, "-m", "syncd", "verify", "--help"],
            env=self.env,
        )

    def bare_python(self) -> Command:
        return Command("python -c pass", [self.python, "-c", "pass"])

    @staticmethod
    def walk(name: str, top: Path) -> Command:
        return Command(name, ["find", str(top), "-printf", r"%s %T@\n"])

    def pair(self, key: str, a: Command, b: Command) -> tuple[Series, Series]:
        log(f"{key}: {a.name} vs {b.name}, {self.runs} runs each, alternating")
        sa, sb = alternate(a, b, self.runs, log=log)
        self.figures[key] = {
            "syncd": sa.as_json(),
            "baseline": sb.as_json(),
            "ratio": round(sa.seconds / sb.seconds, 4),
        }
        log(f"{key}: {sa.seconds:.3f} s / {sb.seconds:.3f} s = {sa.seconds / sb.seconds:.2f}")
        return sa, sb


def ratio_row(figure: str, a: Series, b: Series, target: float | None) -> Row:
    ratio = a.seconds / b.seconds
    return Row(
        figure=figure,
        syncd=seconds_text(a),
        baseline=seconds_text(b),
        ratio=ratio,
        ratio_text=f"{ratio:.2f}",
        target="report" if target is None else f"<= {target:g}",
        met=None if target is None else ratio <= target,
    )


def derived_row(figure: str, syncd: float, baseline: float) -> Row:
    """A ratio of medians after subtracting other medians: approximate, reported only."""
    ratio = syncd / baseline
    return Row(figure, f"{syncd:.3f} s", f"{baseline:.3f} s", ratio, f"{ratio:.2f}", "report", None)


def build_trees(workdir: Path, sizes: Sizes) -> tuple[Path, Path]:
    spec = sizes.ocmirror
    tree_d = cached_tree(
        workdir,
        sizes.ocmirror_name,  # scan_bench's tree: same name, same parameters
        {"generator": "syncd.sample.generate_month", "month": 1, "spec": asdict(spec)},
        lambda root: _month_one(root, spec),
        log=log,
    )
    tree_s = cached_tree(
        workdir,
        f"verify-links-{sizes.links}",
        {"generator": "bench.verify_bench.build_link_tree", "version": 1, "links": sizes.links},
        lambda root: log(json.dumps(build_link_tree(root, sizes.links))),
        log=log,
    )
    return tree_d, tree_s


def _month_one(root: Path, spec: SampleSpec) -> None:
    generate_month(root, 1, spec, via_registry=False)


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
        bench.walk("S: find -printf", tree_s),
    )
    s_summary = _checked(bench, "S-shallow")
    log("start-up: `python -m syncd verify --help` vs `python -c pass`")
    started, bare = alternate(bench.startup(), bench.bare_python(), bench.runs, log=log)
    bench.figures["startup"] = {"syncd": started.as_json(), "python": bare.as_json()}
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
        Row(
            figure="syncd start-up: python -m syncd verify --help (python -c pass)",
            syncd=seconds_text(started),
            baseline=seconds_text(bare),
            ratio=started.seconds - bare.seconds,
            ratio_text=f"+{(started.seconds - bare.seconds) * 1000:.0f} ms",
            target="report",
            met=None,
        ),
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
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['ram_bytes'] / 2**30:.1f} GiB RAM, "
        f"kernel {info['kernel']}, {info['fs_type']} at the work folder; Python "
        f"{info['python']}; load average {info['load_at_start']} at start, "
        f"{info.get('load_before_measuring', '?')} when measuring began, {info['load_at_end']} "
        f"at end; syncd sources sha256 {info['code_digest']}.",
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small trees: checks the harness")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"where trees are generated and kept (default {DEFAULT_WORKDIR})",
    )
    parser.add_argument("--runs", type=int, help="timed runs of each command (at least 3)")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs syncd")
    parser.add_argument(
        "--no-wait", action="store_true", help="do not wait for the load average to drop below 0.5"
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    runs = max(3, args.runs or sizes.runs)
    sizes = Sizes(sizes.label, sizes.ocmirror, sizes.ocmirror_name, sizes.links, runs)
    workdir: Path = args.workdir.resolve()

    tree_d, tree_s = build_trees(workdir, sizes)
    info = machine(workdir)
    if not (args.quick or args.no_wait):
        info["load_before_measuring"] = round(wait_for_quiet(LOAD_THRESHOLD, 900, log), 2)
    # A code copy of its own: scan_bench may be running from workdir/code at the same time.
    code, info["code_digest"] = freeze_code(workdir / "verify-code")
    log(f"syncd runs from a copy of {REPO} in {code} (sources sha256 {info['code_digest']})")
    bench = Bench(workdir, args.python, runs, code)
    rows = measure(bench, tree_d, tree_s)
    info["load_at_end"] = [round(x, 2) for x in os.getloadavg()]

    text = report_markdown(sizes, info, bench.figures, rows)
    print(text)
    stem = f"verify-{time.strftime('%Y-%m-%d')}" + ("-quick" if args.quick else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.md").write_text(text)
    data = {
        "sizes": asdict(sizes),
        "machine": info,
        "figures": bench.figures,
        "rows": [row.as_json() for row in rows],
    }
    write_json(RESULTS / f"{stem}.json", data)
    with contextlib.suppress(OSError):
        log(f"wrote {RESULTS / (stem + '.md')} and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
