"""CI's slice of the power-loss campaign (reliability/powerloss.py): crash states built
from the syncs of a real apply recover to the target; and the model has teeth: an apply
that skips the sync of its phases' changes, or of what it built before renaming it in,
is caught."""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability import powerloss
from reliability.campaign import Context
from syncd.apply import executor

SEED = 20261125


def test_quick_slice(tmp_path: Path) -> None:
    outcome = powerloss.run(Context(SEED, tmp_path, quick=True))
    assert outcome.ok, outcome.failures or outcome.figures


def _no_sync(fd: int) -> None:
    pass


@pytest.mark.parametrize("broken", ["no phase sync", "no sync of built entries"])
def test_a_missing_fsync_is_caught(
    broken: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if broken == "no phase sync":
        monkeypatch.setattr(executor.Executor, "_sync_changed", lambda self: None)
    else:
        monkeypatch.setattr(executor, "_sync_built", _no_sync)
    outcome = powerloss.run(Context(SEED, tmp_path, quick=True))
    assert outcome.failures, f"{broken}: the power-loss model found nothing wrong"
