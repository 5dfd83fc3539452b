"""Workloads ``modes`` (reverse vs forward mode vs finite differences vs the
path sum, against the number of inputs d) and ``paths`` (stacked diamonds:
the number of paths doubles per layer).

``modes`` differentiates one fixed program of d inputs (an array program:
``LAYERS`` layers h <- tanh(h + h * h[perm] + b), output sum(h)). Reverse mode
costs one adjoint solve whatever d; forward mode d tangent solves; finite
differences 2 d forward solves; the path sum one product per path, and this
program has d * 3^LAYERS paths. Floor: the same gradient by hand-written numpy
backpropagation.

``paths`` differentiates x -> sin(x) + cos(x) stacked D times: 2^D paths from
x to the output, 3 D equations. Floor: the hand-written scalar chain rule in
plain Python (``math``), forward and reverse.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

import lagrad
from lagrad.study import naive

from .core import (
    Column,
    Context,
    Guard,
    attempt,
    format_table,
    relative_error,
    time_calls,
)

__all__ = ["modes", "paths", "MODES_SIZES", "PATHS_SIZES", "LAYERS"]

Array = NDArray[np.float64]
LAYERS = 5
MODES_SIZES = {"tiny": [1, 4, 10], "quick": [1, 10, 30, 100], "full": [1, 10, 30, 100, 300, 1000]}
PATHS_SIZES = {"tiny": [1, 2, 4, 8], "quick": [1, 2, 4, 6, 8, 10, 12, 14, 16, 20, 30, 40],
               "full": [1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 25, 30, 35, 40]}
MAX_PATHS = 10**10  # the guard, not this, decides when the path sum is too slow


# ------------------------------------------------------------------ modes

def _layers(d: int, seed: int = 0) -> tuple[list[NDArray[np.intp]], list[Array], Array]:
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(d) for _ in range(LAYERS)]
    biases = [0.1 * rng.standard_normal(d) for _ in range(LAYERS)]
    return perms, biases, rng.uniform(-1.0, 1.0, d)


def modes_program(d: int) -> tuple[lagrad.Program, Array, Callable[[Array], Array]]:
    """The program, its input and the numpy floor (returns the gradient)."""
    perms, biases, x0 = _layers(d)

    def layers(x: Any) -> Any:
        h = x
        for perm, b in zip(perms, biases):
            h = lagrad.tanh(h + h * h[perm] + b)
        return lagrad.sum(h)

    def floor(x: Array) -> Array:
        hs, gs = [x], []
        h = x
        for perm, b in zip(perms, biases):
            g = h[perm]
            h = np.tanh(h + h * g + b)
            gs.append(g)
            hs.append(h)
        grad = np.ones(d)
        for k in range(LAYERS - 1, -1, -1):
            gz = grad * (1.0 - hs[k + 1] ** 2)
            grad = gz * (1.0 + gs[k])
            grad[perms[k]] += gz * hs[k]  # perm is a permutation: no repeated index
        return grad

    return lagrad.trace(layers, np.zeros(d)), x0, floor


MODES_COLUMNS = [
    Column("d", "d"), Column("flat", "scalars"), Column("paths", "paths"),
    Column("reverse_s", "reverse ms", "{:.3f}", 1e3),
    Column("forward_mode_s", "forward ms", "{:.2f}", 1e3),
    Column("finite_differences_s", "FD ms", "{:.2f}", 1e3),
    Column("path_sum_s", "path-sum ms", "{:.1f}", 1e3),
    Column("floor_s", "floor ms", "{:.3f}", 1e3),
    Column("speedup", "fwd/rev", "{:.1f}"), Column("half_d", "d/2", "{:g}"),
    Column("reverse_over_floor", "rev/floor", "{:.2f}"),
    Column("error_forward", "err fwd", "{:.0e}"), Column("error_fd", "err FD", "{:.0e}"),
    Column("error_path", "err path", "{:.0e}"),
]


def _modes_row(ctx: Context, d: int, guard: Guard, notes: list[str]) -> dict[str, Any]:
    program, x, floor = modes_program(d)
    n_paths = naive.count_paths(program, x)
    row: dict[str, Any] = {"workload": "modes", "d": d, "paths": n_paths,
                           "flat": sum(v.size for v in program.variables),
                           "half_d": d / 2}
    ctx.progress(f"modes: d={d}: reverse and floor")
    fast = time_calls({"reverse": lambda: program.solve(x).grad(), "floor": lambda: floor(x)},
                      ctx.repeats or 1, ctx.budget or 1.0)
    reference = fast["reverse"].value
    row.update(reverse_s=fast["reverse"].median, floor_s=fast["floor"].median,
               error_floor=relative_error(fast["floor"].value, reference))
    slow = {"forward_mode": (lambda: naive.forward_gradient(program, x), d, "error_forward"),
            "finite_differences": (lambda: naive.finite_difference_gradient(program, x), d,
                                   "error_fd"),
            "path_sum": (lambda: naive.path_sum_gradient(program, x, max_paths=MAX_PATHS),
                         float(n_paths) * (4 * LAYERS + 2), "error_path")}
    for name, (fn, work, err_key) in slow.items():
        ctx.progress(f"modes: d={d}: {name.replace('_', ' ')}")
        got = attempt(ctx, guard, name, work, f"d={d}", fn)
        if got.timing is None:
            row[f"{name}_s_skipped"] = bool(got.skipped)
            notes.append(f"d={d}: {name.replace('_', ' ')} {got.note}")
            continue
        row[f"{name}_s"] = got.timing.median
        row[err_key] = relative_error(got.timing.value, reference)
    if row.get("forward_mode_s") is not None:
        row["speedup"] = row["forward_mode_s"] / row["reverse_s"]
    row["reverse_over_floor"] = row["reverse_s"] / row["floor_s"]
    return row


def modes(ctx: Context) -> list[dict[str, Any]]:
    """Reverse vs forward mode vs finite differences vs path sum, against d."""
    guard = ctx.guard()
    notes: list[str] = []
    rows = [_modes_row(ctx, d, guard, notes) for d in ctx.pick(MODES_SIZES)]
    notes += [f"program: {LAYERS} layers h <- tanh(h + h * h[perm] + b) on d inputs, output "
              f"sum(h); d * 3^{LAYERS} paths",
              "times include the forward solve; fwd/rev = forward-mode time / reverse time "
              "(target >= d/2 for d >= 10); errors relative to reverse mode"]
    ctx.print(format_table("modes: one program, d inputs, four ways to its gradient",
                           MODES_COLUMNS, rows, notes))
    return rows


# ------------------------------------------------------------------ paths

def _diamonds(depth: int) -> Callable[[Any], Any]:
    def f(x: Any) -> Any:
        for _ in range(depth):
            x = lagrad.sin(x) + lagrad.cos(x)
        return x
    return f


def _diamonds_floor(depth: int) -> Callable[[float], tuple[float, float]]:
    def grad(x: float) -> tuple[float, float]:
        xs = []
        for _ in range(depth):
            xs.append(x)
            x = math.sin(x) + math.cos(x)
        g = 1.0
        for v in reversed(xs):
            g *= math.cos(v) - math.sin(v)
        return x, g
    return grad


PATHS_COLUMNS = [
    Column("depth", "depth"), Column("equations", "eqs"), Column("paths", "paths"),
    Column("reverse_s", "reverse ms", "{:.3f}", 1e3),
    Column("forward_mode_s", "forward ms", "{:.3f}", 1e3),
    Column("path_sum_s", "path-sum ms", "{:.2f}", 1e3),
    Column("floor_s", "floor ms", "{:.4f}", 1e3),
    Column("path_over_reverse", "path/rev", "{:.1f}"),
    Column("reverse_over_floor", "rev/floor", "{:.1f}"),
    Column("error_path", "err path", "{:.0e}"),
]


def _paths_row(ctx: Context, depth: int, guard: Guard, notes: list[str]) -> dict[str, Any]:
    x = 0.3
    program = lagrad.trace(_diamonds(depth), 0.0)
    floor = _diamonds_floor(depth)
    n_paths = naive.count_paths(program, x)
    row: dict[str, Any] = {"workload": "paths", "depth": depth, "paths": n_paths,
                           "equations": len(program.equations)}
    ctx.progress(f"paths: depth {depth}")
    t = time_calls({"reverse": lambda: program.solve(x).grad(),
                    "forward_mode": lambda: naive.forward_gradient(program, x),
                    "floor": lambda: floor(x)}, ctx.repeats or 1, ctx.budget or 1.0)
    reference = float(t["reverse"].value)
    row.update({f"{k}_s": v.median for k, v in t.items()})
    row["error_floor"] = relative_error(t["floor"].value[1], reference)
    row["error_forward"] = relative_error(t["forward_mode"].value, reference)
    got = attempt(ctx, guard, "path_sum", float(n_paths) * depth, f"depth {depth}",
                  lambda: naive.path_sum_gradient(program, x, max_paths=MAX_PATHS))
    if got.timing is None:
        row["path_sum_s_skipped"] = bool(got.skipped)
        notes.append(f"depth {depth}: path sum {got.note}")
    else:
        row["path_sum_s"] = got.timing.median
        row["error_path"] = relative_error(got.timing.value, reference)
        row["path_over_reverse"] = row["path_sum_s"] / row["reverse_s"]
    row["reverse_over_floor"] = row["reverse_s"] / row["floor_s"]
    return row


def paths(ctx: Context) -> list[dict[str, Any]]:
    """Stacked diamonds: path-sum time doubles per layer, reverse mode grows linearly."""
    guard = ctx.guard()
    notes: list[str] = []
    rows = [_paths_row(ctx, depth, guard, notes) for depth in ctx.pick(PATHS_SIZES)]
    notes += ["program: x <- sin(x) + cos(x) stacked depth times (2^depth paths); times "
              "include the forward solve",
              "floor: scalar chain rule by hand in plain Python; err path: path sum vs reverse"]
    ctx.print(format_table("paths: stacked diamonds, the flat formula against back-substitution",
                           PATHS_COLUMNS, rows, notes))
    return rows
