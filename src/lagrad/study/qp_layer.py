"""Study ``qp_layer``: an equality-constrained quadratic program as a layer.

The layer maps (P, q, A, b) to y* = argmin_y 1/2 y^T P y + q^T y subject to
A y = b. As in cvxpylayers and qpth, y* is defined by its KKT system

    K w = r,   K = [[P, A^T], [A, 0]],   w = (y, nu),   r = (-q, b),

written here as one ``lagrad.root`` constraint: a cyclic block whose
multipliers (the implicit function theorem) give the gradient of a loss on
y*. The closed form: with g = dloss/dy and (a, beta) = K^-1 (g, 0),
dloss/dq = -a, dloss/db = beta, dloss/dP = -a y^T, dloss/dA = -(beta y^T + nu a^T).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.ir import ops
from lagrad.ir.implicit import root
from lagrad.ir.program import Program
from lagrad.ir.trace import trace
from lagrad.optimize import lbfgs

__all__ = ["qp_problem", "qp_program", "closed_form_gradient", "qp_layer_study"]

Array = NDArray[np.float64]


def qp_problem(n: int = 5, m: int = 2, seed: int = 0) -> dict[str, Array]:
    """A random strictly convex QP (P positive definite, A of full row rank)
    and a target for the loss 1/2 ||y* - target||^2."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((n, n))
    return {"P": g @ g.T / n + np.eye(n), "q": rng.standard_normal(n),
            "A": rng.standard_normal((m, n)), "b": rng.standard_normal(m),
            "target": rng.standard_normal(n)}


def _kkt_residual(w: Any, p: Any, q: Any, a: Any, b: Any) -> Any:
    n = q.shape[0]
    y, nu = w[:n], w[n:]
    return ops.concatenate([p @ y + a.T @ nu + q, a @ y - b])


def qp_program(problem: dict[str, Array]) -> Program:
    """loss(P, q, A, b) = 1/2 ||y*(P, q, A, b) - target||^2, y* by a root constraint."""
    n, m = problem["q"].size, problem["b"].size
    target = problem["target"]

    def loss(p: Any, q: Any, a: Any, b: Any) -> Any:
        w = root(_kkt_residual, np.zeros(n + m), p, q, a, b, method="newton")
        r = w[:n] - target
        return 0.5 * ops.sum(r * r)
    return trace(loss, problem["P"], problem["q"], problem["A"], problem["b"])


def closed_form_gradient(problem: dict[str, Array]) -> dict[str, Array]:
    """The gradient of the loss in (P, q, A, b) from the KKT matrix, in numpy."""
    p, q, a, b = (problem[k] for k in ("P", "q", "A", "b"))
    n, m = q.size, b.size
    k = np.block([[p, a.T], [a, np.zeros((m, m))]])
    w = np.linalg.solve(k, np.concatenate([-q, b]))
    y, nu = w[:n], w[n:]
    d = np.linalg.solve(k.T, np.concatenate([y - problem["target"], np.zeros(m)]))
    da, beta = d[:n], d[n:]
    return {"P": -np.outer(da, y), "q": -da, "A": -(np.outer(beta, y) + np.outer(nu, da)),
            "b": beta, "y": y}


def qp_layer_study(write: Callable[[str], Any] = print, small: bool = False,
                   plot_dir: str | None = None) -> dict[str, Any]:
    """The QP layer's gradient against the closed form, and q learned so that
    the layer's output hits a feasible target."""
    problem = qp_problem()
    n, m = problem["q"].size, problem["b"].size
    write(f"== qp_layer: argmin of an equality-constrained QP (n = {n}, m = {m}) as a layer, "
          "through its KKT system")
    program = qp_program(problem)
    args = [problem[k] for k in ("P", "q", "A", "b")]
    sol = program.solve(*args)
    grads = dict(zip(("P", "q", "A", "b"), sol.grad()))
    ref = closed_form_gradient(problem)
    errors = {k: float(np.max(np.abs(grads[k] - ref[k])) / np.max(np.abs(ref[k])))
              for k in grads}
    blocks = [b for b in program.blocks if b.cyclic]
    write(f"  the KKT solve is {len(blocks)} cyclic block of {blocks[0].size} entries; its "
          "multipliers solve K^T lambda = (dloss/dy, 0)")
    for k, e in errors.items():
        write(f"  dloss/d{k:<2} vs closed form: {e:.1e} (max relative)")
    # learn q: with a target satisfying A target = b, the loss can reach 0
    feasible = problem["target"] - np.linalg.pinv(problem["A"]) @ (
        problem["A"] @ problem["target"] - problem["b"])
    learn = qp_program({**problem, "target": feasible})
    fixed = {v.name: problem[k] for v, k in zip(learn.inputs, ("P", "q", "A", "b"))
             if k != "q"}
    res = lbfgs(learn, np.zeros(n), fixed=fixed, gtol=1e-12, options={"ftol": 1e-16})
    write(f"  learning q so that y* = a feasible target (L-BFGS on the exact gradient): "
          f"loss {res.fun:.1e} after {res.nit} iterations")
    return {"errors": errors, "gradient": grads, "reference": ref, "learned": res,
            "paths": []}
