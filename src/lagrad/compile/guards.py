"""Finiteness guards: run a sweep, and when its result is not finite, name the
equation where the first non-finite value or derivative appeared.

Only the variables the output depends on (its ancestors) count. A variable the
output does not read has multiplier 0 exactly, but an infinite local derivative
there (``sqrt(0)`` left unused) turns the sweep's 0 * inf into NaN, which then
flows on into the inputs. So when a reverse sweep goes non-finite it is run
again over the ancestors' equations only (:class:`Relevant`, computed once per
schedule and seed); a forward sweep cannot spread a non-finite tangent from a
non-ancestor into an ancestor, so only its check is restricted. The fast path
(every entry finite) does no extra work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.compile.schedule import CyclicBlock, Schedule
from lagrad.errors import NonFiniteError, ProgramError
from lagrad.numeric import all_finite

__all__ = ["guarded", "first_nonfinite", "blame_pullback", "blame_block", "Relevant",
           "relevant"]

Array = NDArray[np.float64]
Sweep = Callable[["Relevant | None"], Array]


@dataclass(frozen=True)
class Relevant:
    """What some seed variables depend on: ``mask`` marks the flat positions of
    their ancestors (themselves included), ``steps`` are the schedule's steps
    restricted to the equations that define those positions, in order."""

    mask: NDArray[np.bool_]
    steps: list[Any]


def relevant(schedule: Schedule, seeds: tuple[int, ...]) -> Relevant:
    """The ancestors of the variables numbered ``seeds`` (cached on the schedule).

    Steps are in level order, so walking them backwards marks every child
    before its parents are read.
    """
    key = ("relevant", seeds)
    found = schedule.extras.get(key)
    if found is None:
        mask = np.zeros(schedule.size, dtype=bool)
        for j in seeds:
            schedule.index.mark(mask, j)
        for step in reversed(schedule.steps):
            step.mark_parents(mask)
        steps = [kept for step in schedule.steps if (kept := step.restrict(mask)) is not None]
        found = schedule.extras[key] = Relevant(mask, steps)
    return found


def _seeded(schedule: Schedule, rhs: Array) -> tuple[int, ...]:
    """The variables where a reverse sweep's right-hand side is not zero."""
    owners = schedule.index.owners(np.flatnonzero(rhs))
    return tuple(int(j) for j in np.unique(owners))


def _output_seed(schedule: Schedule) -> tuple[int, ...] | None:
    """The output variable, whose ancestors a forward sweep is checked on."""
    try:
        return (schedule.program.output_variable.index,)
    except ProgramError:
        return None


def first_nonfinite(schedule: Schedule, vec: Array, what: str,
                    mask: NDArray[np.bool_] | None = None) -> NonFiniteError:
    """Name the equation where a non-finite entry of ``vec`` first appears
    (among the positions set in ``mask``, if given).

    Forward sweeps (values, tangents) write one step's outputs at a time, so the
    first bad step in schedule order is where it appeared.
    """
    index = schedule.index
    ok = np.isfinite(vec) if mask is None else np.isfinite(vec) | ~mask
    for v in schedule.inputs:
        if not ok[index[v]].all():
            return NonFiniteError(f"input {v.name!r} has a non-finite {what}; check the "
                                  "values passed in", v.name)
    program = schedule.program
    for step in schedule.steps:
        for eq in step.equations:
            if not ok[index.slice(eq.out)].all():
                text = program.describe(eq)
                return NonFiniteError(
                    f"the {what} of {program.variables[eq.out].name!r} is not finite, first "
                    f"in equation `{text}`; check its inputs are in the domain of "
                    f"{eq.primitive.name}", text)
    return NonFiniteError(f"a {what} is not finite")


def blame_block(unit: CyclicBlock, z: Array, closing: Array) -> tuple[str, str]:
    """Where one evaluation of a cyclic block's map G(z_U) first went non-finite:
    ``(what happened, equation text)``. ``z`` holds the unknowns and interior
    values of that evaluation, ``closing`` the closing equations' values (at
    the unknowns' positions)."""
    program = unit.unknowns[0].program
    for step in unit.steps:
        for (_, a, b, _), (_, j) in zip(step.vslots, step.eq.slots):
            if j not in unit.members and not np.isfinite(z[a:b]).all():
                name = program.variables[j].name
                return (f"it reads {name!r}, which is not finite before the block is solved; "
                        "check the values that it is computed from", "")
    for step in unit.closing:  # each defines one unknown: z there holds its iterate
        if not np.isfinite(z[step.start:step.stop]).all():
            name = program.variables[step.eq.out].name
            return (f"the method's update made the iterate of {name!r} non-finite; start "
                    "from another init, or check the equations", "")
    for source, steps in ((z, unit.interior), (closing, unit.closing)):
        for step in steps:
            if not np.isfinite(source[step.start:step.stop]).all():
                text = program.describe(step.eq)
                return (f"the value of {program.variables[step.eq.out].name!r} is not finite, "
                        f"first in equation `{text}`; start from an init where the arguments "
                        f"of {step.eq.primitive.name} are in its domain (solve(..., init=...)), "
                        "or check the equation", text)
    return "a value is not finite", ""


def blame_pullback(schedule: Schedule, z: Array, rhs: Array,
                   steps: list[Any] | None = None) -> NonFiniteError:
    """Replay back-substitution step by step (over ``steps``, default all) and
    name the equation whose pullback first made a multiplier non-finite (its
    derivative is not finite at these values, e.g. sqrt at 0)."""
    index, program = schedule.index, schedule.program
    lam = rhs.copy()
    if not np.isfinite(lam).all():
        return NonFiniteError("the output seed (cotangent) is not finite")
    with np.errstate(all="ignore"):
        for step in reversed(schedule.steps if steps is None else steps):
            if isinstance(step, CyclicBlock):
                return NonFiniteError(f"a multiplier became non-finite in {step.block.name} "
                                      "or before it", step.block.name)
            step.pullback(z, lam)
            for eq in step.equations:
                bad = [j for j in eq.parents if not np.isfinite(lam[index.slice(j)]).all()]
                if bad:
                    text = program.describe(eq)
                    return NonFiniteError(
                        f"the multiplier of {program.variables[bad[0]].name!r} is not finite, "
                        f"first produced by equation `{text}`: the derivative of "
                        f"{eq.primitive.name} is not finite at these values", text)
    return NonFiniteError("a multiplier is not finite")


def guarded(sweep: Sweep, schedule: Schedule, what: str, z: Array | None = None,
            rhs: Array | Callable[[], Array] | None = None,
            witnesses: NDArray[np.integer] | None = None) -> Array:
    """Run ``sweep(None)`` without numpy warnings and raise NonFiniteError,
    naming the equation, if its result is not finite where it counts.

    Without ``z`` the sweep is a forward one (tangents): only the output's
    ancestors are checked. With ``z`` and ``rhs`` (the right-hand side, or a
    function giving a fresh copy) it is a reverse one: a non-finite result is
    recomputed by ``sweep(relevant)``, over the seeds' ancestors only, and if
    that is not finite either, replayed to find the culprit.

    ``witnesses``: positions whose values are all finite only when every
    value of the result is (see :attr:`lagrad.compile.bulkplan.BulkPlan.witnesses`),
    read instead of the whole result in the common, finite, case.
    """
    with np.errstate(all="ignore"):
        vec = sweep(None)
    if all_finite(vec if witnesses is None else vec[witnesses]):
        return vec
    if z is None or rhs is None:
        seed = _output_seed(schedule)
        mask = None if seed is None else relevant(schedule, seed).mask
        if mask is not None and all_finite(vec[mask]):
            return vec
        raise first_nonfinite(schedule, vec, what, mask)
    start = rhs() if callable(rhs) else rhs
    if not all_finite(start):
        raise blame_pullback(schedule, z, start)
    keep = relevant(schedule, _seeded(schedule, start))
    with np.errstate(all="ignore"):
        vec = sweep(keep)
    if all_finite(vec):
        return vec
    raise blame_pullback(schedule, z, start, keep.steps)
