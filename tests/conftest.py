"""Shared fixtures: a small sample spec, and docker-registry instances stopped at teardown.

Tests that need docker-registry or skopeo fail (they do not skip) when either is missing:
the test command installs both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from syncd.sample import TINY, Registry, SampleSpec

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


# OpenSSH server fixtures for the transport tests (started only when a test asks).
from tests.sshd import sshd, sshd_server  # noqa: E402, F401
