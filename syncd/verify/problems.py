"""What verify finds: one `Problem` per thing missing or corrupt, named by path and digest.

A problem is identified by its code, path and digest, so a blob missing under several
images is one problem that breaks all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"  # the upload (or a pull) fails
    WARNING = "warning"  # allowed, but worth knowing
    INFO = "info"  # what the upload will not touch: never a failure


class Code(StrEnum):
    # registry storage
    TREE_UNREADABLE = "tree-unreadable"
    TAG_LINK_MISSING = "tag-link-missing"
    LINK_UNREADABLE = "link-unreadable"
    LINK_GARBAGE = "link-garbage"
    LINK_MISMATCH = "link-mismatch"
    REVISION_NAME = "revision-name"
    MANIFEST_NOT_LINKED = "manifest-not-linked"
    MANIFEST_TOO_LARGE = "manifest-too-large"
    MANIFEST_INVALID = "manifest-invalid"
    MEDIA_TYPE_UNKNOWN = "media-type-unknown"
    INDEX_LOOP = "index-loop"
    INDEX_TOO_DEEP = "index-too-deep"
    CHILD_MISSING = "child-missing"
    CHILD_SPARSE = "child-absent-sparse"
    CHILD_UNLINKED = "child-unlinked"
    INDEX_NOTHING_PRESENT = "index-nothing-present"
    BLOB_MISSING = "blob-missing"
    BLOB_UNREADABLE = "blob-unreadable"
    BLOB_NOT_LINKED = "blob-not-linked"
    FOREIGN_LAYER = "foreign-layer"
    SIZE_MISMATCH = "size-mismatch"
    DIGEST_MISMATCH = "digest-mismatch"
    # content folders
    NO_ARCHIVES = "no-archives"
    ARCHIVE_GAP = "archive-set-gap"
    ARCHIVE_NAME = "archive-name-ignored"
    ARCHIVE_UNREADABLE = "archive-unreadable"
    ARCHIVE_CORRUPT = "archive-corrupt"
    ARCHIVE_NO_END = "archive-no-end"
    MEMBER_UNSAFE = "member-unsafe"
    NO_REPOSITORIES = "no-repositories"
    ISC_MISSING = "isc-missing"
    ISC_FALLBACK = "isc-from-archive"
    ISC_INVALID = "isc-invalid"
    COLLECTION_FAILED = "collection-failed"
    MODEL_APPROXIMATE = "model-approximate"
    TAG_OVERWRITTEN = "tag-overwritten"
    NOT_UPLOADED = "not-uploaded"
    BLOCKED = "blocked-image"
    # --against
    TREE_DIFFERS = "tree-differs"


@dataclass(frozen=True, slots=True)
class Problem:
    code: Code
    severity: Severity
    message: str  # a whole sentence naming the path and the digest
    path: str = ""
    digest: str = ""

    @property
    def key(self) -> str:
        return f"{self.code}|{self.path}|{self.digest}"

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "severity": self.severity.value,
            "code": self.code.value,
            "message": self.message,
        }
        if self.path:
            out["path"] = self.path
        if self.digest:
            out["digest"] = self.digest
        return out


def error(code: Code, message: str, path: str = "", digest: str = "") -> Problem:
    return Problem(code, Severity.ERROR, message, path, digest)


def warning(code: Code, message: str, path: str = "", digest: str = "") -> Problem:
    return Problem(code, Severity.WARNING, message, path, digest)


def info(code: Code, message: str, path: str = "") -> Problem:
    return Problem(code, Severity.INFO, message, path)
