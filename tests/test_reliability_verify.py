"""CI's slice of the verify campaign (reliability/verify.py): a seeded handful of kinds of
breakage, each judged by the disk-to-mirror oracle and by verify, which must agree."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability import verify
from reliability.campaign import Context

pytestmark = pytest.mark.needs_registry


def test_quick_slice(tmp_path: Path) -> None:
    outcome = verify.run(Context(20261207, tmp_path, quick=True))
    assert outcome.ok, outcome.failures
    figures = {f.name: f.value for f in outcome.figures}
    assert figures["cases"] == str(verify.QUICK_KINDS)
    assert figures["false OK (--deep)"] == figures["false alarms (--deep)"] == "0"
