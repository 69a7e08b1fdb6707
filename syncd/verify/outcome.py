"""What a check found below one tag or manifest, and the table of problems behind it."""

from __future__ import annotations

from dataclasses import dataclass

from syncd.verify.problems import Problem


@dataclass(frozen=True, slots=True)
class Outcome:
    """Problem keys met below a tag or manifest, and the blobs it reaches."""

    problems: frozenset[str] = frozenset()
    blobs: frozenset[str] = frozenset()

    def __or__(self, other: Outcome) -> Outcome:
        if not other.problems and not other.blobs:
            return self
        if not self.problems and not self.blobs:
            return other
        return Outcome(self.problems | other.problems, self.blobs | other.blobs)


EMPTY = Outcome()


def uses(digest: str) -> Outcome:
    return Outcome(blobs=frozenset({digest}))


class ProblemTable:
    """Problems by key: the first report of a problem is kept, later ones join it."""

    def __init__(self) -> None:
        self.problems: dict[str, Problem] = {}

    def add(self, problem: Problem) -> Outcome:
        self.problems.setdefault(problem.key, problem)
        return Outcome(frozenset({problem.key}))
