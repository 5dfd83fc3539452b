"""Satisfy the constraints: dL/dlambda = 0 is the forward pass.

For an acyclic program every block is one variable and the constraints are
satisfied by evaluating the equations in schedule order; a cyclic block is
solved by :func:`lagrad.solve.nonlinear.solve_block`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from lagrad.compile.bulkplan import bulk_plan
from lagrad.compile.groups import CyclicGroup, grouped_steps
from lagrad.compile.guards import first_nonfinite
from lagrad.compile.schedule import CyclicBlock, Schedule, Single, Step
from lagrad.errors import SolveError
from lagrad.numeric import all_finite
from lagrad.options import ForwardOptions
from lagrad.solve.borrow import Borrowed, borrow, finite_outside
from lagrad.solve.buffers import pool_of, write_flat
from lagrad.solve.groupnewton import GROUP_METHODS, solve_group
from lagrad.solve.nonlinear import solve_block
from lagrad.solve.results import BlockResult

__all__ = ["evaluate"]

Array = NDArray[np.float64]
NO_OPTIONS = ForwardOptions()


def evaluate(schedule: Schedule, inputs: Sequence[Array], options: ForwardOptions,
             inits: Mapping[int, Array], sources: Mapping[int, int] | None = None
             ) -> tuple[Array, dict[int, BlockResult], Borrowed | None]:
    """The flat vector z that satisfies every constraint for these inputs, the
    result of each cyclic block's solve (by block number), and the inputs
    left in the caller's arrays (their slices of z not written yet, see
    :mod:`lagrad.solve.borrow`; None when every input was copied).

    Acyclic steps are evaluated; cyclic blocks are solved with ``options``,
    falling back to the options their unknowns were declared with, from
    ``inits`` (by variable index; default zeros), or from the current value of
    variable ``sources[u]`` for an unknown u (computed earlier in the schedule).
    """
    inits = dict(inits) if sources else inits
    z = pool_of(schedule).take()  # every entry is written: inputs, then each equation
    plan = bulk_plan(schedule)
    if plan is not None:  # a bulk program (acyclic: the options have nothing to do)
        with np.errstate(all="ignore"):
            plan.forward(z, inputs)
        if not all_finite(z):
            raise first_nonfinite(schedule, z, "value")
        return z, {}, None
    index = schedule.index
    borrowed = borrow(schedule, inputs)
    lent = borrowed.arrays if borrowed is not None else {}
    for v, x in zip(schedule.inputs, inputs):
        span = index[v]
        if (span.start, span.stop) not in lent:
            write_flat(z[span], x)
    results: dict[int, BlockResult] = {}
    solver = _Blocks(schedule, options, inits, sources, z, borrowed)
    with np.errstate(all="ignore"):  # non-finite values are reported below, by equation
        for step in grouped_steps(schedule):
            try:
                if isinstance(step, CyclicGroup):
                    solver.group(step, results)
                elif isinstance(step, CyclicBlock):
                    results[step.block.number] = solver.block(step)
                else:
                    step.run(z)
            except SolveError as err:
                if borrowed is not None:
                    borrowed.fill(z)
                located = _locate(err, step, z, schedule)
                if located is None:
                    raise
                raise located from err
    if not finite_outside(z, borrowed, all_finite):
        if borrowed is not None:
            borrowed.fill(z)
        raise first_nonfinite(schedule, z, "value")
    return z, results, borrowed



def _locate(err: SolveError, step: Step, z: Array, schedule: Schedule) -> SolveError | None:
    """``err`` (raised by an equation's value, such as a singular linalg.solve)
    again, naming that equation; None when it already names one or came from a
    block solve as a whole. In a cyclic block the equation is found by running
    its steps again at the block's last iterate (left in z)."""
    if err.equation:
        return None
    culprit = step if isinstance(step, Single) else None
    if isinstance(step, CyclicBlock):
        scratch = np.empty_like(z)
        for inner in step.steps:
            try:
                inner.run(z, scratch if inner in step.closing else None)
            except SolveError:
                culprit = inner
                break
    if culprit is None:
        return None
    text = schedule.program.describe(culprit.eq)
    return type(err)(f"{err} (in equation `{text}`)", text)


class _Blocks:
    """Solves the cyclic blocks of one evaluation, each with its options."""

    def __init__(self, schedule: Schedule, options: ForwardOptions,
                 inits: dict[int, Array], sources: Mapping[int, int] | None, z: Array,
                 borrowed: Borrowed | None = None) -> None:
        self.program, self.index = schedule.program, schedule.index
        self.schedule = schedule
        self.options, self.inits, self.sources, self.z = options, inits, sources, z
        self.borrowed = borrowed
        self.scratch: Array | None = None  # shared by the cyclic blocks' solves

    def _options(self, unit: CyclicBlock) -> ForwardOptions:
        own = NO_OPTIONS
        for u in reversed(unit.unknowns):  # the first unknown's options win
            own = self.program.block_options.get(u.index, NO_OPTIONS).over(own)
        return self.options.over(own)

    def block(self, unit: CyclicBlock) -> BlockResult:
        z, sources = self.z, self.sources
        for u in unit.unknowns:
            if sources and u.index in sources:
                self.inits[u.index] = z[self.index.slice(sources[u.index])].copy()
        if self.scratch is None:  # a recycled vector: no z-sized allocation per solve
            self.scratch = pool_of(self.schedule).take()
        return solve_block(unit, z, self._options(unit), self.inits, self.scratch,
                           self.borrowed)

    def group(self, group: CyclicGroup, results: dict[int, BlockResult]) -> None:
        """Blocks of one structure together (one result, under the first
        block's number), or one by one for a method other than Newton."""
        options = self._options(group.units[0])
        if (options.method or "auto") in GROUP_METHODS:
            results[group.units[0].block.number] = solve_group(group, self.z, options,
                                                               self.inits)
            return
        for step in group.members:
            if isinstance(step, CyclicBlock):
                results[step.block.number] = self.block(step)
            else:
                step.run(self.z)
