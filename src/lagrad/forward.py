"""Satisfy the constraints: dL/dlambda = 0 is the forward pass.

For an acyclic program every block is one variable and the constraints are
satisfied by evaluating the equations in schedule order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence  # noqa: F401
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .buffers import pool_of
from .errors import NonFiniteError
from .nonlinear import BlockDiagnostics, solve_block
from .schedule import CyclicBlock, Schedule

__all__ = ["evaluate", "first_nonfinite"]

Array = NDArray[np.float64]


def all_finite(vec: Array) -> bool:
    """True when every entry is finite: one reduction, no boolean temporary
    (a sum is non-finite when an entry is; an overflowing sum of finite
    entries is re-checked entrywise)."""
    with np.errstate(all="ignore"):
        total = np.add.reduce(vec, axis=None)
    return bool(np.isfinite(total)) or bool(np.isfinite(vec).all())


def evaluate(schedule: Schedule, inputs: Sequence[Array],
             options: Mapping[str, Any] | None = None
             ) -> tuple[Array, dict[int, BlockDiagnostics]]:
    """The flat vector z that satisfies every constraint for these inputs, and
    the diagnostics of each cyclic block's solve (by block number).

    Acyclic steps are evaluated; cyclic blocks are solved with the options
    given here (method, tol, maxiter, init), falling back to the options the
    block's unknowns were declared with.
    """
    options = dict(options or {})
    z = pool_of(schedule).take()  # every entry is written: inputs, then each equation
    index = schedule.index
    for v, x in zip(schedule.inputs, inputs):
        z[index[v]] = np.ravel(x)
    program = schedule.program
    inits = dict(program.inits)
    for key, value in (options.pop("init", None) or {}).items():
        v = program.variable(key)
        inits[v.index] = np.asarray(value, dtype=float).reshape(v.shape)
    diagnostics: dict[int, BlockDiagnostics] = {}
    scratch: Array | None = None  # shared by the cyclic blocks' solves
    with np.errstate(all="ignore"):  # non-finite values are reported below, by equation
        for step in schedule.steps:
            if isinstance(step, CyclicBlock):
                own: dict[str, Any] = {}
                for u in reversed(step.unknowns):  # the first unknown's options win
                    own.update(program.block_options.get(u.index, {}))
                merged = {k: options.get(k) or own.get(k) for k in ("method", "tol", "maxiter")}
                if scratch is None:
                    scratch = np.empty_like(z)
                diagnostics[step.block.number] = solve_block(step, z, merged, inits, scratch)
            else:
                step.run(z)
    if not all_finite(z):
        raise first_nonfinite(schedule, z, "value")
    return z, diagnostics


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
