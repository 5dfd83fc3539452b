"""``lagrad study NAME``: what the solvers do on one example, as text."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lagrad.errors import LagradError
from lagrad.examples.base import Example
from lagrad.study.unroll import compare_unrolled

__all__ = ["study", "UNROLL_KS", "BACKWARD_KS", "BackwardRow", "compare_backward"]

UNROLL_KS = (1, 3, 10, 30, 100)
BACKWARD_KS = (2, 5, 10, 20, 40)


@dataclass(frozen=True)
class BackwardRow:
    """One line of the backward-modes table: a mode's cost and error."""

    mode: str
    steps: int | None  # K (None: the exact "implicit" solve)
    products: int  # sweeps through the cyclic blocks for the multipliers
    estimate_products: int  # ... and for the error estimate
    seconds: float  # the whole multiplier solve
    error: float  # max relative error of the gradient against the implicit one
    estimate: float  # largest relative error estimate of a block's multipliers (0: exact)


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
    write("\nBackward modes of the cyclic blocks, against the implicit gradient (products: "
          "sweeps through the blocks for the gradient + for the error estimate):")
    write(f"  {'mode':<9} {'K':>4} {'products':>12} {'ms':>7} {'grad err':>9} "
          f"{'lam est':>9}")
    backward = compare_backward(sol, BACKWARD_KS, write)
    for b in backward:
        k = "-" if b.steps is None else str(b.steps)
        write(f"  {b.mode:<9} {k:>4} {b.products:>6} + {b.estimate_products:<3}"
              f" {b.seconds * 1e3:7.2f} {b.error:9.1e} {b.estimate:9.1e}")
    return {"gradient_error": error, "unrolled": rows, "diagnostics": sol.diagnostics,
            "adjoint": sol.adjoint_diagnostics, "backward": backward}


def compare_backward(sol: Any, ks: Sequence[int] = BACKWARD_KS,
                     write: Callable[[str], Any] = print) -> list[BackwardRow]:
    """Cost and gradient error of every backward mode at the solution ``sol``:
    "implicit", "phantom", "jfb" (two names of one mode, both shown) and, for
    each K in ``ks``, "unrolled" and "neumann" (equal in exact arithmetic;
    "neumann" stops early once converged). The
    error is the gradient's, against the implicit one; the estimate is the
    blocks' largest ``relative_error_estimate`` of their multipliers. A mode
    that fails (a series that overflows) is left out, with a line written."""
    row, exact = _row(sol, "implicit", None, None)
    rows = [row]
    for mode, k in [("phantom", None), ("jfb", None),
                    *[(m, k) for m in ("unrolled", "neumann") for k in ks]]:
        try:
            rows.append(_row(sol, mode, k, exact)[0])
        except LagradError as err:
            write(f"  ({mode}, K = {k}: {str(err).split(';')[0]})")
    return rows


def _row(sol: Any, mode: str, k: int | None,
         reference: list[Any] | None) -> tuple[BackwardRow, list[Any]]:
    system = sol.adjoint_system()
    method, options = ("auto", {}) if mode == "implicit" else (mode, {"maxiter": k})
    lam, info = system.solve(method, **options)
    grads = sol.schedule.index.take(lam, sol.schedule.inputs)
    error = 0.0 if reference is None else max(
        float(np.max(np.abs(g - r)) / max(float(np.max(np.abs(r))), 1e-300))
        for g, r in zip(grads, reference))
    blocks = info.blocks
    spent = sum(b.extra.get("products", 0) for b in blocks)
    extra = sum(b.extra.get("estimate_products", 0) for b in blocks)
    estimate = max([b.extra.get("relative_error_estimate", 0.0) for b in blocks], default=0.0)
    steps = 1 if mode in ("phantom", "jfb") else k
    return BackwardRow(mode, steps, spent - extra, extra, info.seconds, error, estimate), grads


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
