"""`syncd verify`: will oc-mirror's upload from this tree succeed?

A content folder is judged as disk-to-mirror runs on it (`content`: `archives` picks and
extracts as unarchive.go, `derive` derives the images as the collectors do, `registry`
checks each over the archives laid over the cache). The registry logic is pure over a
small storage interface (`store.RegistryStore`); every filesystem read goes beneath the
root's descriptor without following a symlink (`beneath`). `verify_root` is the entry
point for commands, the daemon and `serve`.

The names below are loaded when first used: `serve` and `push` need only the small
modules beside them (layout, digests, manifest parsing) on every run, and the whole of
verify (YAML, the collectors) only when a gate or a command verifies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from syncd.verify.api import VerifyOptions, verify_root
    from syncd.verify.report import VerifyReport

__all__ = ["VerifyOptions", "VerifyReport", "verify_root"]
_WHERE = {"VerifyOptions": "api", "verify_root": "api", "VerifyReport": "report"}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
