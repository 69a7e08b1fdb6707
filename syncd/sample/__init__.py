"""Deterministic oc-mirror-like sample trees: a registry cache and a content folder.

Used by the demo, the tests and the benchmarks. `generate_month(root, 1, spec)` mirrors a
first month into an empty root; each later month adds a new release, operator versions
and a rebuilt catalog and graph image, and rewrites content/ differentially. `Registry`
serves a cache with Debian's docker-registry, and `pull_all` pulls every tag from it with
skopeo: the parity oracle.
"""

from syncd.sample.months import MonthReport, generate_month
from syncd.sample.plan import month_time
from syncd.sample.registry import Registry, list_images
from syncd.sample.skopeo import PullResult, pull_all
from syncd.sample.spec import LARGE, PRESETS, SMALL, TINY, SampleSpec, preset

__all__ = [
    "LARGE",
    "PRESETS",
    "SMALL",
    "TINY",
    "MonthReport",
    "PullResult",
    "Registry",
    "SampleSpec",
    "generate_month",
    "list_images",
    "month_time",
    "preset",
    "pull_all",
]
