"""`syncd verify`: will oc-mirror's upload from this tree succeed?

The registry logic is pure over a small storage interface (`store.RegistryStore`), with
a filesystem implementation for registry trees and one over a content folder's archive
members layered over the cache. `verify_root` is the entry point for commands, the
daemon and `serve`.
"""

from syncd.verify.api import VerifyOptions, verify_root
from syncd.verify.report import VerifyReport

__all__ = ["VerifyOptions", "VerifyReport", "verify_root"]
