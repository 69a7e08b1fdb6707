"""Two ways to put a month's images into the cache; both end in the same files.

Direct mode writes blobs and links itself. Registry mode builds the images in skopeo's
`dir:` format and lets skopeo push them into docker-registry serving the cache, which
shows that direct mode writes what a registry writes. distribution 2.8 refuses an index
whose children are missing, so a sparse index is pushed as its present children by
digest, and the index itself and its tag are written into storage afterwards, as
oc-mirror's own registry (which allows sparse indexes) would have stored them.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from syncd.sample.build import Builder, BuiltImage, PushArea, StorageSink
from syncd.sample.plan import ImagePlan
from syncd.sample.registry import REGISTRY_BIN, Registry
from syncd.sample.regstore import Storage, layer_keys
from syncd.sample.skopeo import PushJob, push_all
from syncd.sample.spec import SampleSpec


def tools_present() -> bool:
    return REGISTRY_BIN.is_file() and shutil.which("skopeo") is not None


def fill_direct(
    cache: Path, spec: SampleSpec, month: int, created: str, plans: Sequence[ImagePlan]
) -> list[BuiltImage]:
    storage = Storage.under(cache)
    builder = Builder(spec, month, created, StorageSink(storage), layer_keys(storage))
    built = []
    for plan in plans:
        image = builder.build(plan)
        storage.publish(image.links())
        built.append(image)
    return built


def fill_via_registry(
    cache: Path, spec: SampleSpec, month: int, created: str, plans: Sequence[ImagePlan]
) -> list[BuiltImage]:
    storage = Storage.under(cache)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="syncd-sample-layout-") as scratch:
        area = PushArea(Path(scratch), storage)
        builder = Builder(spec, month, created, area, layer_keys(storage))
        built = [builder.build(plan) for plan in plans]
        jobs = [job for image in built for job in _jobs(area, image)]
        with Registry(cache) as registry:
            push_all(registry, jobs)
    for image in built:
        if image.sparse:
            storage.put_blob(image.top.descriptor.digest, image.top.data)
            storage.link_revision(image.plan.repo, image.top.descriptor.digest)
            storage.link_tag(image.plan.repo, image.plan.tag, image.top.descriptor.digest)
    storage.remove_uploads()
    return built


def _jobs(area: PushArea, image: BuiltImage) -> list[PushJob]:
    repo = image.plan.repo
    if image.sparse:
        return [
            PushJob(
                area.add_image(m.document, [m]), f"{repo}@{m.document.descriptor.digest}", False
            )
            for m in image.manifests
        ]
    folder = area.add_image(image.top, image.manifests)
    return [PushJob(folder, f"{repo}:{image.plan.tag}", image.plan.indexed)]
