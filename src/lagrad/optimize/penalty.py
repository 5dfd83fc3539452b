"""Relax the constraints: optimize inputs x, intermediate values z and
multipliers lambda jointly, by a quadratic penalty or the augmented
Lagrangian (method of multipliers).

With c(z) = z - f(z) over the defining equations, phi(z) the objective
(the output z_n, or a loss on it) and mu > 0, each outer iteration minimizes
over (x, z) with lambda fixed

    L_mu(z; lambda) = phi(z) - lambda^T c(z) + (mu / 2) ||c(z)||^2,

whose gradient, with A = d c / d z (the rows of I - J) and e = dphi/dz, is

    e - A^T (lambda - mu c(z)):

one product with the program's own (I - J)^T, at the cost of a backward
sweep, and one evaluation of every equation for c. The penalty method keeps
lambda = 0 and grows mu (its multiplier estimate is -mu c); the method of
multipliers updates lambda <- lambda - mu c, which makes that gradient the
Lagrangian's, when the violation fell fast enough, and else grows mu.

The inner minimization (:mod:`lagrad.optimize.inner`) runs L-BFGS-B in
coordinates preconditioned by the program's own I - J, in which the penalty
is well conditioned even along a long chain of equations.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.errors import OptionError
from lagrad.ir.program import Program
from lagrad.numeric import norm2
from lagrad.optimize.inner import minimize_inner
from lagrad.optimize.relaxation import Relaxation
from lagrad.optimize.result import Clock, Iteration, OptimizeResult, make_iteration

__all__ = ["quadratic_penalty", "augmented_lagrangian", "INNER_OPTIONS"]

Array = NDArray[np.float64]
INNER_OPTIONS = {"maxiter": 2000, "maxcor": 50, "gtol": 1e-10, "ftol": 1e-15}
"""Default options of the inner L-BFGS-B minimization over (x, z); ``maxiter``
counts its iterations over all re-linearizations of the preconditioned
coordinates (:data:`lagrad.optimize.inner.RELINEARIZE`). A smaller ``maxcor``
makes each step cheaper on large programs."""
MAX_PENALTY = 1e12
"""mu is not grown past this while redoing a rejected step."""
HOLD = 0.1
"""An inner step whose violation exceeds ``HOLD * max(1, ||z||)`` (z where the
outer iteration started) is rejected: mu was too weak to hold the constraints
against the multiplier term, which can then drive x to where f is flat
(a saturated tanh) and never return. mu is grown and the step redone."""


@dataclass(frozen=True)
class _Settings:
    method: str
    update: bool  # method of multipliers: update lambda
    penalty: float
    growth: float
    maxiter: int
    tol: float
    gtol: float
    inner: Mapping[str, Any]


def _record(rel: Relaxation, k: int, z: Array, lam: Array, mu: float, evaluations: int,
            seconds: float) -> Iteration:
    loss = rel.evaluate(z[rel.x_positions])[1]
    return make_iteration(k, rel.objective(z)[0], loss, rel.kkt(z, lam), mu, seconds,
                          evaluations)


def _run(rel: Relaxation, x0: Any, multipliers: Any, s: _Settings) -> OptimizeResult:
    clock = Clock()
    start, _, exact = rel.multipliers(rel.flat_x(x0))
    z = np.array(start.z, dtype=float)
    if not s.update:
        lam = np.zeros_like(z)
    elif multipliers is None:
        lam = exact  # the exact multipliers at the feasible start
    else:
        lam = np.array(multipliers, dtype=float).ravel()
        if lam.size != z.size:
            raise OptionError(f"multipliers has {lam.size} entries, the program has "
                              f"{z.size} (one per entry of every variable)")
        lam = np.where(rel.defined, lam, 0.0)
    mu, evaluations = s.penalty, 1
    history = [clock.record(partial(_record, rel, 0, z, lam, mu, evaluations))]
    message, success, k, violation = f"{s.maxiter} outer iterations done", False, 0, np.inf
    for k in range(1, s.maxiter + 1):
        before = violation
        z, estimate, mu, violation, evaluations = _outer(rel, z, lam, mu, before, evaluations,
                                                         s)
        settled = violation <= 0.25 * before or not np.isfinite(before)
        if s.update and settled:
            lam = estimate
        history.append(clock.record(partial(_record, rel, k, z, estimate, mu, evaluations)))
        if not np.isfinite(violation):
            message = f"the violation is not finite at iteration {k}: lower the penalty"
            break
        kkt, scale = history[-1], max(1.0, norm2(estimate))
        if violation <= s.tol and max(kkt.dL_dz, kkt.dL_dx) <= s.gtol * scale:
            message = (f"||z - f(z)|| = {violation:.1e} <= tol = {s.tol} and |dL/dz|, "
                       f"|dL/dx| <= gtol max(1, ||lambda||) = {s.gtol * scale:.1e}")
            success = True
            lam = estimate if s.update else lam
            break
        if not (s.update and settled):
            mu *= s.growth
    x = z[rel.x_positions]
    lam_out = lam if s.update else -mu * rel.residual(z)
    return OptimizeResult(rel.unflat_x(x), rel.evaluate(x)[1], success, message, s.method,
                          k, evaluations, z, lam_out, history)


def _outer(rel: Relaxation, z: Array, lam: Array, mu: float, violation: float,
           evaluations: int, s: _Settings) -> tuple[Array, Array, float, float, int]:
    """One outer iteration: minimize L_mu from z (growing mu and redoing the
    step while it breaks the constraints by more than :data:`HOLD`), then
    return the point, the new multiplier estimate, the mu used, the violation."""
    hold = HOLD * max(1.0, norm2(z))
    previous = violation if np.isfinite(violation) else 0.0
    while True:
        final = mu * s.growth > MAX_PENALTY or s.growth == 1  # mu cannot grow
        limit = np.inf if final else max(hold, previous)
        trial, count = minimize_inner(rel, z, lam, mu, s.inner, limit)
        evaluations += count
        c = rel.residual(trial)
        now = norm2(c[rel.defined])
        if now <= limit:
            return trial, (lam - mu * c if s.update else -mu * c), mu, now, evaluations
        mu *= s.growth


def _settings(method: str, update: bool, penalty: float, growth: float, maxiter: int,
              tol: float, gtol: float, inner_options: Mapping[str, Any] | None) -> _Settings:
    if not penalty > 0 or not growth >= 1 or maxiter < 1 or not tol >= 0 or not gtol >= 0:
        raise OptionError(f"penalty={penalty} must be > 0, growth={growth} >= 1, "
                          f"maxiter={maxiter} >= 1, tol={tol} >= 0 and gtol={gtol} >= 0")
    return _Settings(method, update, float(penalty), float(growth), int(maxiter), float(tol),
                     float(gtol), {**INNER_OPTIONS, **(inner_options or {})})


def quadratic_penalty(program: Program, x0: Any, *, fixed: Mapping[str, Any] | None = None,
                      loss: Callable[[Any], Any] | None = None, penalty: float = 1.0,
                      growth: float = 10.0, maxiter: int = 20, tol: float = 1e-6,
                      gtol: float = 1e-5, jacobian: str = "matvec",
                      inner_options: Mapping[str, Any] | None = None) -> OptimizeResult:
    """Minimize the program's output by the quadratic-penalty method.

    The constraints are relaxed: the intermediate values z are free
    variables next to the inputs x, and each outer iteration minimizes
    z_n + (mu / 2) ||z - f(z)||^2 over (x, z) with L-BFGS-B, from the previous
    point, then multiplies mu by ``growth``. The gradient of each inner
    objective is e_n + mu (I - J)^T c(z), from the program's own residuals and
    sparse J; no finite differences.

    Parameters
    ----------
    program : Program
        A program with a scalar output, or any output with ``loss``.
    x0 : array, sequence of arrays, or mapping
        Starting inputs; z starts at the program's values there (feasible).
    fixed : mapping, optional
        Input name -> value of inputs held fixed.
    loss : callable, optional
        The objective as a function of the output, written with lagrad
        operations (traced once, never relaxed): the output's own equation
        is relaxed, the loss is not. Default: the output itself.
    penalty : float
        The first mu.
    growth : float
        Factor on mu after each outer iteration.
    maxiter : int
        Outer iterations.
    tol : float
        Stop when ||z - f(z)|| <= tol and the Lagrangian's gradient at the
        multiplier estimate is <= ``gtol`` (``success``: a KKT point).
    gtol : float
        Bound on ||dL/dz|| and ||dL/dx||, relative to max(1, ||lambda||),
        for ``success``.
    jacobian : {"matvec", "sparse"}
        Products with (I - J)^T in each gradient by VJP sweeps through the
        program's schedule (J's action), or by the assembled sparse J. Either
        way the inner minimization's preconditioner assembles J once per
        :data:`lagrad.optimize.inner.RELINEARIZE` L-BFGS-B steps.
    inner_options : mapping, optional
        Options of the inner ``scipy.optimize.minimize(method="L-BFGS-B")``
        over :data:`INNER_OPTIONS`.

    Returns
    -------
    OptimizeResult
        ``x`` the inputs reached; ``fun`` the output there with the
        constraints satisfied; ``z`` the relaxed values; ``multipliers`` the
        estimate -mu c(z).

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> p = lagrad.trace(lambda x: lagrad.sum((lagrad.exp(x) - 2.0) ** 2), np.zeros(2))
    >>> r = lagrad.optimize.quadratic_penalty(p, np.zeros(2), maxiter=8)
    >>> np.round(np.exp(r.x), 5)
    array([2., 2.])
    """
    rel = Relaxation(program, fixed, jacobian, loss)
    settings = _settings("penalty", False, penalty, growth, maxiter, tol, gtol,
                         inner_options)
    return _run(rel, x0, None, settings)


def augmented_lagrangian(program: Program, x0: Any, *, fixed: Mapping[str, Any] | None = None,
                         loss: Callable[[Any], Any] | None = None, multipliers: Any = None,
                         penalty: float = 1.0, growth: float = 10.0,
                         maxiter: int = 20, tol: float = 1e-6, gtol: float = 1e-5,
                         jacobian: str = "matvec",
                         inner_options: Mapping[str, Any] | None = None) -> OptimizeResult:
    """Minimize the program's output by the augmented Lagrangian (method of multipliers).

    Each outer iteration minimizes
    z_n - lambda^T c(z) + (mu / 2) ||c(z)||^2 over (x, z) with L-BFGS-B
    (c(z) = z - f(z)); if the violation fell by a factor 4 it sets
    lambda <- lambda - mu c(z), otherwise it keeps lambda and grows mu by
    ``growth``. An inner step that breaks the constraints by more than
    :data:`HOLD` is stopped and redone with a larger mu. Unlike the penalty
    method, it converges with mu bounded. The inner L-BFGS-B runs in
    coordinates preconditioned by the program's I - J (assembled, sparse, once
    per :data:`lagrad.optimize.inner.RELINEARIZE` steps), so a long chain of
    equations, such as a control problem over many steps, does not slow it
    down; each gradient is still exact (one product with (I - J)^T at z).

    Parameters
    ----------
    program : Program
        A program with a scalar output.
    x0 : array, sequence of arrays, or mapping
        Starting inputs; z starts at the program's values there (feasible).
    fixed : mapping, optional
        Input name -> value of inputs held fixed.
    loss : callable, optional
        As in :func:`quadratic_penalty`.
    multipliers : array, optional
        Starting lambda, flat over all variables (entries on inputs are
        ignored). Default: the exact multipliers at the start (one adjoint
        solve), with which the first inner gradient in z is zero and in x is
        the loss's gradient.
    penalty, growth, maxiter, tol, gtol, jacobian, inner_options
        As in :func:`quadratic_penalty`.

    Returns
    -------
    OptimizeResult
        ``multipliers`` is the final lambda; at a solution it solves the
        multiplier system (I - J)^T lambda = e_n of the program at ``x``.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> p = lagrad.trace(lambda x: lagrad.sum((lagrad.exp(x) - 2.0) ** 2), np.zeros(2))
    >>> r = lagrad.optimize.augmented_lagrangian(p, np.zeros(2))
    >>> r.success, np.round(np.exp(r.x), 6)
    (True, array([2., 2.]))
    """
    rel = Relaxation(program, fixed, jacobian, loss)
    settings = _settings("augmented_lagrangian", True, penalty, growth, maxiter, tol,
                         gtol, inner_options)
    return _run(rel, x0, multipliers, settings)
