"""Satisfy the constraints: dL/dlambda = 0 is the forward pass.

For an acyclic program every block is one variable and the constraints are
satisfied by evaluating the equations in schedule order; a cyclic block is
solved by :func:`lagrad.solve.nonlinear.solve_block`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from lagrad.compile.guards import first_nonfinite
from lagrad.compile.schedule import CyclicBlock, Schedule
from lagrad.numeric import all_finite
from lagrad.options import ForwardOptions
from lagrad.solve.buffers import pool_of
from lagrad.solve.nonlinear import solve_block
from lagrad.solve.results import BlockResult

__all__ = ["evaluate"]

Array = NDArray[np.float64]
NO_OPTIONS = ForwardOptions()


def evaluate(schedule: Schedule, inputs: Sequence[Array], options: ForwardOptions,
             inits: Mapping[int, Array], sources: Mapping[int, int] | None = None
             ) -> tuple[Array, dict[int, BlockResult]]:
    """The flat vector z that satisfies every constraint for these inputs, and
    the result of each cyclic block's solve (by block number).

    Acyclic steps are evaluated; cyclic blocks are solved with ``options``,
    falling back to the options their unknowns were declared with, from
    ``inits`` (by variable index; default zeros), or from the current value of
    variable ``sources[u]`` for an unknown u (computed earlier in the schedule).
    """
    inits = dict(inits) if sources else inits
    z = pool_of(schedule).take()  # every entry is written: inputs, then each equation
    index = schedule.index
    for v, x in zip(schedule.inputs, inputs):
        z[index[v]] = np.ravel(x)
    program = schedule.program
    results: dict[int, BlockResult] = {}
    scratch: Array | None = None  # shared by the cyclic blocks' solves
    with np.errstate(all="ignore"):  # non-finite values are reported below, by equation
        for step in schedule.steps:
            if isinstance(step, CyclicBlock):
                own = NO_OPTIONS
                for u in reversed(step.unknowns):  # the first unknown's options win
                    own = program.block_options.get(u.index, NO_OPTIONS).over(own)
                for u in step.unknowns:
                    if sources and u.index in sources:
                        inits[u.index] = z[index.slice(sources[u.index])].copy()
                if scratch is None:
                    scratch = np.empty_like(z)
                results[step.block.number] = solve_block(step, z, options.over(own), inits,
                                                         scratch)
            else:
                step.run(z)
    if not all_finite(z):
        raise first_nonfinite(schedule, z, "value")
    return z, results
