"""Study ``bptt``: backpropagation through time for a small RNN against the
same gradient from the multiplier system, with the memory each keeps.

The RNN h_t = tanh(W h_(t-1) + U x_t + b), h_0 = 0, loss
1/2 sum_t ||h_t - y_t||^2. Hand-written BPTT (numpy) stores the T hidden
states and runs delta_t = (h_t - y_t) + W^T da_(t+1), da_t = (1 - h_t^2) delta_t.
The traced program keeps every intermediate value z (matmuls, sums, tanh,
residuals) and solves (I - J)^T lambda = e_n by back-substitution: the same
recursion, one multiplier per entry of z. Memory is reported as the bytes of
what each keeps between the forward and the backward pass (the states for
BPTT; z and lambda for the multiplier system), and as the peak traced by
``tracemalloc`` while computing the gradient.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.ir import ops
from lagrad.ir.program import Program
from lagrad.ir.trace import trace

__all__ = ["rnn_problem", "rnn_program", "bptt_gradient", "bptt_study"]

Array = NDArray[np.float64]


def rnn_problem(hidden: int = 8, inputs: int = 3, steps: int = 20, seed: int = 0
                ) -> dict[str, Array]:
    rng = np.random.default_rng(seed)
    return {"W": 0.5 * rng.standard_normal((hidden, hidden)) / np.sqrt(hidden),
            "U": rng.standard_normal((hidden, inputs)) / np.sqrt(inputs),
            "b": 0.1 * rng.standard_normal(hidden),
            "x": rng.standard_normal((steps, inputs)),
            "y": 0.5 * rng.standard_normal((steps, hidden))}


def rnn_program(problem: dict[str, Array]) -> Program:
    """The loss as a program of (W, U, b); the sequences are constants."""
    xs, ys = problem["x"], problem["y"]

    def loss(w: Any, u: Any, b: Any) -> Any:
        h: Any = np.zeros(w.shape[0])
        total: Any = 0.0
        for t in range(xs.shape[0]):
            h = ops.tanh(w @ h + u @ xs[t] + b)
            r = h - ys[t]
            total = total + 0.5 * ops.sum(r * r)
        return total
    return trace(loss, problem["W"], problem["U"], problem["b"])


def bptt_gradient(problem: dict[str, Array]) -> tuple[Array, Array, Array, int]:
    """Hand-written BPTT: the gradient in (W, U, b) and the bytes of stored states."""
    w, u, b, xs, ys = (problem[k] for k in ("W", "U", "b", "x", "y"))
    hs = np.zeros((xs.shape[0] + 1, w.shape[0]))  # h_0..h_T: what BPTT keeps
    for t in range(xs.shape[0]):
        hs[t + 1] = np.tanh(w @ hs[t] + u @ xs[t] + b)
    gw, gu, gb = np.zeros_like(w), np.zeros_like(u), np.zeros_like(b)
    carry = np.zeros(w.shape[0])
    for t in range(xs.shape[0], 0, -1):
        da = (hs[t] - ys[t - 1] + carry) * (1.0 - hs[t] ** 2)
        gw += np.outer(da, hs[t - 1])
        gu += np.outer(da, xs[t - 1])
        gb += da
        carry = w.T @ da
    return gw, gu, gb, int(hs.nbytes)


def _peak(fn: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        out = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return out, peak


def compare(problem: dict[str, Array]) -> dict[str, Any]:
    """Gradients and memory of BPTT and of the multiplier system at one size."""
    program = rnn_program(problem)
    args = [problem[k] for k in ("W", "U", "b")]
    program.solve(*args).grad()  # compile once: the peak below is one gradient
    (ref, peak_bptt) = _peak(lambda: bptt_gradient(problem))
    sol, peak_lagrad = _peak(lambda: _solved(program, args))
    grads = sol.grad()
    error = max(float(np.max(np.abs(g - r)) / np.max(np.abs(r))) for g, r in zip(grads, ref))
    return {"steps": problem["x"].shape[0], "error": error, "bptt_bytes": ref[3],
            "lagrad_bytes": int(sol.z.nbytes * 2), "variables": len(program.variables),
            "entries": int(sol.z.size), "bptt_peak": peak_bptt, "lagrad_peak": peak_lagrad}


def _solved(program: Program, args: list[Array]) -> Any:
    sol = program.solve(*args)
    sol.grad()
    return sol


def bptt_study(write: Callable[[str], Any] = print, small: bool = False,
               plot_dir: str | None = None) -> dict[str, Any]:
    """BPTT against the multiplier system at two sequence lengths."""
    lengths = (5, 10) if small else (20, 40, 80)
    write("== bptt: backpropagation through time for an RNN (hidden 8, inputs 3) against "
          "the multiplier system")
    write(f"  {'T':>4} {'grad err':>9} {'BPTT keeps':>11} {'z+lambda':>10} {'entries':>8} "
          f"{'BPTT peak':>10} {'lagrad peak':>12}")
    rows = []
    for steps in lengths:
        row = compare(rnn_problem(steps=steps))
        rows.append(row)
        write(f"  {steps:>4} {row['error']:9.1e} {row['bptt_bytes']:>9} B "
              f"{row['lagrad_bytes']:>8} B {row['entries']:>8} {row['bptt_peak']:>8} B "
              f"{row['lagrad_peak']:>10} B")
    write("  both grow linearly in T; the multiplier system keeps every intermediate entry "
          "(and one multiplier each), BPTT only the states; peaks are new allocations during "
          "one gradient (lagrad reuses z and lambda buffers pooled per program)")
    return {"rows": rows, "paths": []}
