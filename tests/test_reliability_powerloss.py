"""CI's slice of the power-loss campaign (reliability/powerloss.py): crash states built
from the fsyncs of a real apply recover to the target; and the model has teeth: an apply
that skips its directory fsyncs, or its file fsyncs, is caught."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reliability import powerloss
from reliability.campaign import Context
from syncd.apply import executor

SEED = 20261125


def test_quick_slice(tmp_path: Path) -> None:
    outcome = powerloss.run(Context(SEED, tmp_path, quick=True))
    assert outcome.ok, outcome.failures or outcome.figures


def _close_only(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


@pytest.mark.parametrize("broken", ["no directory fsync", "no file fsync"])
def test_a_missing_fsync_is_caught(
    broken: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if broken == "no directory fsync":
        monkeypatch.setattr(executor.Executor, "_sync_changed", lambda self: self._changed.clear())
    else:
        monkeypatch.setattr(executor, "_sync_and_close", _close_only)
    outcome = powerloss.run(Context(SEED, tmp_path, quick=True))
    assert outcome.failures, f"{broken}: the power-loss model found nothing wrong"
