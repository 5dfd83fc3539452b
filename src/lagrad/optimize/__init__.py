"""Optimizing the Lagrangian: minimize a program's output in its inputs.

A program is a set of constraints z = f(z) with multipliers lambda, so
descent on the exact gradient is one algorithm among those of constrained
optimization. :func:`gradient_descent` and :func:`lbfgs` keep every constraint
satisfied and read the gradient off the multipliers;
:func:`quadratic_penalty` and :func:`augmented_lagrangian` relax the
constraints and optimize the inputs x, the intermediate values z and the
multipliers lambda jointly, each step using the program's own residuals
z - f(z) and sparse J. Every method returns an :class:`OptimizeResult` with a
per-iteration history (objective, constraint violation, KKT residuals), and
:func:`plot` draws it.
"""

from collections.abc import Callable
from typing import Any

from lagrad.errors import OptionError
from lagrad.ir.program import Program
from lagrad.optimize.gradient import gradient_descent, lbfgs
from lagrad.optimize.penalty import INNER_OPTIONS, augmented_lagrangian, quadratic_penalty
from lagrad.optimize.plot import plot
from lagrad.optimize.relaxation import KKTNorms, Relaxation
from lagrad.optimize.result import Iteration, OptimizeResult, format_history

METHODS: dict[str, Callable[..., OptimizeResult]] = {
    "gradient_descent": gradient_descent,
    "lbfgs": lbfgs,
    "penalty": quadratic_penalty,
    "augmented_lagrangian": augmented_lagrangian,
}
"""Method name -> optimizer (``minimize(method=...)``)."""


def minimize(program: Program, x0: Any, *, method: str = "lbfgs",
             **options: Any) -> OptimizeResult:
    """Minimize a program's scalar output in its inputs by ``method``.

    Parameters
    ----------
    program : Program
        A program with a scalar output.
    x0 : array, sequence of arrays, or mapping
        Starting values of the optimized inputs.
    method : {"lbfgs", "gradient_descent", "penalty", "augmented_lagrangian"}
    **options
        The chosen function's keyword options (``fixed``, ``maxiter``, ...).

    Returns
    -------
    OptimizeResult

    Raises
    ------
    OptionError
        ``method`` is not one of :data:`METHODS`.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> p = lagrad.trace(lambda x: lagrad.sum((x - 1.0) ** 2), np.zeros(3))
    >>> r = lagrad.optimize.minimize(p, np.zeros(3), method="augmented_lagrangian")
    >>> r.success, np.round(r.x, 6)
    (True, array([1., 1., 1.]))
    """
    if method not in METHODS:
        raise OptionError(f"method={method!r}; choose one of {list(METHODS)}")
    return METHODS[method](program, x0, **options)


__all__ = ["minimize", "METHODS", "gradient_descent", "lbfgs", "quadratic_penalty",
           "augmented_lagrangian", "OptimizeResult", "Iteration", "KKTNorms", "Relaxation",
           "plot", "format_history", "INNER_OPTIONS"]
