"""CI's slice of the parity campaign (reliability/parity.py): one set of 3 data and 2
parity volumes, absent and damaged volumes within and beyond repair, the model and the
import agreeing, and the registry oracle pulling every tag of a repaired import."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability import parity
from reliability.campaign import Context


@pytest.mark.needs_registry
def test_quick_slice(tmp_path: Path) -> None:
    outcome = parity.run(Context(20261207, tmp_path, quick=True))
    assert outcome.ok, outcome.failures
    figures = {f.name: f.value for f in outcome.figures}
    assert int(figures["trials repairable, imported byte-exact"]) >= 6
    assert int(figures["trials beyond repair, nothing applied, loss named"]) >= 1
    assert figures["sets pulled by the registry oracle"] == "1"
