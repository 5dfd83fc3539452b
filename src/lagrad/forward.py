"""Satisfy the constraints: dL/dlambda = 0 is the forward pass.

For an acyclic program every block is one variable and the constraints are
satisfied by evaluating the equations in schedule order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import NonFiniteError
from .nonlinear import BlockDiagnostics, solve_block
from .schedule import CyclicBlock, Schedule, Step

__all__ = ["evaluate", "first_nonfinite"]

Array = NDArray[np.float64]


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
    z = np.zeros(schedule.size)
    index = schedule.index
    for v, x in zip(schedule.inputs, inputs):
        z[index[v]] = np.ravel(x)
    program = schedule.program
    inits = dict(program.inits)
    for key, value in (options.pop("init", None) or {}).items():
        v = program.variable(key)
        inits[v.index] = np.asarray(value, dtype=float).reshape(v.shape)
    diagnostics: dict[int, BlockDiagnostics] = {}
    with np.errstate(all="ignore"):  # non-finite values are reported below, by equation
        for step in schedule.steps:
            if isinstance(step, CyclicBlock):
                own: dict[str, Any] = {}
                for u in reversed(step.unknowns):  # the first unknown's options win
                    own.update(program.block_options.get(u.index, {}))
                merged = {k: options.get(k) or own.get(k) for k in ("method", "tol", "maxiter")}
                diagnostics[step.block.number] = solve_block(step, z, merged, inits)
            else:
                step.run(z)
    if not np.isfinite(z).all():
        raise first_nonfinite(schedule, z, "value")
    return z, diagnostics


def first_nonfinite(schedule: Schedule, vec: Array, what: str,
                    reverse: bool = False) -> NonFiniteError:
    """Name the equation where a non-finite entry of ``vec`` first appears.

    Forward sweeps write one step's outputs at a time, so the first bad step in
    schedule order (or reverse order, for multipliers) is where it appeared.
    """
    index = schedule.index
    bad_inputs = [v for v in schedule.inputs if not np.isfinite(vec[index[v]]).all()]
    if bad_inputs and not reverse:
        return NonFiniteError(f"input {bad_inputs[0].name!r} has a non-finite {what}; "
                              "check the values passed in", bad_inputs[0].name)
    steps: Sequence[Step] = schedule.steps[::-1] if reverse else schedule.steps
    program = schedule.program
    for step in steps:
        for eq in step.equations:
            if not np.isfinite(vec[index.slice(eq.out)]).all():
                text = program.describe(eq)
                return NonFiniteError(
                    f"the {what} of {program.variables[eq.out].name!r} is not finite, first "
                    f"in equation `{text}`; check its inputs are in the domain of "
                    f"{eq.primitive.name}", text)
    if bad_inputs:
        return NonFiniteError(f"the {what} of input {bad_inputs[0].name!r} is not finite",
                              bad_inputs[0].name)
    return NonFiniteError(f"a {what} is not finite")


def guarded(sweep: Callable[[], Array], schedule: Schedule, what: str,
            reverse: bool) -> Array:
    """Run ``sweep`` without numpy warnings and raise if its result is not finite."""
    with np.errstate(all="ignore"):
        vec = sweep()
    if not np.isfinite(vec).all():
        raise first_nonfinite(schedule, vec, what, reverse)
    return vec
