"""Retry delays for a failing site: exponential, capped, with jitter.

Delay n (n = 1, 2, ...) is drawn uniformly from [b/2, b] where b = min(max, first *
2^(n-1)) ("equal jitter"): it never falls below half the exponential step, so a broken
site is not hammered, and sites that failed together (one outage) spread out instead of
retrying in lockstep.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, first: float, maximum: float, rng: random.Random | None = None) -> None:
        if first <= 0 or maximum < first:
            raise ValueError("need 0 < first <= maximum")
        self.first = first
        self.maximum = maximum
        self.failures = 0
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not cryptography)

    def next_delay(self) -> float:
        """Count one more failure and return how long to wait before the next try."""
        self.failures += 1
        step = min(self.maximum, self.first * 2.0 ** min(self.failures - 1, 62))
        return step / 2 + float(self._rng.uniform(0, step / 2))

    def reset(self) -> None:
        self.failures = 0
