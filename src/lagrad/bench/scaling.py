"""Workload ``scaling``: random scalar DAGs of n = 10^2 .. 10^6 equations.

Per n: the time to build the program (lagrad's bulk builder when it has one,
else tracing one Python call per equation), the first forward + gradient
(compiling the schedule and plans once), then the medians of the forward
pass and of forward + gradient (default settings and ``method="backsub"``),
their ratio (the cheap gradient principle says a small constant; target
<= 3), the peak memory of build + first gradient, and the floor: the
hand-vectorized numpy level pass over the same graph
(:class:`lagrad.bench.dag.LevelPass`), timed interleaved with lagrad.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .core import (
    Column,
    Context,
    fmt_pow10,
    format_table,
    peak_memory,
    relative_error,
    time_calls,
)
from .dag import LevelPass, build_program, random_dag

__all__ = ["scaling", "SIZES", "COLUMNS"]

SIZES = {"tiny": [100, 1000], "quick": [100, 1000, 10_000, 100_000],
         "full": [100, 1000, 10_000, 100_000, 1_000_000]}

COLUMNS = [
    Column("n", "n", fmt_pow10), Column("equations", "eqs"), Column("depth", "levels"),
    Column("builder", "built by"),
    Column("build_s", "build s", "{:.3f}"), Column("first_s", "first fwd+grad s", "{:.3f}"),
    Column("forward_s", "fwd ms", "{:.2f}", 1e3), Column("gradient_s", "grad ms", "{:.2f}", 1e3),
    Column("grad_over_forward", "grad/fwd", "{:.2f}"),
    Column("backsub_s", "backsub ms", "{:.2f}", 1e3),
    Column("floor_build_s", "floor build s", "{:.3f}"),
    Column("floor_forward_s", "floor fwd ms", "{:.2f}", 1e3),
    Column("floor_gradient_s", "floor grad ms", "{:.2f}", 1e3),
    Column("grad_over_floor", "grad/floor", "{:.2f}"),
    Column("peak_mb", "peak MB", "{:.0f}"), Column("error", "err", "{:.0e}"),
]


def _one_shot(dag: Any, x: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    program, how = build_program(dag)
    t1 = time.perf_counter()
    gradient = program.solve(*x).grad()
    t2 = time.perf_counter()
    return {"program": program, "builder": how, "build_s": t1 - t0, "first_s": t2 - t1,
            "gradient": np.asarray(gradient, dtype=float)}


def _measure(ctx: Context, n: int, backsub_ok: bool) -> dict[str, Any]:
    dag = random_dag(n)
    x = dag.inputs()
    ctx.progress(f"scaling: n={n}: building ({dag.n_equations} equations) and first gradient")
    shot, peak = peak_memory(lambda: _one_shot(dag, x))
    program = shot.pop("program")
    t0 = time.perf_counter()
    floor = LevelPass(dag)
    floor_build = time.perf_counter() - t0
    ctx.progress(f"scaling: n={n}: timing lagrad and the numpy floor")
    calls = {"forward": lambda: program.solve(*x),
             "gradient": lambda: program.solve(*x).grad(),
             "floor_forward": lambda: floor.forward(x),
             "floor_gradient": lambda: floor.gradient(x)}
    if backsub_ok:
        calls["backsub"] = lambda: program.solve(*x).grad(method="backsub")
    t = time_calls(calls, ctx.repeats or 1, ctx.comparison_budget)
    error = relative_error(shot.pop("gradient"), t["floor_gradient"].value[1])
    row = {"workload": "scaling", "n": n, "equations": dag.n_equations, "inputs": dag.n_inputs,
           "depth": floor.depth, **shot, "floor_build_s": floor_build,
           "peak_mb": None if peak is None else peak / 2**20, "error": error,
           "repeats": t["gradient"].repeats}
    for name, timing in t.items():
        row[f"{name}_s"] = timing.median
    row["grad_over_forward"] = row["gradient_s"] / row["forward_s"]
    row["grad_over_floor"] = row["gradient_s"] / row["floor_gradient_s"]
    if "backsub" in t:
        row["backsub_error"] = relative_error(t["backsub"].value, t["gradient"].value)
    return row


def scaling(ctx: Context) -> list[dict[str, Any]]:
    """Build, forward and gradient time per n against the numpy level pass."""
    guard, build_guard = ctx.guard(), ctx.build_guard()
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for n in ctx.pick(SIZES):
        skip = build_guard.reason("build", n)
        if skip:
            notes.append(f"n={n}: skipped, {skip}")
            rows.append({"workload": "scaling", "n": n, "skipped": skip})
            continue
        row = _measure(ctx, n, guard.reason("backsub", n) is None)
        if row.get("backsub_s") is None:
            row["backsub_s_skipped"] = True
            notes.append(f"n={n}: backsub skipped, {guard.reason('backsub', n)}")
        build_guard.record("build", n, row["build_s"] + row["first_s"], f"n={n}")
        if row.get("backsub_s") is not None:
            guard.record("backsub", n, row["backsub_s"], f"n={n}")
        rows.append(row)
    built = {r.get("builder") for r in rows if "builder" in r}
    notes.append("build: lagrad." + ("Program.from_arrays" if built == {"bulk"} else
                                     "trace of one Python call per equation (no bulk "
                                     "builder in this lagrad)")
                 + "; first fwd+grad: first solve + gradient, compiling the schedule")
    notes.append("grad = forward + gradient with default settings (target grad/fwd <= 3); "
                 "floor: numpy level pass over the same graph; err: lagrad vs floor gradient")
    notes.append("peak MB: growth of the process's peak resident memory during build + first "
                 "forward + gradient")
    ctx.print(format_table("scaling: random scalar DAGs, every equation reaches the output",
                           COLUMNS, rows, notes))
    return rows
