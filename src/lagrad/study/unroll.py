"""The unrolled baseline: a cyclic program with each cyclic block replaced by
K iterations of its map, as an acyclic program.

Backpropagating through the unrolled program is what "differentiate through the
solver" does; its gradient approaches the implicit one with error shrinking like
||dG/dz||^K, while the number of stored variables grows like K (docs/cyclic.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lagrad.compile.compiler import compile_program
from lagrad.compile.schedule import CyclicBlock
from lagrad.errors import OptionError
from lagrad.ir.program import Equation, Program, Variable, bind, require_program

__all__ = ["unroll", "UnrolledRow", "compare_unrolled"]


def unroll(program: Program, iterations: int) -> Program:
    """An acyclic program running each cyclic block's map ``iterations`` times.

    Each block starts from its unknowns' ``init`` (default 0) and applies
    z_U <- G(z_U) (for a root constraint g = 0 that is z <- z - g(z)); the
    rest of the program is copied. Inputs keep their names and order.

    Examples
    --------
    >>> import lagrad
    >>> p = lagrad.Program()
    >>> a = p.input("a")
    >>> z = p.unknown("z")
    >>> p.define(z, 0.5 * z + a)
    >>> p.output(z)
    >>> [float(lagrad.unroll(p, k).solve(1.0).output) for k in (1, 2, 3)]
    [1.0, 1.5, 1.75]
    """
    require_program(program, "unroll")
    if int(iterations) < 0:
        raise OptionError(f"iterations must be >= 0, got {iterations}")
    schedule = compile_program(program)
    new = Program(f"{program.name}-unrolled-{iterations}")
    values: dict[int, Any] = {v.index: new.input(v.name, v.shape) for v in program.inputs}
    for step in schedule.steps:
        if isinstance(step, CyclicBlock):
            _unroll_block(program, new, step, int(iterations), values)
        else:
            for eq in step.equations:
                values[eq.out] = _emit(new, eq, values)
    new.output(values[program.output_variable.index])
    return new


def _emit(new: Program, eq: Equation, values: dict[int, Any]) -> Any:
    args = tuple(values[a] if isinstance(a, int) else a for a in eq.args)
    return bind(eq.primitive, args, eq.params, program=new)


def _unroll_block(program: Program, new: Program, unit: CyclicBlock, k: int,
                  values: dict[int, Any]) -> None:
    for v in unit.unknowns:
        values[v.index] = program.inits.get(v.index, np.zeros(v.shape))
    for _ in range(k):
        for step in unit.interior:
            values[step.eq.out] = _emit(new, step.eq, values)
        updates = {step.eq.out: _emit(new, step.eq, values) for step in unit.closing}
        values.update(updates)
    for step in unit.interior:  # downstream reads the interior at the final iterate
        values[step.eq.out] = _emit(new, step.eq, values)


@dataclass(frozen=True)
class UnrolledRow:
    """One line of the unrolled-vs-implicit table."""

    iterations: int
    error: float  # max relative error of the unrolled gradient against the implicit one
    variables: int  # variables the unrolled program stores
    entries: int  # their total number of float64 entries


def compare_unrolled(program: Program, inputs: Sequence[Any], ks: Sequence[int],
                     reference: Sequence[Any] | None = None) -> list[UnrolledRow]:
    """Gradient error and storage of the K-step unrolled program, for each K.

    ``reference`` is the gradient to compare with (default: the implicit
    gradient of ``program`` at ``inputs``), one array per input.
    """
    require_program(program, "compare_unrolled")
    if reference is None:
        g = program.solve(*inputs).grad()
        reference = g if isinstance(g, tuple) else (g,)
    rows = []
    for k in ks:
        unrolled = unroll(program, k)
        g = unrolled.solve(*inputs).grad()
        got = g if isinstance(g, tuple) else (g,)
        err = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                  / max(float(np.max(np.abs(np.asarray(b)))), 1e-300)
                  for a, b in zip(got, reference))
        stored = [v for v in unrolled.variables if isinstance(v, Variable)]
        rows.append(UnrolledRow(k, err, len(stored), sum(v.size for v in stored)))
    return rows
