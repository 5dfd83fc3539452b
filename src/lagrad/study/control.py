"""Study ``lqr``: discrete optimal control. The multiplier system of a
rolled-out linear-quadratic regulator is the discrete adjoint (costate)
recursion, and minimizing over the controls reproduces the Riccati solution.

The program: states x_{t+1} = A x_t + B u_t from a given x_0, cost
sum_t (x_t^T Q x_t + u_t^T R u_t) + x_T^T Q_f x_T, input the controls u
(T x m). The multiplier of x_{t+1} is the costate
p_{t+1} = 2 Q x_{t+1} + A^T p_{t+2} (p_T = 2 Q_f x_T) and the gradient is
2 R u_t + B^T p_{t+1}: both are checked against that recursion written in
numpy. The optimal controls u_t = -K_t x_t and cost x_0^T P_0 x_0 come from
the backward Riccati recursion; L-BFGS on the exact gradient and the
augmented Lagrangian over (u, x, lambda) are checked against them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.ir import ops
from lagrad.ir.program import Program, Variable
from lagrad.ir.trace import trace
from lagrad.optimize import augmented_lagrangian, lbfgs, plot, quadratic_penalty

__all__ = ["LQR", "make_lqr", "costates", "riccati", "lqr_study"]

Array = NDArray[np.float64]


@dataclass(frozen=True)
class LQR:
    """A discrete LQR problem, traced; ``states`` are the program's x_1..x_T."""

    A: Array  # noqa: N815 (the control literature's names)
    B: Array  # noqa: N815
    Q: Array  # noqa: N815
    R: Array  # noqa: N815
    Qf: Array  # noqa: N815
    x0: Array
    horizon: int
    program: Program
    states: tuple[Variable, ...]


def make_lqr(n: int = 2, m: int = 1, horizon: int = 20) -> LQR:
    """A damped oscillator (n = 2: position, velocity) pushed by m forces."""
    dt = 0.1
    a = np.eye(n)
    a[0, 1:] = dt
    a[1:, 0] = -dt
    a *= 0.99
    b = np.zeros((n, m))
    b[-1, :] = dt
    q, r, qf = np.eye(n), 0.1 * np.eye(m), 10.0 * np.eye(n)
    x0 = np.ones(n)
    states: list[Variable] = []

    def cost(u: Any) -> Any:
        x = x0
        for t in range(horizon):
            x = a @ x + b @ u[t]
            states.append(x)
        xs = ops.stack(states[:-1])  # x_1..x_(T-1); x_0 is a constant
        running = ops.sum(xs * (xs @ q)) + ops.sum(u * (u @ r)) + float(x0 @ q @ x0)
        return running + x @ (qf @ x)
    program = trace(cost, np.zeros((horizon, m)))
    return LQR(a, b, q, r, qf, x0, horizon, program, tuple(states))


def rollout(p: LQR, u: Array) -> Array:
    """States x_0..x_T under controls u."""
    xs = [p.x0]
    for t in range(p.horizon):
        xs.append(p.A @ xs[-1] + p.B @ u[t])
    return np.array(xs)


def costates(p: LQR, u: Array) -> tuple[Array, Array]:
    """The discrete adjoint, in numpy: costates p_1..p_T and the gradient in u."""
    xs = rollout(p, u)
    lam = [2 * p.Qf @ xs[-1]]
    grad = np.zeros_like(u)
    for t in range(p.horizon - 1, -1, -1):
        grad[t] = 2 * p.R @ u[t] + p.B.T @ lam[0]
        if t:
            lam.insert(0, 2 * p.Q @ xs[t] + p.A.T @ lam[0])
    return np.array(lam), grad


def riccati(p: LQR) -> tuple[Array, float]:
    """Optimal controls by the backward Riccati recursion, and the optimal cost."""
    s = p.Qf
    gains = []
    for _ in range(p.horizon):
        k = np.linalg.solve(p.R + p.B.T @ s @ p.B, p.B.T @ s @ p.A)
        s = p.Q + p.A.T @ s @ (p.A - p.B @ k)
        gains.insert(0, k)
    x, u = p.x0, []
    for k in gains:
        u.append(-k @ x)
        x = p.A @ x + p.B @ u[-1]
    return np.array(u), float(p.x0 @ s @ p.x0)


def lqr_study(write: Callable[[str], Any] = print, small: bool = False,
              plot_dir: str | None = None) -> dict[str, Any]:
    """The LQR: multipliers against costates, optimizers against Riccati.
    With ``plot_dir``, write ``lqr_convergence.png``."""
    p = make_lqr(horizon=4 if small else 30)
    write(f"== lqr: a discrete linear-quadratic regulator, n = {p.A.shape[0]}, "
          f"m = {p.B.shape[1]}, T = {p.horizon}")
    rng = np.random.default_rng(0)
    u = rng.standard_normal((p.horizon, p.B.shape[1]))
    sol = p.program.solve(u)
    lam = sol.multipliers()
    ref_lam, ref_grad = costates(p, u)
    ours = np.array([lam[x] for x in p.states])
    costate_error = float(np.max(np.abs(ours - ref_lam)) / np.max(np.abs(ref_lam)))
    grad_error = float(np.max(np.abs(sol.grad() - ref_grad)) / np.max(np.abs(ref_grad)))
    write(f"  multipliers of x_1..x_T vs the costate recursion: {costate_error:.1e} "
          "(max relative)")
    write(f"  gradient in u vs 2 R u_t + B^T p_(t+1):            {grad_error:.1e}")
    u_star, cost_star = riccati(p)
    write(f"  Riccati: optimal cost {cost_star:.10g}")
    zero = np.zeros_like(u)
    runs = [lbfgs(p.program, zero, gtol=1e-10, options={"ftol": 1e-15}),
            quadratic_penalty(p.program, zero, penalty=100.0),
            augmented_lagrangian(p.program, zero)]
    write("  minimizing over u from u = 0 (the relaxed methods over u, the states and every "
          "intermediate;\n  penalty: mu0 = 100; augmented Lagrangian: its defaults, mu0 = 1 "
          "and lambda from the exact multipliers):")
    write(f"  {'method':<22} {'cost':>14} {'cost/opt-1':>10} {'|u - u*|':>10} {'iters':>6} "
          f"{'evals':>6} {'seconds':>8}")
    rows = []
    for r in runs:
        err = float(np.max(np.abs(r.x - u_star)))
        gap = r.fun / cost_star - 1
        rows.append({"method": r.method, "cost": r.fun, "gap": gap, "u_error": err, "result": r})
        write(f"  {r.method:<22} {r.fun:14.10g} {gap:10.1e} {err:10.1e} {r.nit:>6} "
              f"{r.nfev:>6} {r.history[-1].seconds:8.3f}")
    paths = []
    if plot_dir is not None:
        path = f"{plot_dir}/lqr_convergence.png"
        plot(runs, xaxis="evaluations", path=path,
             title=f"LQR, T = {p.horizon}: convergence of the three methods")
        paths.append(path)
    return {"horizon": p.horizon, "costate_error": costate_error, "gradient_error": grad_error,
            "riccati_cost": cost_star, "riccati_u": u_star, "rows": rows, "paths": paths}
