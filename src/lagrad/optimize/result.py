"""What an optimizer returns: the point reached and its per-iteration history."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.optimize.relaxation import KKTNorms

__all__ = ["Iteration", "OptimizeResult", "Clock", "format_history"]

Array = NDArray[np.float64]


@dataclass(frozen=True)
class Iteration:
    """One line of an optimizer's history.

    Attributes
    ----------
    iteration : int
        0 is the starting point.
    objective : float
        The output z_n at the iterate (for the penalty and augmented-Lagrangian
        methods, at the relaxed z, which need not satisfy the constraints).
    loss : float
        The program's output at the iterate's inputs x, with every constraint
        satisfied (a forward solve): the value the methods are compared on.
    violation : float
        ||z - f(z)||, the constraint violation (= ||dL/dlambda||).
    dL_dz : float
        ||e_n - (I - J)^T lambda|| over the defined variables: the residual of
        the multiplier equations at the current multiplier estimate.
    dL_dx : float
        The same over the optimized inputs (the gradient of the Lagrangian in x).
    penalty : float
        The penalty weight mu (0 for the gradient methods).
    seconds : float
        Wall time spent by the method up to this iterate (the monitoring that
        fills this record is not counted).
    evaluations : int
        Evaluations of the objective (and its gradient) so far.
    """

    iteration: int
    objective: float
    loss: float
    violation: float
    dL_dz: float  # noqa: N815 (the maths' name)
    dL_dx: float  # noqa: N815
    penalty: float
    seconds: float
    evaluations: int


@dataclass
class OptimizeResult:
    """The result of an optimizer of :mod:`lagrad.optimize`.

    Attributes
    ----------
    x : ndarray or tuple of ndarray
        The optimized inputs (one array for one input, else a tuple).
    fun : float
        The program's output at ``x`` with every constraint satisfied.
    success : bool
        Whether the stopping test was met (see ``message``).
    message : str
    method : str
    nit : int
        Iterations done (outer iterations for the penalty methods).
    nfev : int
        Evaluations of the objective and its gradient.
    z : ndarray
        The final flat vector of all variables (relaxed for the penalty methods).
    multipliers : ndarray
        The final multiplier estimate lambda (flat, zero on the inputs).
    history : list of Iteration
    """

    x: Any
    fun: float
    success: bool
    message: str
    method: str
    nit: int
    nfev: int
    z: Array
    multipliers: Array
    history: list[Iteration] = field(default_factory=list)

    def column(self, name: str) -> Array:
        """One field of the history as an array (``result.column("loss")``)."""
        return np.array([getattr(it, name) for it in self.history], dtype=float)

    def __repr__(self) -> str:
        return (f"<OptimizeResult {self.method}: fun={self.fun:.6g}, success={self.success}, "
                f"nit={self.nit}, nfev={self.nfev}>")


class Clock:
    """Wall time of a method with the monitoring left out: ``pause()``
    returns a context in which time does not count."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.paused = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start - self.paused

    def record(self, fill: Callable[[float], Iteration]) -> Iteration:
        """``fill(elapsed)`` with its own running time not counted."""
        now = self.elapsed()
        t0 = time.perf_counter()
        item = fill(now)
        self.paused += time.perf_counter() - t0
        return item


def make_iteration(k: int, objective: float, loss: float, norms: KKTNorms, penalty: float,
                   seconds: float, evaluations: int) -> Iteration:
    return Iteration(k, float(objective), float(loss), norms.violation, norms.dL_dz,
                     norms.dL_dx, float(penalty), seconds, evaluations)


def format_history(result: OptimizeResult, every: int = 1) -> str:
    """The history as a text table (one line per ``every`` iterations, and the last)."""
    lines = [f"{result.method}: {result.message}",
             f"  {'it':>4} {'objective':>11} {'loss':>11} {'||z-f(z)||':>10} "
             f"{'|dL/dz|':>9} {'|dL/dx|':>9} {'mu':>8} {'s':>7}"]
    rows = result.history
    for k, it in enumerate(rows):
        if k % every and k != len(rows) - 1:
            continue
        lines.append(f"  {it.iteration:>4} {it.objective:11.5g} {it.loss:11.5g} "
                     f"{it.violation:10.2e} {it.dL_dz:9.2e} {it.dL_dx:9.2e} "
                     f"{it.penalty:8.1e} {it.seconds:7.3f}")
    return "\n".join(lines)
