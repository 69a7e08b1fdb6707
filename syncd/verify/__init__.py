"""`syncd verify`: will oc-mirror's upload from this tree succeed?

A content folder is judged as disk-to-mirror runs on it (`content`: `archives` picks and
extracts as unarchive.go, `derive` derives the images as the collectors do, `registry`
checks each over the archives laid over the cache). The registry logic is pure over a
small storage interface (`store.RegistryStore`); every filesystem read goes beneath the
root's descriptor without following a symlink (`beneath`). `verify_root` is the entry
point for commands, the daemon and `serve`.
"""

from syncd.verify.api import VerifyOptions, verify_root
from syncd.verify.report import VerifyReport

__all__ = ["VerifyOptions", "VerifyReport", "verify_root"]
