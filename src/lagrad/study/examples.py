"""``lagrad study NAME``: what the solvers do on one example, as text."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lagrad.errors import LagradError
from lagrad.examples.base import Example
from lagrad.study.unroll import compare_unrolled

__all__ = ["study", "UNROLL_KS"]

UNROLL_KS = (1, 3, 10, 30, 100)


def study(example: Example, ks: Sequence[int] = UNROLL_KS,
          write: Callable[[str], Any] = print) -> dict[str, Any]:
    """Print the block structure, forward convergence, adjoint diagnostics,
    gradient error and the unrolled-vs-implicit table of ``example``.

    Returns the figures printed, as a dict (``gradient_error``, ``unrolled``...).
    """
    program = example.program
    write(f"== {example.name}: {example.description}")
    blocks = program.blocks
    cyclic = [b for b in blocks if b.cyclic]
    write(f"\nProgram: {len(program.variables)} variables, {len(program.equations)} equations, "
          f"{len(blocks)} blocks, {len(cyclic)} cyclic")
    for b in cyclic:
        write(f"  {b.name}: {len(b.variables)} variables, {b.size} entries, unknowns "
              f"{[v.name for v in b.unknowns]}")
    sol = example.solve()
    write("\nForward solve of each cyclic block:")
    for d in sol.diagnostics.values():
        history = ", ".join(f"{r:.1e}" for r in _ends(d.residuals))
        why = f" ({d.reason})" if d.reason else ""
        write(f"  {d.block}: {d.method}{why}, {d.iterations} iterations, "
              f"{d.seconds * 1e3:.2f} ms, residuals {history}")
    error = example.gradient_error(sol)
    write("\nAdjoint solve (I - J)^T lambda = e_n, method 'auto':")
    for info in sol.adjoint_diagnostics:
        write(f"  {info.block}: {info.method} ({info.reason}), {info.iterations} iterations, "
              f"relative residual {info.residual:.1e}, {info.seconds * 1e3:.2f} ms, "
              f"factorization reused: {'yes' if info.reused_factorization else 'no'}")
    write(f"\nGradient error against the reference: {error:.2e} (max relative)")
    write("\nUnrolled K iterations and backpropagated, against the implicit gradient:")
    write(f"  {'K':>5} {'error':>10} {'variables':>10} {'entries':>10}")
    rows = _unrolled(example, ks, write)
    for r in rows:
        write(f"  {r.iterations:>5} {r.error:10.2e} {r.variables:>10} {r.entries:>10}")
    write(f"  implicit: {len(program.variables)} variables, "
          f"{sum(v.size for v in program.variables)} entries, no iterations stored")
    return {"gradient_error": error, "unrolled": rows, "diagnostics": sol.diagnostics,
            "adjoint": sol.adjoint_diagnostics}


def _ends(values: Sequence[float], k: int = 3) -> list[float]:
    return list(values) if len(values) <= 2 * k else [*values[:k], *values[-k:]]


def _unrolled(example: Example, ks: Sequence[int], write: Callable[[str], Any]) -> list[Any]:
    program = example.program
    inputs = [example.inputs[v.name] for v in program.inputs]
    reference = None
    if all(v.name in example.reference for v in program.inputs):
        reference = tuple(np.asarray(example.reference[v.name]) for v in program.inputs)
    try:
        return compare_unrolled(program, inputs, ks, reference)
    except LagradError as err:  # e.g. a root constraint whose plain iteration diverges
        write(f"  (unrolling fails: {err})")
        return []
