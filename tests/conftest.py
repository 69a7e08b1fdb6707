"""Shared fixtures: a small sample spec, and docker-registry instances stopped at teardown.

Tests that need docker-registry or skopeo fail (they do not skip) when either is missing:
the test command installs both.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from syncd.sample import TINY, Registry, SampleSpec, generate_month
from syncd.scan.api import scan_root
from syncd.state import StateDir

RegistryFactory = Callable[..., Registry]


@pytest.fixture
def tiny_spec() -> SampleSpec:
    return TINY


@pytest.fixture
def registry_factory() -> Iterator[RegistryFactory]:
    """`start(storage_root, read_only=False)` serves the folder that holds `docker/`."""
    started: list[Registry] = []

    def start(storage_root: Path, *, read_only: bool = False) -> Registry:
        registry = Registry(storage_root, read_only=read_only)
        started.append(registry)
        registry.start()
        return registry

    yield start
    for registry in started:
        registry.stop()


@pytest.fixture(scope="session")
def tiny_months(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Month 1 and month 2 of the TINY sample, generated once per test session; copy
    them before changing anything."""
    base = tmp_path_factory.mktemp("tiny-months")
    one, two = base / "one", base / "two"
    generate_month(one, 1, TINY, via_registry=False)
    shutil.copytree(one, two, symlinks=True)
    generate_month(two, 2, TINY, via_registry=False)
    return {1: one, 2: two}


@pytest.fixture
def far(tmp_path: Path) -> Path:
    """A far root holding `keep/file`, for tests of what a far side refuses or writes."""
    root = tmp_path / "far"
    (root / "keep").mkdir(parents=True)
    (root / "keep" / "file").write_bytes(b"existing")
    scan_root(root, StateDir(root))  # a root syncd knows: serve and import refuse strangers'
    return root


# OpenSSH server fixtures for the transport tests (started only when a test asks).
from tests.sshd import sshd, sshd_server  # noqa: E402, F401
