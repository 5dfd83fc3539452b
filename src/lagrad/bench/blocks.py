"""Workload ``blocks``: a chain of B small cyclic blocks (size 3).

Block k: z_k = tanh(A_k z_k + c_k sum(z_{k-1}) + b_k), with z_0 = x (the input,
size 3), A_k random with spectral norm 0.5, c_k in [-0.2, 0.2]; output
sum_k sum(z_k^2); gradient with respect to x and every c_k. The program is
traced with :func:`lagrad.fixed_point` once per block (build and gradient are
timed separately). Methods: default settings (block back-substitution),
one global sparse LU (``spsolve``), per-block sparse LU and GMRES, GMRES on
the whole assembled adjoint system (scipy on ``System.matrix``), and dense
while it fits.

A second problem, ``independent``, has B blocks that read only the input:
z_k = tanh(A_k z_k + w_k x + b_k) with x a scalar input, b (B, 3) an input
and w_k constants, output sum_k (k + 1) sum(z_k^2) (a running total: the
scalar glue after each block); gradient with respect to x and b. Its floor
iterates all blocks at once and solves the B transposed 3x3 systems
(I - D_k A_k)^T in one batched call. Its rows are marked ``independent:``.

Floor of the chain: vectorized numpy over all blocks at once. The forward pass iterates
every block simultaneously (Z <- tanh(A Z + c s(Z) + b), one batched product
per sweep; the chain is block triangular, so this converges at the blocks'
own rate); the adjoint factorizes the B 3x3 matrices I - D_k A_k in one
batched solve and runs the scalar recurrence that couples the blocks,
q_k = alpha_k + c_{k+1} beta_k q_{k+1}, in a plain Python loop.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import scipy.sparse.linalg as spla
from numpy.typing import NDArray

import lagrad

from .core import (
    Column,
    Context,
    attempt,
    beside_ratio,
    fmt_pow10,
    format_table,
    relative_error,
    time_calls,
)

__all__ = ["blocks", "SIZES", "BlockChain", "BlockIndependent"]

Array = NDArray[np.float64]
SIZES = {"tiny": [5, 10], "quick": [100, 300], "full": [100, 1000, 10_000, 100_000]}
TOL = 1e-12
DENSE_FITS = 5000  # whole-system dense: at most this many unknowns (200 MB, seconds)


def _block_map(z: Any, previous: Any, c: Any, a: Array, b: Array) -> Any:
    return lagrad.tanh(a @ z + c * lagrad.sum(previous) + b)


class BlockChain:
    """A, b, c, x for B blocks; the traced program; the vectorized floor."""

    name = "chain"

    def __init__(self, n_blocks: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        a = rng.standard_normal((n_blocks, 3, 3))
        self.A = a * (0.5 / np.linalg.norm(a, 2, axis=(1, 2)))[:, None, None]
        self.b = 0.1 * rng.standard_normal((n_blocks, 3))
        self.c = rng.uniform(-0.2, 0.2, n_blocks)
        self.x = rng.standard_normal(3)
        self.B = n_blocks

    @property
    def inputs(self) -> tuple[Any, ...]:
        return self.x, self.c

    def trace(self) -> lagrad.Program:
        a_all, b_all = self.A, self.b

        def chain(x: Any, c: Any) -> Any:
            z, total = x, 0.0
            for k in range(len(a_all)):
                z = lagrad.fixed_point(_block_map, np.zeros(3), z, c[k], a_all[k], b_all[k])
                total = total + lagrad.sum(z * z)
            return total
        return lagrad.trace(chain, self.x, self.c)

    def floor_forward(self) -> tuple[Array, Array]:
        """All z_k (B, 3) and s_{k-1} = sum(z_{k-1}) (B,), iterating all blocks at once."""
        a, b, c = self.A, self.b, self.c
        z = np.zeros((self.B, 3))
        s = np.empty(self.B)
        s[0] = self.x.sum()
        for _ in range(10_000):
            s[1:] = z[:-1].sum(axis=1)
            new = np.tanh(np.matmul(a, z[:, :, None])[:, :, 0] + (c * s)[:, None] + b)
            change = np.max(np.abs(new - z))
            z = new
            if change <= TOL * max(1.0, float(np.max(np.abs(z)))):
                s[1:] = z[:-1].sum(axis=1)
                return z, s
        raise RuntimeError("blocks floor: forward iteration did not converge")

    def floor(self) -> tuple[Array, Array]:
        """(grad_x, grad_c), forward pass included."""
        z, s = self.floor_forward()
        dg = 1.0 - z * z  # diagonal of D_k, per block
        m = np.eye(3) - dg[:, :, None] * self.A  # I - D_k A_k
        w = np.linalg.solve(m, dg[:, :, None])[:, :, 0]  # M_k^-1 D_k 1
        alpha = np.einsum("ki,ki->k", w, 2.0 * z).tolist()
        gamma = (np.append(self.c[1:], 0.0) * w.sum(axis=1)).tolist()
        q = [0.0] * self.B
        nxt = 0.0
        for k in range(self.B - 1, -1, -1):  # q_k = alpha_k + c_{k+1} beta_k q_{k+1}
            nxt = alpha[k] + gamma[k] * nxt
            q[k] = nxt
        qa = np.asarray(q)
        return np.full(3, self.c[0] * qa[0]), s * qa


def _independent_map(z: Any, x: Any, w: Any, a: Array, b: Any) -> Any:
    return lagrad.tanh(a @ z + w * x + b)


class BlockIndependent:
    """A, b, w, x for B independent blocks; the traced program; the vectorized floor."""

    name = "independent"

    def __init__(self, n_blocks: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        a = rng.standard_normal((n_blocks, 3, 3))
        self.A = a * (0.5 / np.linalg.norm(a, 2, axis=(1, 2)))[:, None, None]
        self.b = 0.1 * rng.standard_normal((n_blocks, 3))
        self.w = rng.uniform(-1.0, 1.0, n_blocks)
        self.x = 0.3
        self.B = n_blocks

    @property
    def inputs(self) -> tuple[Any, ...]:
        return self.x, self.b

    def trace(self) -> lagrad.Program:
        a_all, w_all = self.A, self.w

        def independent(x: Any, b: Any) -> Any:
            total = 0.0
            for k in range(len(a_all)):
                z = lagrad.fixed_point(_independent_map, np.zeros(3), x, w_all[k], a_all[k],
                                       b[k])
                total = total + lagrad.sum(z * z) * (k + 1)
            return total
        return lagrad.trace(independent, self.x, self.b)

    def floor_forward(self) -> Array:
        """All z_k (B, 3), iterating all blocks at once."""
        a = self.A
        shift = self.w[:, None] * self.x + self.b
        z = np.zeros((self.B, 3))
        for _ in range(10_000):
            new = np.tanh(np.matmul(a, z[:, :, None])[:, :, 0] + shift)
            change = np.max(np.abs(new - z))
            z = new
            if change <= TOL * max(1.0, float(np.max(np.abs(z)))):
                return z
        raise RuntimeError("independent blocks floor: forward iteration did not converge")

    def floor(self) -> tuple[float, Array]:
        """(grad_x, grad_b), forward pass included: grad_b_k = D_k M_k^-T g_k
        with M_k = I - D_k A_k and g_k = 2 (k + 1) z_k."""
        z = self.floor_forward()
        dg = 1.0 - z * z
        m = np.eye(3) - dg[:, :, None] * self.A
        g = 2.0 * np.arange(1, self.B + 1)[:, None] * z
        gb = dg * np.linalg.solve(np.swapaxes(m, 1, 2), g[:, :, None])[:, :, 0]
        return float(self.w @ gb.sum(axis=1)), gb


def _global_gmres(program: lagrad.Program, *inputs: Any) -> tuple[Array, ...]:
    """GMRES (scipy) on the whole assembled adjoint system (I - J)^T lambda = e."""
    system = program.solve(*inputs).adjoint_system()
    lam, info = spla.gmres(system.matrix, system.rhs, rtol=TOL, atol=0.0, restart=100,
                           maxiter=200)
    if info != 0:
        raise lagrad.ConvergenceError(f"whole-system GMRES: info {info}")
    return tuple(lam[system.index[v.name]].reshape(v.shape) for v in program.inputs)


COLUMNS = [
    Column("B", "B", fmt_pow10), Column("equations", "eqs"), Column("unknowns", "scalars"),
    Column("method", "method"), Column("build_s", "build s", "{:.2f}"),
    Column("forward_s", "fwd ms", "{:.1f}", 1e3), Column("gradient_s", "grad ms", "{:.1f}", 1e3),
    Column("per_block_us", "grad us/block", "{:.0f}", 1e6),
    Column("grad_over_floor", "grad/floor", "{:.1f}"), Column("error", "err", "{:.0e}"),
]
Problem = BlockChain | BlockIndependent


def _methods(problem: Problem, program: lagrad.Program) -> dict[str, Any]:
    """The other methods timed (name -> (gradient, cost exponent in B))."""
    args = problem.inputs
    methods = {"spsolve (global LU)": (lambda: program.solve(*args).grad(method="spsolve"), 1.5),
               "splu (per block)": (lambda: program.solve(*args).grad(method="splu"), 1.0)}
    if problem.name == "independent":
        return methods
    return {**methods,
            "gmres (per block)": (lambda: program.solve(*args).grad(method="gmres"), 1.0),
            "gmres (whole system)": (lambda: _global_gmres(program, *args), 1.0),
            "dense (whole system)": (lambda: program.solve(*args).grad(method="dense"), 3.0)}


def _rows_for(ctx: Context, problem: Problem, guard: Any, build_guard: Any, notes: list[str]
              ) -> list[dict[str, Any]]:
    n_blocks, args = problem.B, problem.inputs
    mark = "" if problem.name == "chain" else f"{problem.name}: "
    base: dict[str, Any] = {"workload": "blocks", "problem": problem.name, "B": n_blocks}
    ctx.progress(f"blocks: {mark}B={n_blocks}: floor")
    tf = time_calls({"floor_forward": problem.floor_forward, "floor_gradient": problem.floor},
                    ctx.repeats or 1, ctx.comparison_budget)
    ref = tf["floor_gradient"].value
    floor_s = tf["floor_gradient"].median
    rows = [{**base, "method": f"{mark}floor (numpy)", "forward_s": tf["floor_forward"].median,
             "gradient_s": floor_s}]
    skip = build_guard.reason(f"{mark}build", n_blocks)
    if skip:
        notes.append(f"{mark}B={n_blocks}: lagrad skipped, {skip}")
        rows.append({**base, "method": f"{mark}default", "skipped": skip})
        return rows
    ctx.progress(f"blocks: {mark}B={n_blocks}: tracing {n_blocks} fixed points")
    t0 = time.perf_counter()
    program = problem.trace()
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    program.solve(*args).grad()  # compiles the schedule
    first = time.perf_counter() - t0
    build_guard.record(f"{mark}build", n_blocks, build + first, f"B={n_blocks}")
    base.update(equations=len(program.equations),
                unknowns=sum(v.size for v in program.variables))
    ctx.progress(f"blocks: {mark}B={n_blocks}: default settings (first solve + gradient "
                 f"{first:.2f} s)")
    # the floor again, interleaved with lagrad's default: the ratio is of one stretch of time
    t = time_calls({"forward": lambda: program.solve(*args),
                    "gradient": lambda: program.solve(*args).grad(),
                    "floor_gradient": problem.floor},
                   ctx.repeats or 1, ctx.comparison_budget)
    floor_s = t["floor_gradient"].median
    rows[0].update(equations=base["equations"], unknowns=base["unknowns"], gradient_s=floor_s)
    rows.append({**base, "method": f"{mark}default", "build_s": build, "first_s": first,
                 "forward_s": t["forward"].median, "gradient_s": t["gradient"].median,
                 "error": relative_error(t["gradient"].value, ref)})
    for name, (fn, exponent) in _methods(problem, program).items():
        name = f"{mark}{name}"
        if name.startswith("dense") and base["unknowns"] > DENSE_FITS:
            guard.stop(name, f"{base['unknowns']} unknowns > {DENSE_FITS}: does not fit")
        ctx.progress(f"blocks: B={n_blocks}: {name}")
        got = attempt(ctx, guard, name, float(n_blocks) ** exponent, f"B={n_blocks}", fn,
                      beside=lambda: program.solve(*args).grad())
        row = {**base, "method": name, **beside_ratio(got)}
        if got.timing is None:
            row["gradient_s_skipped"] = bool(got.skipped)
            notes.append(f"B={n_blocks} {name}: {got.note}")
        else:
            row.update(gradient_s=got.timing.median, error=relative_error(got.timing.value, ref))
        rows.append(row)
    for row in rows:
        if row.get("gradient_s") is not None:
            row["grad_over_floor"] = row["gradient_s"] / floor_s
            row["per_block_us"] = row["gradient_s"] / n_blocks
    return rows


def _slope(rows: list[dict[str, Any]], method: str, notes: list[str]) -> None:
    """Fit time ~ B^slope over the rows of ``method``; note it and store it in them."""
    default = [(r["B"], r["gradient_s"]) for r in rows
               if r.get("method") == method and r.get("gradient_s")]
    if len(default) < 2:
        return
    bs, ts = np.log([b for b, _ in default]), np.log([t for _, t in default])
    slope = float(np.polyfit(bs, ts, 1)[0])
    notes.append(f"{method} gradient time grows like B^{slope:.2f} over the sizes measured")
    for r in rows:
        if r.get("method") == method:
            r["slope"] = slope


def blocks(ctx: Context) -> list[dict[str, Any]]:
    """Chains of small cyclic blocks: block back-substitution against global solves;
    then B independent blocks with a running total."""
    guard, build_guard = ctx.guard(), ctx.build_guard()
    notes: list[str] = []
    rows = [r for b in ctx.pick(SIZES)
            for r in _rows_for(ctx, BlockChain(b), guard, build_guard, notes)]
    _slope(rows, "default", notes)
    notes += ["z_k = tanh(A_k z_k + c_k sum(z_{k-1}) + b_k), ||A_k|| = 0.5, output "
              "sum_k sum(z_k^2); gradient wrt x and c (includes the forward solve)",
              "build: tracing B lagrad.fixed_point calls; err: against the floor; target "
              "(B = 10^5): default grad <= 0.4 s, linear in B; grad/floor: the floor's "
              "median timed interleaved with the default's"]
    ctx.print(format_table("blocks: a chain of B cyclic blocks of size 3", COLUMNS, rows, notes))
    notes = []
    more = [r for b in ctx.pick(SIZES)
            for r in _rows_for(ctx, BlockIndependent(b), guard, build_guard, notes)]
    _slope(more, "independent: default", notes)
    notes += ["z_k = tanh(A_k z_k + w_k x + b_k), ||A_k|| = 0.5, output "
              "sum_k (k + 1) sum(z_k^2); gradient wrt x and b (includes the forward solve)"]
    ctx.print(format_table("blocks: B independent cyclic blocks of size 3 and a running total",
                           COLUMNS, more, notes))
    return rows + more
