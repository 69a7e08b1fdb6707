"""Errors of the sample generator and of the external tools it drives."""

from __future__ import annotations

from syncd.errors import SyncdError


class ToolError(SyncdError):
    """docker-registry or skopeo is missing, would not start, or failed; the text says why."""
