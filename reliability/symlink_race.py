"""Symlinks in the far tree: one planted before a push, and one swapped in during an apply.

The race uses the real apply engine with ApplyHooks: the far tree is at month 1 with
everything month 2 needs staged; right before apply step k (step 1 is the moment between
staging/planning and the first write), the directory the step writes into is replaced by
a symlink to a copy of itself outside the root. Were any write to follow the link, the
copy outside would change; the campaign checks it does not.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from protocol.messages import Result
from reliability import hostile_cases as hc
from reliability.campaign import Context
from reliability.serve_driver import Script, converse
from syncd.apply import ApplyHooks, Staging, apply_target
from syncd.apply.errors import ApplyError
from syncd.state import StateDir
from tests.test_apply_support import Source, copy_tree, make_source, records_of, stage_transfer

QUICK_STEPS = 4


@dataclass(frozen=True, slots=True)
class Months:
    month2: Source
    base: Path  # month 1, with month 2 staged
    steps: list[str]  # what each apply step does, step 1 first


_months: list[Months] = []  # set once by prepare(); a list so no `global` is needed


def prepare(folder: Path) -> None:
    month1 = make_source(folder / "month1", 1)
    copy_tree(month1.root, folder / "month2")
    month2 = make_source(folder / "month2", 2, first=2)
    base = folder / "base"
    copy_tree(month1.root, base)
    stage_transfer(month2, base).close()
    counted = folder / "count"
    copy_tree(base, counted, with_state=True)
    seen: list[str] = []
    apply(counted, month2, ApplyHooks(lambda step, what: seen.append(what)))
    shutil.rmtree(counted)
    _months[:] = [Months(month2, base, seen)]


def months() -> Months:
    assert _months, "symlink_race.prepare() first"
    return _months[0]


def apply(far: Path, month2: Source, hooks: ApplyHooks) -> None:
    state = StateDir(far)
    with Staging.open(state) as staging, records_of(month2) as snapshot:
        apply_target(far, state, month2.id, snapshot.record, staging, delete=True, hooks=hooks)


def race_steps(ctx: Context) -> list[int]:
    count = len(months().steps)
    if not ctx.quick:
        return list(range(1, count + 1))
    return [1, *sorted(ctx.rng("race").sample(range(2, count + 1), QUICK_STEPS - 1))]


# -- the race ------------------------------------------------------------------------------


class Race:
    """Swap `victim` (a directory of the far tree) for a symlink right before step `step`."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.what = months().steps[step - 1]
        self.victim = victim_of(self.what, months().base)

    def describe(self) -> str:
        return f"{self.victim} swapped for a symlink before step {self.step} ({self.what})"

    def setup(self, far: Path, outside: Path) -> None:
        shutil.rmtree(far)
        copy_tree(months().base, far, with_state=True)
        shutil.copytree(far / self.victim, outside / "victim", symlinks=True)

    def run(self, far: Path, outside: Path) -> str:
        def swap(step: int, what: str) -> None:
            if step == self.step:
                shutil.rmtree(far / self.victim)
                (far / self.victim).symlink_to(outside / "victim")

        try:
            apply(far, months().month2, ApplyHooks(swap))
        except ApplyError as exc:  # refused: it must say why
            return "" if "symlink" in str(exc) else f"refused without naming the symlink: {exc}"
        if (far / self.victim).is_symlink():
            return "the apply finished with a symlink where the target has a directory"
        return ""


def victim_of(what: str, base: Path) -> str:
    """The nearest directory above the path a step names that exists before the apply."""
    path = Path(what.rsplit(" ", 1)[-1]).parent
    while path != Path() and not (base / path).is_dir():
        path = path.parent
    assert path != Path(), f"no directory to swap for {what!r}"
    return str(path)


# -- a symlink planted before a push -------------------------------------------------------


class PlantedLink:
    """`keep/` of the far tree is a symlink to a folder outside; the push wants `keep/` to
    be a directory holding `file` and `new`. Nothing may be written through the link."""

    def setup(self, far: Path, outside: Path) -> None:
        shutil.move(far / "keep", outside / "keep")
        (far / "keep").symlink_to(outside / "keep")

    def run(self, far: Path, outside: Path) -> str:
        inner, inner_record = hc.record(hc.file_item("file"), hc.file_item("new"))
        root, root_record = hc.record(hc.dir_item("keep", inner))
        script = Script(root, {root: root_record, inner: inner_record}, {hc.PIECE: hc.DATA})
        reply = converse(far, script)
        if "Traceback" in reply.stderr:
            return f"traceback: {reply.stderr[-400:]}"
        if reply.error is not None:
            return "" if reply.exit_code != 0 else "refused, but exited 0"
        if not any(isinstance(e, Result) for e in reply.events):
            return f"neither ERROR nor RESULT: {reply.events[:4]}"
        if (far / "keep").is_symlink() or not (far / "keep" / "new").is_file():
            return "applied, but keep/ is not the directory the source has"
        return ""


planted_link = PlantedLink()
