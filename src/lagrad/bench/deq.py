"""Workload ``deq``: the deep-equilibrium layer z = tanh(W z + U x + b),
W random with spectral norm 0.9, x of size 50, output sum(z^2), gradient with
respect to x and W, for N = 100, 1000, 3000.

Rows per N: default settings; each adjoint method (after the default forward
solve); Newton and Anderson forward solves; the unrolled baseline (K = 10,
30, 100 iterations, :func:`lagrad.unroll`); and the floor, a numpy
fixed-point iteration forward and the adjoint iteration
lambda <- W^T D lambda + 2 z, each stopped by lagrad's own test at lagrad's
default tolerance (so both make the same number of products with W). Errors
are against a dense numpy reference: iteration polished by one Newton step,
then LU of (I - D W) (docs/cyclic.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse.linalg as spla
from numpy.typing import NDArray

import lagrad
from lagrad.options import DEFAULT_TOL
from lagrad.solve.linsolve import Substitution

from .core import (
    Column,
    Context,
    attempt,
    beside_ratio,
    format_table,
    keep,
    relative_error,
    time_calls,
)

__all__ = ["deq", "SIZES", "DeqProblem", "make_deq"]

Array = NDArray[np.float64]
SIZES = {"tiny": [30], "quick": [100, 1000], "full": [100, 1000, 3000]}
INPUT_SIZE = 50
TOL = DEFAULT_TOL  # the floor stops where lagrad's default solves do
ADJOINT_METHODS = ("splu", "gmres", "bicgstab", "lgmres", "fixed_point", "dense")
UNROLL = (10, 30, 100)
DIRECT_OR_CONVERGED = ("default", "newton", "anderson") + ADJOINT_METHODS


class DeqProblem:
    """W, U, b, x; the lagrad program; the dense reference gradient."""

    def __init__(self, n: int, d: int = INPUT_SIZE, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        w = rng.standard_normal((n, n))
        norm = np.linalg.norm(w, 2) if n <= 500 else \
            float(spla.svds(w, k=1, return_singular_vectors=False, random_state=0)[0])
        self.W = w * (0.9 / norm)
        self.U = rng.standard_normal((n, d)) / np.sqrt(d)
        self.b = 0.1 * rng.standard_normal(n)
        self.x = rng.standard_normal(d)
        self.n = n
        p = lagrad.Program("deq")
        x_in, w_in = p.input("x", (d,)), p.input("W", (n, n))
        z = p.unknown("z", (n,))
        p.define(z, lagrad.tanh(w_in @ z + self.U @ x_in + self.b))
        p.output(lagrad.sum(z * z))
        self.program = p

    @property
    def inputs(self) -> tuple[Array, Array]:
        return self.x, self.W

    def reference(self) -> tuple[Array, Array]:
        """Dense reference: iterate to rounding, one Newton step, LU adjoint."""
        a = self.U @ self.x + self.b
        z = np.zeros(self.n)
        for _ in range(5000):
            new = np.tanh(self.W @ z + a)
            done = np.linalg.norm(new - z) <= 1e-15 * max(1.0, np.linalg.norm(new))
            z = new
            if done:
                break
        factors = scipy.linalg.lu_factor(np.eye(self.n) - (1 - z * z)[:, None] * self.W)
        z = z - scipy.linalg.lu_solve(factors, z - np.tanh(self.W @ z + a))
        dg = 1.0 - z * z
        lam = scipy.linalg.lu_solve(factors, 2.0 * z, trans=1)
        return self.U.T @ (dg * lam), np.outer(dg * lam, z)

    def floor(self, phases: list[tuple[float, float, float]] | None = None
              ) -> tuple[Array, Array]:
        """Fixed-point iteration forward, adjoint iteration, in numpy. With
        ``phases``, appends the seconds of the forward loop (with U x + b), of
        the adjoint loop, and of the rest (the gradients' products)."""
        t0 = time.perf_counter()
        w, a = self.W, self.U @ self.x + self.b
        z = np.zeros(self.n)
        for _ in range(10_000):
            new = np.tanh(w @ z + a)
            done = np.linalg.norm(new - z) <= TOL * max(1.0, np.linalg.norm(new))
            z = new
            if done:
                break
        t1 = time.perf_counter()
        dg = 1.0 - z * z
        rhs = 2.0 * z
        lam = rhs.copy()
        scale = np.linalg.norm(rhs)
        for _ in range(10_000):  # lambda <- J^T lambda + e with J = D W
            new = w.T @ (dg * lam) + rhs
            done = np.linalg.norm(new - lam) <= TOL * scale
            lam = new
            if done:
                break
        t2 = time.perf_counter()
        out = self.U.T @ (dg * lam), np.outer(dg * lam, z)
        if phases is not None:
            phases.append((t1 - t0, t2 - t1, time.perf_counter() - t2))
        return out

    def floor_forward(self) -> Array:
        w, a = self.W, self.U @ self.x + self.b
        z = np.zeros(self.n)
        for _ in range(10_000):
            new = np.tanh(w @ z + a)
            if np.linalg.norm(new - z) <= TOL * max(1.0, np.linalg.norm(new)):
                return new
            z = new
        return z


def make_deq(n: int) -> DeqProblem:
    return DeqProblem(n)


def _stored(program: lagrad.Program) -> int:
    """Float64 entries of the variables that are not inputs (what a solve stores)."""
    return sum(v.size for v in program.variables if v.kind != "input")


def _chosen(sol: Any, adjoint: Any = None) -> str:
    """The forward blocks' methods and iterations, and the adjoint's: the
    default's, or (``adjoint``, a method) that method's, solved once more."""
    fwd = "; ".join(f"{d.method} {d.iterations} it" for d in sol.diagnostics.values())
    blocks = sol.adjoint_diagnostics if adjoint is None else \
        sol.adjoint_system().solve(adjoint).info.blocks
    adj = "; ".join(f"{b.method} {b.iterations} it" for b in blocks)
    return f"fwd {fwd}, adj {adj}" if adj else f"fwd {fwd}"


COLUMNS = [
    Column("N", "N"), Column("method", "method"),
    Column("forward_s", "fwd ms", "{:.2f}", 1e3), Column("gradient_s", "grad ms", "{:.2f}", 1e3),
    Column("grad_over_floor", "grad/floor", "{:.2f}"),
    Column("error", "err vs dense", "{:.0e}"), Column("stored", "stored"),
    Column("build_s", "build ms", "{:.1f}", 1e3), Column("detail", "solver (auto's choice)"),
]


def _methods(prob: DeqProblem, last: dict[str, Any]
             ) -> dict[str, tuple[Callable[[], Any], str, float]]:
    """name -> (gradient call, guard key, work exponent in N)."""
    p, (x, w) = prob.program, prob.inputs
    out: dict[str, tuple[Callable[[], Any], str, float]] = {}
    for m in ADJOINT_METHODS:
        method: Any = Substitution("dense", "dense") if m == "dense" else m
        out[m] = ((lambda m=m, method=method: keep(last, m, p.solve(x, w)).grad(method=method)),
                  m, 3.0 if m in ("splu", "dense") else 2.0)
    out["newton"] = (lambda: keep(last, "newton", p.solve(x, w, method="newton")).grad(),
                     "newton", 3.0)
    out["anderson"] = (lambda: keep(last, "anderson", p.solve(x, w, method="anderson")).grad(),
                       "anderson", 2.0)
    return out


def _rows_for(ctx: Context, n: int, guard: Any, notes: list[str]) -> list[dict[str, Any]]:
    ctx.progress(f"deq: N={n}: problem and dense reference")
    prob = make_deq(n)
    ref = prob.reference()
    p, (x, w) = prob.program, prob.inputs
    base = {"workload": "deq", "N": n}
    ctx.progress(f"deq: N={n}: first solve and gradient (compiles the program)")
    p.solve(x, w).grad()
    ctx.progress(f"deq: N={n}: default settings and the floor")
    t = time_calls({"forward": lambda: p.solve(x, w), "gradient": lambda: p.solve(x, w).grad(),
                    "floor_forward": prob.floor_forward, "floor_gradient": prob.floor},
                   ctx.repeats or 1, ctx.comparison_budget)
    floor_s = t["floor_gradient"].median
    sol = p.solve(x, w)
    sol.grad()
    rows = [{**base, "method": "default", "forward_s": t["forward"].median,
             "gradient_s": t["gradient"].median, "error": relative_error(t["gradient"].value, ref),
             "stored": _stored(p), "detail": _chosen(sol)},
            {**base, "method": "floor (numpy)", "forward_s": t["floor_forward"].median,
             "gradient_s": floor_s, "error": relative_error(t["floor_gradient"].value, ref),
             "stored": 2 * n, "detail": "fixed point + adjoint iteration"}]
    last: dict[str, Any] = {}
    for name, (fn, key, exponent) in _methods(prob, last).items():
        ctx.progress(f"deq: N={n}: {name}")
        got = attempt(ctx, guard, key, float(n) ** exponent, f"N={n}", fn,
                      beside=lambda: p.solve(x, w).grad())
        row = {**base, "method": name, "stored": _stored(p), **beside_ratio(got)}
        if got.timing is None:
            row["gradient_s_skipped"] = bool(got.skipped)
            row["detail"] = "skipped" if got.skipped else "failed"
            notes.append(f"N={n} {name}: {got.note}")
        else:
            row.update(gradient_s=got.timing.median, error=relative_error(got.timing.value, ref))
            method = Substitution("dense", "dense") if name == "dense" else name
            row["detail"] = "" if name not in last else \
                _chosen(last[name], method if name in ADJOINT_METHODS else None)
        rows.append(row)
    for k in UNROLL:
        key = f"unrolled K={k}"
        if guard.reason(key, float(n) ** 2):
            notes.append(f"N={n} {key}: skipped, {guard.reason(key, float(n) ** 2)}")
            rows.append({**base, "method": key, "gradient_s_skipped": True})
            continue
        ctx.progress(f"deq: N={n}: {key}")
        t0 = time.perf_counter()
        unrolled = lagrad.unroll(p, k)
        build = time.perf_counter() - t0
        got = attempt(ctx, guard, key, float(n) ** 2, f"N={n}",
                      lambda u=unrolled: u.solve(x, w).grad())
        row = {**base, "method": key, "build_s": build, "stored": _stored(unrolled)}
        if got.timing is not None:
            row.update(gradient_s=got.timing.median,
                       error=relative_error(got.timing.value, ref))
        else:
            notes.append(f"N={n} {key}: {got.note}")
        rows.append(row)
    for row in rows:
        if row.get("gradient_s") is not None:
            row["grad_over_floor"] = row["gradient_s"] / floor_s
    return rows


def deq(ctx: Context) -> list[dict[str, Any]]:
    """Every way lagrad offers to differentiate a DEQ layer, and the numpy floor."""
    guard = ctx.guard()
    notes: list[str] = []
    rows = [r for n in ctx.pick(SIZES) for r in _rows_for(ctx, n, guard, notes)]
    notes += [f"z = tanh(W z + U x + b), ||W||_2 = 0.9, x of size {INPUT_SIZE}, output "
              "sum(z^2); gradient wrt x and W (includes the forward solve)",
              "adjoint methods run after the default forward solve; newton/anderson: that "
              "forward method, default adjoint; dense: LU of each cyclic block (the whole "
              "system has N^2 unknowns, W being an input, so whole-system dense never fits)",
              "stored: float64 entries of non-input variables; err: max abs error / max abs "
              "of the dense reference gradient",
              "targets (N >= 1000): every direct or converged method within 1e-10; "
              "default grad/floor <= 1.1"]
    ctx.print(format_table("deq: deep-equilibrium layer, implicit vs unrolled vs floor",
                           COLUMNS, rows, notes))
    return rows
