"""Finiteness guards: run a sweep, and when its result is not finite, name the
equation where the first non-finite value or derivative appeared."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from lagrad.compile.schedule import CyclicBlock, Schedule
from lagrad.errors import NonFiniteError
from lagrad.numeric import all_finite

__all__ = ["guarded", "first_nonfinite", "blame_pullback"]

Array = NDArray[np.float64]


def first_nonfinite(schedule: Schedule, vec: Array, what: str) -> NonFiniteError:
    """Name the equation where a non-finite entry of ``vec`` first appears.

    Forward sweeps (values, tangents) write one step's outputs at a time, so the
    first bad step in schedule order is where it appeared.
    """
    index = schedule.index
    for v in schedule.inputs:
        if not np.isfinite(vec[index[v]]).all():
            return NonFiniteError(f"input {v.name!r} has a non-finite {what}; check the "
                                  "values passed in", v.name)
    program = schedule.program
    for step in schedule.steps:
        for eq in step.equations:
            if not np.isfinite(vec[index.slice(eq.out)]).all():
                text = program.describe(eq)
                return NonFiniteError(
                    f"the {what} of {program.variables[eq.out].name!r} is not finite, first "
                    f"in equation `{text}`; check its inputs are in the domain of "
                    f"{eq.primitive.name}", text)
    return NonFiniteError(f"a {what} is not finite")


def blame_pullback(schedule: Schedule, z: Array, rhs: Array) -> NonFiniteError:
    """Replay back-substitution step by step and name the equation whose
    pullback first made a multiplier non-finite (its derivative is not finite
    at these values, e.g. sqrt at 0)."""
    index, program = schedule.index, schedule.program
    lam = rhs.copy()
    if not np.isfinite(lam).all():
        return NonFiniteError("the output seed (cotangent) is not finite")
    with np.errstate(all="ignore"):
        for step in reversed(schedule.steps):
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


def guarded(sweep: Callable[[], Array], schedule: Schedule, what: str,
            z: Array | None = None, rhs: Array | Callable[[], Array] | None = None) -> Array:
    """Run ``sweep`` without numpy warnings and raise NonFiniteError, naming the
    equation, if its result is not finite. With ``z`` and ``rhs`` the sweep is
    a reverse one, replayed to find the culprit."""
    with np.errstate(all="ignore"):
        vec = sweep()
    if not all_finite(vec):
        if z is not None and rhs is not None:
            raise blame_pullback(schedule, z, rhs() if callable(rhs) else rhs)
        raise first_nonfinite(schedule, vec, what)
    return vec



