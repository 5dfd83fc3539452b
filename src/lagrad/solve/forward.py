"""Satisfy the constraints: dL/dlambda = 0 is the forward pass.

For an acyclic program every block is one variable and the constraints are
satisfied by evaluating the equations in schedule order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence  # noqa: F401
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.compile.guards import first_nonfinite
from lagrad.compile.schedule import CyclicBlock, Schedule
from lagrad.numeric import all_finite
from lagrad.solve.buffers import pool_of
from lagrad.solve.nonlinear import BlockDiagnostics, solve_block

__all__ = ["evaluate"]

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






