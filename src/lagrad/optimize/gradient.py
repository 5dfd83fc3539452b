"""Descent on the exact gradient: every iterate satisfies the constraints (a
forward solve) and its gradient is read off the multipliers (one adjoint solve
of the program's multiplier system)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import numpy as np
import scipy.optimize
from numpy.typing import NDArray

from lagrad.errors import OptionError
from lagrad.ir.program import Program
from lagrad.numeric import norm2
from lagrad.optimize.relaxation import Relaxation
from lagrad.optimize.result import Clock, Iteration, OptimizeResult, make_iteration
from lagrad.solve.solution import Solution

__all__ = ["gradient_descent", "lbfgs"]

Array = NDArray[np.float64]
Fixed = Mapping[str, Any] | Callable[[int], Mapping[str, Any]]


def _relaxation(program: Program, fixed: Fixed | None, jacobian: str,
                loss: Callable[[Any], Any] | None
                ) -> tuple[Relaxation, Callable[[int], Mapping[str, Any] | None]]:
    if callable(fixed):
        return Relaxation(program, fixed(0), jacobian, loss), fixed
    return Relaxation(program, fixed, jacobian, loss), lambda k: None


def _gradient(rel: Relaxation, flat_x: Array, fixed: Mapping[str, Any] | None = None
              ) -> tuple[Solution, float, Array, Array]:
    """The solution at x, the objective, the multipliers (zero on the inputs)
    and the gradient in x (the inputs' multipliers)."""
    sol, value, lam = rel.evaluate(flat_x, fixed)
    grad = lam[rel.x_positions].copy()
    lam[~rel.defined] = 0.0
    return sol, value, lam, grad


def _record(rel: Relaxation, k: int, sol: Solution, value: float, lam: Array,
            evaluations: int, seconds: float) -> Iteration:
    return make_iteration(k, value, value, rel.kkt(sol.z, lam), 0.0, seconds, evaluations)


def gradient_descent(program: Program, x0: Any, *, fixed: Fixed | None = None,
                     loss: Callable[[Any], Any] | None = None, learning_rate: float = 0.1,
                     momentum: float = 0.0, maxiter: int = 100, gtol: float = 1e-6,
                     jacobian: str = "matvec") -> OptimizeResult:
    """Minimize the program's output in its inputs by (stochastic) gradient descent.

    Each step solves the program at x (the constraints hold exactly), solves
    the multiplier system for lambda, and moves x along -lambda_x (the exact
    gradient), with heavy-ball ``momentum``.

    Parameters
    ----------
    program : Program
        A program with a scalar output (the objective), or any output with ``loss``.
    x0 : array, sequence of arrays, or mapping
        Starting values of the optimized inputs (every input not in ``fixed``).
    fixed : mapping or callable, optional
        Input name -> value of the inputs held fixed (data). A callable
        ``fixed(k)`` gives them at step k: minibatches, for stochastic
        gradient descent (``fun`` is then reported at ``fixed(0)``).
    loss : callable, optional
        The objective as a function of the output, written with lagrad
        operations (traced once); default: the output itself.
    learning_rate, momentum : float
        The step x <- x - learning_rate * v, with v <- momentum * v + gradient.
    maxiter : int
        Number of steps.
    gtol : float
        Stop when ||gradient|| <= gtol.
    jacobian : {"matvec", "sparse"}
        How the KKT norms of the history form products with J: VJP sweeps,
        or the assembled sparse J.

    Returns
    -------
    OptimizeResult
        ``success`` is True when the gradient norm fell below ``gtol``, or
        when all ``maxiter`` steps were taken with finite losses and the
        loss did not end above where it started (at ``fixed(0)``: a
        learning rate too large for the problem diverges).

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> p = lagrad.trace(lambda x: lagrad.sum((x - 3.0) ** 2), np.zeros(2))
    >>> r = lagrad.optimize.gradient_descent(p, np.zeros(2), learning_rate=0.25, maxiter=50)
    >>> np.round(r.x, 6)
    array([3., 3.])
    """
    if learning_rate <= 0 or not 0 <= momentum < 1 or maxiter < 1:
        raise OptionError(f"learning_rate={learning_rate} must be > 0, momentum={momentum} in "
                          f"[0, 1), maxiter={maxiter} >= 1")
    rel, batch = _relaxation(program, fixed, jacobian, loss)
    clock = Clock()
    x = rel.flat_x(x0)
    velocity = np.zeros_like(x)
    history: list[Iteration] = []
    message, success, k = f"{maxiter} steps taken", True, 0
    for k in range(maxiter + 1):
        sol, value, lam, grad = _gradient(rel, x, batch(k))
        history.append(clock.record(partial(_record, rel, k, sol, value, lam, k + 1)))
        if not np.isfinite(history[-1].loss):
            message, success = f"the loss is not finite at step {k}: lower learning_rate", False
            break
        if norm2(grad) <= gtol:
            message = f"||gradient|| <= gtol = {gtol} at step {k}"
            break
        if k == maxiter:
            break
        velocity = momentum * velocity + grad
        x = x - learning_rate * velocity
    final, value, lam = rel.multipliers(x)
    start = history[0].loss  # at x0 and fixed(0), as ``value`` is at x and fixed(0)
    if success and not value <= start:  # (NaN too)
        message, success = (f"the loss grew from {start:.6g} to {value:.6g} over {k} steps: "
                            "lower learning_rate"), False
    return OptimizeResult(rel.unflat_x(x), value, success, message, "gradient_descent", k,
                          k + 1, final.z, lam, history)


def lbfgs(program: Program, x0: Any, *, fixed: Mapping[str, Any] | None = None,
          loss: Callable[[Any], Any] | None = None, maxiter: int = 200, gtol: float = 1e-6,
          jacobian: str = "matvec", options: Mapping[str, Any] | None = None
          ) -> OptimizeResult:
    """Minimize the program's output with scipy's L-BFGS-B on the exact gradient.

    Every function evaluation is a forward solve (the constraints hold) and
    the gradient is the multipliers of the inputs (one adjoint solve).

    Parameters
    ----------
    program : Program
        A program with a scalar output, or any output with ``loss``.
    x0 : array, sequence of arrays, or mapping
        Starting values of the optimized inputs.
    fixed : mapping, optional
        Input name -> value of the inputs held fixed.
    loss : callable, optional
        The objective as a function of the output (see :func:`gradient_descent`).
    maxiter : int
        Iteration limit of L-BFGS-B.
    gtol : float
        Projected-gradient tolerance of L-BFGS-B.
    jacobian : {"matvec", "sparse"}
        How the KKT norms of the history form products with J: VJP sweeps,
        or the assembled sparse J.
    options : mapping, optional
        More options for ``scipy.optimize.minimize(method="L-BFGS-B")``.

    Returns
    -------
    OptimizeResult
        ``success`` and ``message`` are scipy's.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> p = lagrad.trace(lambda x: lagrad.sum((x - 3.0) ** 2) + x[0] * x[1], np.zeros(2))
    >>> r = lagrad.optimize.lbfgs(p, np.zeros(2))
    >>> np.round(r.x, 6)  # 2 (x - 3) + (x1, x0) = 0
    array([2., 2.])
    """
    rel = Relaxation(program, fixed, jacobian, loss)
    clock = Clock()
    last: dict[str, Any] = {}
    history: list[Iteration] = []
    count = [0]

    def fun(x: Array) -> tuple[float, Array]:
        count[0] += 1
        sol, value, lam, grad = _gradient(rel, x)
        last.update(x=x.copy(), sol=sol, value=value, lam=lam)
        return value, grad

    def record(x: Array) -> None:
        def fill(t: float) -> Iteration:
            if "x" not in last or not np.array_equal(last["x"], x):
                fun(x)
                count[0] -= 1  # monitoring, not the method's
            return _record(rel, len(history), last["sol"], last["value"], last["lam"],
                           count[0], t)
        history.append(clock.record(fill))

    start = rel.flat_x(x0)
    record(start)
    opts = {"maxiter": maxiter, "gtol": gtol, **(options or {})}
    res = scipy.optimize.minimize(fun, start, jac=True, method="L-BFGS-B", callback=record,
                                  options=opts)
    final, value, lam = rel.multipliers(res.x)
    return OptimizeResult(rel.unflat_x(res.x), value, bool(res.success), str(res.message),
                          "lbfgs", int(res.nit), count[0], final.z, lam, history)
