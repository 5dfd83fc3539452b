"""Workload ``jacobian``: a Jacobian with many rows against one gradient.

A Jacobian with k rows is k adjoint solves with one matrix; lagrad solves
them in one sweep with a block of k seeds (the products become matrix-matrix
products, a cyclic block is factorized or iterated once for all k). Two
problems, each a function f of an input x with k outputs and a scalar loss
of the same computation:

* mlp: a tanh MLP (784-256-256-k at the quick sizes) on one example; f(x)
  its k outputs, the loss the softmax cross-entropy for one label; the
  Jacobian d outputs / d input (k x 784) as for a saliency map;
* deq: the deep-equilibrium layer of the ``deq`` workload, z = tanh(W z +
  U x + b) (N = 1000, x of size 50); f(x) = z[:k], the loss sum(z^2).

Timed, interleaved in one run: ``grad(loss)(x)`` (one gradient),
``jacrev(f)(x)`` (the Jacobian, one sweep with k seeds) and the Jacobian row
by row (the forward solve, then k single-seed adjoint solves of the default
method: what ``jacrev`` cost before). Both functions are ``lagrad.jit``-ed,
so no call retraces. ``jac/grad`` is the ratio the target bounds; ``err`` is
the one-sweep Jacobian against the row-by-row one (max abs difference over
max abs), ``fd err`` against central differences along three random
directions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

import lagrad
from lagrad.solve.linsolve import solve_system

from .core import Column, Context, format_table, relative_error, time_calls
from .deq import DeqProblem
from .mlp import make_mlp

__all__ = ["jacobian", "SIZES", "JacobianProblem", "mlp_problem", "deq_problem"]

Array = NDArray[np.float64]
SIZES: dict[str, list[tuple[str, Any, int]]] = {
    "tiny": [("mlp", (64, 32, 32), 20), ("deq", 30, 10)],
    "quick": [("mlp", (784, 256, 256), 100), ("deq", 1000, 100)],
    "full": [("mlp", (784, 256, 256), 100), ("deq", 1000, 100), ("deq", 3000, 100)]}
TARGET = 10.0  # a Jacobian with 100 rows costs at most this many gradients


class JacobianProblem:
    """f (k outputs) and a scalar loss of one input x, with their labels; the
    arrays they are made of (for other libraries) and a dense reference."""

    def __init__(self, name: str, label: str, f: Callable[[Any], Any],
                 loss: Callable[[Any], Any], x: Array, arrays: dict[str, Any],
                 reference: Callable[[], Array]) -> None:
        self.name, self.label, self.f, self.loss, self.x = name, label, f, loss, x
        self.arrays, self._reference = arrays, reference

    def reference(self) -> Array:
        """The Jacobian in closed form with numpy (deq: a dense LU)."""
        return self._reference()

    def row_by_row(self, program: lagrad.Program) -> Array:
        """The Jacobian by k single-seed adjoint solves (the default method)."""
        sol = program.solve(self.x)
        out = program.output_variable
        index = sol.schedule.index
        inputs = index[sol.schedule.inputs[0]]
        rows = np.empty((out.size, self.x.size))
        for k in range(out.size):
            seed = np.zeros(out.size)
            seed[k] = 1.0
            system = sol.adjoint_system(seed.reshape(out.shape))
            rows[k] = solve_system(system, compute_residual=False).x[inputs]
        return rows

    def fd_error(self, jac: Array, seed: int = 0) -> float:
        """Relative error of jac v against central differences, 3 directions."""
        rng = np.random.default_rng(seed)
        f = lagrad.jit(self.f)
        worst = 0.0
        for _ in range(3):
            v = rng.standard_normal(self.x.size)
            h = 1e-6
            fd = (np.asarray(f(self.x + h * v)) - np.asarray(f(self.x - h * v))) / (2 * h)
            worst = max(worst, relative_error(jac @ v, fd))
        return worst


def mlp_problem(hidden: tuple[int, ...], k: int) -> JacobianProblem:
    """A tanh MLP hidden[0]-...-k on one example."""
    data, labels, params = make_mlp(tuple(hidden) + (k,), 1)
    x, y = data[0], labels[0]

    def f(x: Any) -> Any:
        h = x
        n = len(params) // 2
        for j in range(n):
            h = h @ params[2 * j] + params[2 * j + 1]
            if j < n - 1:
                h = lagrad.tanh(h)
        return h

    def loss(x: Any) -> Any:
        h = f(x)
        return -lagrad.sum(y * (h - lagrad.logsumexp(h)))

    def reference() -> Array:  # W_L^T D_{L-1} ... D_1 W_1^T, D = diag(1 - h^2)
        h, jac = x, np.eye(x.size)
        for j in range(len(params) // 2):
            a = h @ params[2 * j] + params[2 * j + 1]
            jac = params[2 * j].T @ jac
            if j < len(params) // 2 - 1:
                h = np.tanh(a)
                jac = (1.0 - h * h)[:, None] * jac
        return jac
    return JacobianProblem("mlp", "-".join(map(str, tuple(hidden) + (k,))), f, loss, x,
                           {"params": params, "k": k}, reference)


def deq_problem(n: int, k: int) -> JacobianProblem:
    """The DEQ layer of size n; f(x) = z[:k], loss sum(z^2)."""
    p = DeqProblem(n)
    w, u, b = p.W, p.U, p.b

    def z_of(x: Any) -> Any:
        return lagrad.fixed_point(lambda z, x: lagrad.tanh(w @ z + u @ x + b), np.zeros(n), x)
    def reference() -> Array:  # dz/dx = (I - D W)^-1 D U at the fixed point
        z = np.zeros(n)
        a = u @ p.x + b
        for _ in range(10_000):
            new = np.tanh(w @ z + a)
            done = np.linalg.norm(new - z) <= 1e-15 * max(1.0, np.linalg.norm(new))
            z = new
            if done:
                break
        d = 1.0 - z * z
        return np.linalg.solve(np.eye(n) - d[:, None] * w, d[:, None] * u)[:k]
    return JacobianProblem("deq", f"N={n}", lambda x: z_of(x)[:k],
                           lambda x: lagrad.sum(z_of(x) ** 2), p.x,
                           {"W": w, "U": u, "b": b, "n": n, "k": k}, reference)


COLUMNS = [
    Column("problem", "problem"), Column("label", "size"), Column("rows", "rows"),
    Column("inputs", "inputs"), Column("gradient_s", "grad ms", "{:.2f}", 1e3),
    Column("jacobian_s", "jac ms", "{:.2f}", 1e3),
    Column("row_by_row_s", "row by row ms", "{:.1f}", 1e3),
    Column("jac_over_grad", "jac/grad", "{:.2f}"),
    Column("speedup", "row by row/jac", "{:.1f}"),
    Column("error", "err", "{:.0e}"), Column("fd_error", "fd err", "{:.0e}"),
]


def _row(ctx: Context, problem: JacobianProblem, k: int) -> list[dict[str, Any]]:
    ctx.progress(f"jacobian: {problem.name} {problem.label}, {k} rows")
    jac_fn = lagrad.jacrev(lagrad.jit(problem.f))
    grad_fn = lagrad.grad(lagrad.jit(problem.loss))
    program = lagrad.trace(problem.f, problem.x)
    x = problem.x
    t = time_calls({"gradient": lambda: grad_fn(x), "jacobian": lambda: jac_fn(x),
                    "row_by_row": lambda: problem.row_by_row(program)},
                   ctx.repeats or 1, ctx.comparison_budget)
    jac = np.asarray(t["jacobian"].value)
    row: dict[str, Any] = {"workload": "jacobian", "problem": problem.name,
                           "label": problem.label, "rows": k, "inputs": x.size,
                           "repeats": t["jacobian"].repeats}
    row.update({f"{name}_s": timing.median for name, timing in t.items()})
    row["jac_over_grad"] = row["jacobian_s"] / row["gradient_s"]
    row["speedup"] = row["row_by_row_s"] / row["jacobian_s"]
    row["error"] = relative_error(jac, t["row_by_row"].value)
    row["fd_error"] = problem.fd_error(jac)
    # one row per timed call too, for the plot (one series per method)
    per_method = [{"workload": "jacobian", "problem": problem.name, "rows": k,
                   "method": f"{problem.name} {problem.label}: {name.replace('_', ' ')}",
                   "seconds": row[f"{name}_s"]} for name in t]
    return [row] + per_method


def jacobian(ctx: Context) -> list[dict[str, Any]]:
    """Jacobians of k rows (one multi-seed sweep) against one gradient."""
    rows: list[dict[str, Any]] = []
    for name, size, k in ctx.pick(SIZES):
        problem = mlp_problem(size, k) if name == "mlp" else deq_problem(size, k)
        rows += _row(ctx, problem, k)
    notes = ["grad: grad(loss)(x); jac: jacrev(f)(x), one sweep with a seed per row; row by "
             "row: forward solve + one default adjoint solve per row; all jit-ed, interleaved",
             "err: jac vs row by row; fd err: jac v vs central differences (3 directions)",
             f"target: jac/grad <= {TARGET:g} with 100 rows (mlp and deq)"]
    table = [r for r in rows if "method" not in r]
    ctx.print(format_table("jacobian: k rows in one sweep against one gradient", COLUMNS,
                           table, notes))
    return rows
