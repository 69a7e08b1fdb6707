"""What every campaign takes and gives back: a seeded context in, figures and failures out."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Context:
    """One campaign run: `quick` is CI's short slice, `scale` multiplies the counts."""

    seed: int
    scratch: Path  # a private folder the campaign may fill and leave
    quick: bool = False

    def rng(self, salt: str) -> random.Random:
        """A generator of its own per use, so adding draws in one place moves nothing else."""
        return random.Random(f"{self.seed}:{salt}")


@dataclass(frozen=True, slots=True)
class Figure:
    """One reported number: `target` is the bar it must meet, in words ("0", ">= 50")."""

    name: str
    value: str
    target: str = "report"
    met: bool = True


@dataclass(slots=True)
class Outcome:
    """What a campaign found: its figures, and every failure named (empty when all held)."""

    campaign: str
    figures: list[Figure] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures and all(f.met for f in self.figures)


class Campaign(Protocol):
    """A campaign module, as the runner uses it."""

    def run(self, ctx: Context) -> Outcome: ...
