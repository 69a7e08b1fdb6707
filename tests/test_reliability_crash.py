"""CI's slice of the crash campaign (reliability/crash.py): kill -9 of the far side of a
real push and of `syncd import` at seeded points, each followed by the consistency checks,
a docker-registry + skopeo pull on some, and a rerun that must reach the source."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability import crash
from reliability.campaign import Context
from syncd import faults

SEED = 20261125


@pytest.mark.needs_registry
def test_quick_slice(tmp_path: Path) -> None:
    outcome = crash.run(Context(SEED, tmp_path, quick=True))
    assert outcome.ok, outcome.failures or outcome.figures


@pytest.mark.parametrize("spec", ["step", "step:0", "step:x", "nowhere:3", ":1"])
def test_a_malformed_fault_is_refused(spec: str) -> None:
    """A typo must not silently disarm the fault (the campaign would then test nothing)."""
    with pytest.raises(SystemExit, match=faults.ENV):
        faults._parse(spec)


def test_an_unset_fault_is_inert() -> None:
    assert faults._parse(None) is None and faults._parse("") is None
    faults.reached("step")  # this process was started without SYNCD_FAULT: no kill
