"""Workload ``pagerank``: r = 0.85 P^T r + 0.15 v on a random graph with
n = m / 10 nodes and m = 10^4, 10^5, 10^6 edges; output the rank mass of 1%
of the nodes; gradient with respect to v and the edge weights w.

The program is the one of :func:`lagrad.examples.pagerank` (P^T r by
:func:`lagrad.coo_matvec` with P's values as variables, never a dense n x n
matrix). Rows per m: default
settings; the fixed-point forward solve; each adjoint method after the
default forward solve. Floor: scipy power iteration forward and a GMRES
adjoint solve of (I - alpha P) lambda = 1_S, with P assembled from w inside
the timed region (its sparsity structure is prepared once, outside). Errors
are against a reference iterated to rounding error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from numpy.typing import NDArray

import lagrad
from lagrad.options import DEFAULT_TOL

from .core import (
    Column,
    Context,
    attempt,
    beside_ratio,
    fmt_pow10,
    format_table,
    keep,
    relative_error,
    time_calls,
)

__all__ = ["pagerank", "SIZES", "PageRankProblem"]

Array = NDArray[np.float64]
SIZES = {"tiny": [2000], "quick": [10_000, 100_000], "full": [10_000, 100_000, 1_000_000]}
ALPHA = 0.85
TOL = DEFAULT_TOL  # the floor stops where lagrad's default solves do
ADJOINT_METHODS = ("gmres", "bicgstab", "lgmres", "fixed_point", "splu", "spsolve")


class PageRankProblem:
    """Graph, inputs, lagrad program, floor and reference for m edges."""

    def __init__(self, m: int, seed: int = 0) -> None:
        n = max(m // 10, 2)
        rng = np.random.default_rng(seed)
        ring = np.arange(n)
        extra = rng.integers(0, n, m - n)
        self.src = np.concatenate([ring, extra])
        self.dst = np.concatenate([(ring + 1) % n, (extra + rng.integers(1, n, m - n)) % n])
        self.w = rng.uniform(0.5, 1.5, m)
        v = rng.uniform(0.5, 1.5, n)
        self.v = v / v.sum()
        self.subset = np.sort(rng.choice(n, max(1, n // 100), replace=False))
        self.n, self.m = n, m
        out = sp.csr_matrix((np.ones(m), (self.src, np.arange(m))), shape=(n, m))
        p = lagrad.Program("pagerank")
        w_in, v_in = p.input("w", (m,)), p.input("v", (n,))
        s = lagrad.matmul(out, w_in)
        c = w_in / s[self.src]
        r = p.unknown("r", (n,), init=np.full(n, 1.0 / n))
        pt_r = lagrad.coo_matvec(c, self.src, self.dst, r, shape=(n, n), transpose=True)
        p.define(r, ALPHA * pt_r + (1.0 - ALPHA) * v_in)
        p.output(lagrad.sum(r[self.subset]))
        self.program = p
        # the floor's CSR structures of P (rows src) and P^T (rows dst), prepared once
        self._p_order = np.argsort(self.src, kind="stable")
        self._pt_order = np.argsort(self.dst, kind="stable")
        self._p_indptr = np.concatenate([[0], np.cumsum(np.bincount(self.src, minlength=n))])
        self._pt_indptr = np.concatenate([[0], np.cumsum(np.bincount(self.dst, minlength=n))])
        self.target = np.zeros(n)
        self.target[self.subset] = 1.0

    def matrices(self, w: Array) -> tuple[Array, sp.csr_matrix, sp.csr_matrix]:
        """s (out-weights), P and P^T for weights w (duplicate edges add up)."""
        s = np.bincount(self.src, weights=w, minlength=self.n)
        data = w / s[self.src]
        shape = (self.n, self.n)
        p = sp.csr_matrix((data[self._p_order], self.dst[self._p_order], self._p_indptr),
                          shape=shape)
        pt = sp.csr_matrix((data[self._pt_order], self.src[self._pt_order], self._pt_indptr),
                           shape=shape)
        return s, p, pt

    def floor_forward(self) -> tuple[Array, Array, sp.csr_matrix]:
        s, p, pt = self.matrices(self.w)
        base = (1.0 - ALPHA) * self.v
        r = np.full(self.n, 1.0 / self.n)
        for _ in range(10_000):
            new = ALPHA * (pt @ r) + base
            done = np.linalg.norm(new - r) <= TOL * max(1.0, np.linalg.norm(new))
            r = new
            if done:
                break
        return r, s, p

    def floor(self) -> tuple[Array, Array]:
        """Power iteration forward, GMRES adjoint; returns (grad_w, grad_v)."""
        r, s, p = self.floor_forward()
        op = sp.identity(self.n, format="csr") - ALPHA * p
        lam, info = spla.gmres(op, self.target, rtol=TOL, atol=0.0, restart=50, maxiter=1000)
        if info != 0:
            raise RuntimeError(f"floor GMRES did not converge (info {info})")
        return self._gradient(r, s, p, lam)

    def _gradient(self, r: Array, s: Array, p: sp.csr_matrix, lam: Array
                  ) -> tuple[Array, Array]:
        src, dst = self.src, self.dst
        grad_w = ALPHA * r[src] / s[src] * (lam[dst] - (p @ lam)[src])
        return grad_w, (1.0 - ALPHA) * lam

    def reference(self) -> tuple[Array, Array]:
        """r and lambda by the Neumann iteration carried to rounding error."""
        s, p, pt = self.matrices(self.w)

        def neumann(a: sp.csr_matrix, b: Array) -> Array:
            x = b.copy()
            for _ in range(100_000):
                new = b + ALPHA * (a @ x)
                if np.max(np.abs(new - x)) <= 2 * np.finfo(float).eps * np.max(np.abs(new)):
                    return new
                x = new
            raise RuntimeError("PageRank reference did not converge")
        r = neumann(pt, (1.0 - ALPHA) * self.v)
        lam = neumann(p, self.target)
        return self._gradient(r, s, p, lam)


def _detail(sol: Any) -> str:
    fwd = "; ".join(f"{d.method} {d.iterations} it" for d in sol.diagnostics.values())
    adj = "; ".join(f"{b.method} {b.iterations} it" for b in sol.adjoint_diagnostics)
    return f"fwd {fwd}" + (f", adj {adj}" if adj else "")


COLUMNS = [
    Column("m", "m edges", fmt_pow10), Column("n", "n nodes", fmt_pow10),
    Column("method", "method"),
    Column("forward_s", "fwd ms", "{:.1f}", 1e3), Column("gradient_s", "grad ms", "{:.1f}", 1e3),
    Column("grad_over_floor", "grad/floor", "{:.2f}"),
    Column("error", "err", "{:.0e}"), Column("detail", "solver (auto's choice)"),
]


def _rows_for(ctx: Context, m: int, guard: Any, notes: list[str]) -> list[dict[str, Any]]:
    ctx.progress(f"pagerank: m={m}: graph, program and reference")
    prob = PageRankProblem(m)
    ref = prob.reference()
    p, w, v = prob.program, prob.w, prob.v
    base = {"workload": "pagerank", "m": m, "n": prob.n}
    ctx.progress(f"pagerank: m={m}: first solve and gradient (compiles the program)")
    p.solve(w, v).grad()
    ctx.progress(f"pagerank: m={m}: default settings, fixed point and the floor")
    t = time_calls({"forward": lambda: p.solve(w, v), "gradient": lambda: p.solve(w, v).grad(),
                    "fp_forward": lambda: p.solve(w, v, method="fixed_point"),
                    "fp_gradient": lambda: p.solve(w, v, method="fixed_point").grad(),
                    "floor_forward": prob.floor_forward, "floor_gradient": prob.floor},
                   ctx.repeats or 1, ctx.comparison_budget)
    floor_s = t["floor_gradient"].median
    sol = p.solve(w, v)
    sol.grad()
    fp = p.solve(w, v, method="fixed_point")
    fp.grad()
    rows = [{**base, "method": "default", "forward_s": t["forward"].median,
             "gradient_s": t["gradient"].median, "error": relative_error(t["gradient"].value, ref),
             "detail": _detail(sol)},
            {**base, "method": "fixed_point forward", "forward_s": t["fp_forward"].median,
             "gradient_s": t["fp_gradient"].median,
             "error": relative_error(t["fp_gradient"].value, ref), "detail": _detail(fp)},
            {**base, "method": "floor (scipy)", "forward_s": t["floor_forward"].median,
             "gradient_s": floor_s, "error": relative_error(t["floor_gradient"].value, ref),
             "detail": "power iteration + GMRES"}]
    last: dict[str, Any] = {}
    for name in ADJOINT_METHODS:
        ctx.progress(f"pagerank: m={m}: adjoint {name}")
        # sparse LU on a random graph fills in like a dense one: O(n^3) in the nodes
        exponent = 3.0 if name in ("splu", "spsolve") else 1.0
        got = attempt(ctx, guard, name, float(m) ** exponent, f"m={m}",
                      lambda name=name: keep(last, name, p.solve(w, v)).grad(method=name),
                      beside=lambda: p.solve(w, v).grad())
        row = {**base, "method": name, **beside_ratio(got)}
        if got.timing is None:
            row["gradient_s_skipped"] = bool(got.skipped)
            row["detail"] = "skipped" if got.skipped else "failed"
            notes.append(f"m={m} {name}: {got.note}")
        else:
            row.update(gradient_s=got.timing.median, error=relative_error(got.timing.value, ref),
                       detail=_detail(last[name]) if name in last else "")
        rows.append(row)
    for row in rows:
        if row.get("gradient_s") is not None:
            row["grad_over_floor"] = row["gradient_s"] / floor_s
    return rows


def pagerank(ctx: Context) -> list[dict[str, Any]]:
    """PageRank gradient by every lagrad method against a scipy floor."""
    guard = ctx.guard()
    notes: list[str] = []
    rows = [r for m in ctx.pick(SIZES) for r in _rows_for(ctx, m, guard, notes)]
    notes += ["r = 0.85 P^T r + 0.15 v, output rank mass of 1% of the nodes; gradient wrt w "
              "and v (includes the forward solve); adjoint methods after the default forward",
              "err: against Neumann iteration to rounding; target (m = 10^6): default "
              "grad/floor <= 1.1"]
    ctx.print(format_table("pagerank: implicit gradient on a sparse random graph", COLUMNS,
                           rows, notes))
    return rows
