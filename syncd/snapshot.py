"""Snapshot files: every tree record of one scan, looked up by tree id.

The snapshot id is the root tree id. Records are verified against their id when read,
so a corrupt or tampered snapshot file fails loudly instead of describing another tree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from protocol.errors import ProtocolError
from protocol.limits import CHUNK_SIZE, DIGEST_SIZE
from protocol.paths import join
from protocol.tree import DirNode, Node, decode_tree, tree_id
from syncd.errors import SnapshotFileError
from syncd.store.recordfile import RecordFileReader, RecordFileWriter

MAGIC = b"SYNCDSNP"
FORMAT = 2


@dataclass(frozen=True, slots=True)
class Summary:
    root: bytes
    files: int
    dirs: int
    symlinks: int
    bytes: int
    complete: bool  # False when the scan left entries out (see its problems)

    @property
    def id_hex(self) -> str:
        return self.root.hex()

    def as_meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "chunk": CHUNK_SIZE,
            "root": self.root,
            "files": self.files,
            "dirs": self.dirs,
            "symlinks": self.symlinks,
            "bytes": self.bytes,
            "complete": self.complete,
        }


class SnapshotWriter:
    def __init__(self, stream: BinaryIO) -> None:
        self._file = RecordFileWriter(stream, MAGIC)

    def add_tree(self, record: bytes) -> bytes:
        """Store one encoded tree record and return its id."""
        key = tree_id(record)
        self._file.add(key, record)
        return key

    def add_known(self, key: bytes, record: bytes) -> None:
        """Store a record whose id is already known (copied from an earlier snapshot;
        readers verify it against the id all the same)."""
        self._file.add(key, record)

    def finish(self, summary: Summary) -> None:
        self._file.finish(summary.as_meta())


class SnapshotReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = RecordFileReader(path, MAGIC)
        try:
            self.summary = _summary(self._file.meta, path)
        except SnapshotFileError:
            self._file.close()
            raise

    @property
    def root(self) -> bytes:
        return self.summary.root

    def record(self, key: bytes) -> bytes | None:
        """The encoded tree record with id `key`, verified, or None if absent."""
        for record in self._file.candidates(key):
            if tree_id(record) == key:
                return record
        return None

    def tree(self, key: bytes) -> list[Node]:
        record = self.record(key)
        if record is None:
            raise SnapshotFileError(f"{self.path}: tree {key.hex()} is missing or corrupt")
        try:
            return decode_tree(record)
        except ProtocolError as exc:
            raise SnapshotFileError(f"{self.path}: tree {key.hex()}: {exc}") from exc

    def walk(self, start: bytes | None = None, prefix: str = "") -> Iterator[tuple[str, Node]]:
        """Every entry below a tree, depth-first, children in name order."""
        stack: list[Iterator[Node]] = [iter(self.tree(start or self.root))]
        parents = [prefix]
        while stack:
            node = next(stack[-1], None)
            if node is None:
                stack.pop()
                parents.pop()
                continue
            path = join(parents[-1], node.name)
            yield path, node
            if isinstance(node, DirNode):
                stack.append(iter(self.tree(node.tree)))
                parents.append(path)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SnapshotReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _summary(meta: dict[str, Any], path: Path) -> Summary:
    try:
        if meta["format"] != FORMAT or meta["chunk"] != CHUNK_SIZE:
            raise SnapshotFileError(f"{path}: snapshot format or piece size not supported")
        root = meta["root"]
        if not isinstance(root, bytes) or len(root) != DIGEST_SIZE:
            raise SnapshotFileError(f"{path}: corrupt snapshot summary")
        return Summary(
            root,
            int(meta["files"]),
            int(meta["dirs"]),
            int(meta["symlinks"]),
            int(meta["bytes"]),
            bool(meta["complete"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotFileError(f"{path}: corrupt snapshot summary") from exc
