"""Workload ``sparsejac``: ``jacobian(fn, sparse=True)`` against the dense Jacobian.

Two problems on an input x of n entries:

* diagonal: f(x) = sin(x) x + x^2 (n outputs, one colour);
* banded: f(x)_i = x_{i+2} - 2 sin(x_{i+1}) + x_i^3 (n - 2 outputs,
  tridiagonal-like, three colours).

Timed per call of ``jacobian(fn)(x)``, tracing and the forward solve included
in both: the sparse Jacobian (pattern by reachability, colouring, all colours
in one multi-right-hand-side sweep) and the dense one (``mode="forward"``, one
tangent solve per input entry; reverse costs the same here). The sparse
result is checked against the dense one: ``error`` is max |sparse - dense| on
the pattern over max |dense|, ``missed`` the number of dense non-zeros outside
the pattern (must be 0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import lagrad
from lagrad.solve.sparsejac import sparse_jacobian

from .core import Column, Context, attempt, fmt_pow10, format_table

__all__ = ["sparsejac", "SIZES", "PROBLEMS"]

SIZES = {"tiny": [100, 300], "quick": [1000, 3000], "full": [1000, 3000, 10_000]}


def diagonal(x: Any) -> Any:
    """sin(x) x + x^2, elementwise."""
    return lagrad.sin(x) * x + x ** 2


def banded(x: Any) -> Any:
    """x[2:] - 2 sin(x[1:-1]) + x[:-2]^3: three neighbours per output."""
    return x[2:] - 2.0 * lagrad.sin(x[1:-1]) + x[:-2] ** 3


PROBLEMS: dict[str, Callable[[Any], Any]] = {"diagonal": diagonal, "banded": banded}

COLUMNS = [
    Column("problem", "problem"), Column("n", "n", fmt_pow10), Column("method", "method"),
    Column("jacobian_s", "jacobian ms", "{:.1f}", 1e3), Column("colours", "solves"),
    Column("speedup", "dense/sparse", "{:.0f}"), Column("error", "err", "{:.0e}"),
    Column("missed", "missed"),
]


def _check(sparse: Any, dense: Any) -> tuple[float, int]:
    """(relative error on the pattern, dense non-zeros outside it)."""
    coo = sparse.tocoo()
    on = dense[coo.row, coo.col]
    scale = max(float(np.abs(dense).max(initial=0.0)), 1e-300)
    error = float(np.abs(coo.data - on).max(initial=0.0)) / scale
    return error, int(np.count_nonzero(dense)) - int(np.count_nonzero(on))


def _rows_for(ctx: Context, name: str, n: int, guard: Any,
              notes: list[str]) -> list[dict[str, Any]]:
    fn = PROBLEMS[name]
    x = np.linspace(-1.0, 1.0, n)
    sparse_fn = lagrad.jacobian(fn, sparse=True)
    dense_fn = lagrad.jacobian(fn, mode="forward")
    base = {"workload": "sparsejac", "problem": name, "n": n}
    ctx.progress(f"sparsejac: {name} n={n}: sparse")
    sol = lagrad.trace(fn, x).solve(x)
    colours = sparse_jacobian(sol).colours
    got = attempt(ctx, guard, f"sparse {name}", float(n), f"n={n}",
                  lambda: sparse_fn(x))
    ctx.progress(f"sparsejac: {name} n={n}: dense")
    dense = attempt(ctx, guard, f"dense {name}", float(n) ** 2, f"n={n}",
                    lambda: dense_fn(x))
    rows = [{**base, "method": f"sparse, {name}", "colours": colours},
            {**base, "method": f"dense, {name}", "colours": n}]
    for row, result in zip(rows, (got, dense)):
        if result.timing is None:
            row["jacobian_s_skipped"] = True
            notes.append(f"{name} n={n} {row['method']}: {result.note}")
        else:
            row["jacobian_s"] = result.timing.median
    if got.timing is not None and dense.timing is not None:
        rows[0]["speedup"] = dense.timing.median / got.timing.median
        rows[0]["error"], rows[0]["missed"] = _check(got.timing.value, dense.timing.value)
    return rows


def sparsejac(ctx: Context) -> list[dict[str, Any]]:
    """Sparse (coloured) against dense Jacobians on diagonal and banded problems."""
    guard = ctx.guard()
    notes: list[str] = []
    rows = [r for name in PROBLEMS for n in ctx.pick(SIZES)
            for r in _rows_for(ctx, name, n, guard, notes)]
    notes += ["jacobian(fn, sparse=True)(x) against jacobian(fn, mode='forward')(x), each "
              "including tracing and the forward solve; solves: colours (sparse), n (dense)",
              "err: sparse vs dense on the pattern; missed: dense non-zeros outside the "
              "pattern; target (n = 10^4): dense/sparse >= 100"]
    ctx.print(format_table("sparsejac: sparse Jacobians by colouring", COLUMNS, rows, notes))
    return rows
