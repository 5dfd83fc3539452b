"""The Neumann series of a cyclic block's reduced adjoint, products in place.

The reduced adjoint of a contracting block, (I - A) x = c with A = dG/dz_U^T,
is solved by x <- c + A x (see :mod:`lagrad.solve.blocksolve`, method
"fixed_point"). On a DEQ layer of width 1000 a product with A is one product
with W^T (about 0.1 ms), so every numpy call around it counts: here the
product is a closure bound once per solve that leaves A x in the block's
workspace (:meth:`~lagrad.solve.blockop.BlockOperator.in_place_product`),
and the iterates live in two preallocated vectors, so an iteration is that
product and three numpy calls (the next iterate, the step, its squared norm),
with no allocation.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from lagrad.numeric import norm2
from lagrad.options import LinearOptions
from lagrad.solve.results import BlockResult, Status

__all__ = ["series_in_place", "series_too_slow"]

Array = NDArray[np.float64]


def series_in_place(product: Callable[[Array], None], a_x: Array, c: Array,
                    options: LinearOptions, result: BlockResult,
                    budget: int | None) -> Array | None:
    """x = c + A x iterated until the step ||r|| <= tol ||c||; ``product(x)``
    leaves A x in ``a_x``. Returns the next iterate x + r once converged (its
    status and reduced residual set in ``result``), the last iterate when out
    of iterations or blowing up (status MAX_ITERATIONS), or None when, with a
    ``budget``, its own rate predicts more iterations than that (BREAKDOWN)."""
    tol = options.tolerance
    scale = max(norm2(c), np.finfo(float).tiny)
    history: list[float] = []
    x, new, step = c.copy(), np.empty_like(c), np.empty_like(c)
    add, subtract, dot = np.add, np.subtract, np.dot
    k = 0
    for k in range(1, (options.maxiter or 10_000) + 1):
        product(x)
        add(c, a_x, out=new)  # x + r, r = c - (I - A) x
        subtract(new, x, out=step)
        squares = float(dot(step, step))
        res = math.sqrt(squares) if squares < math.inf else norm2(step)
        history.append(res)
        result.iterations = k - 1
        if res <= tol * scale:
            result.status, result.extra["reduced_residual"] = Status.CONVERGED, res / scale
            return new
        if not math.isfinite(res) or res > 1e12 * scale:
            break
        if budget is not None and k >= 4 and series_too_slow(history, k, tol * scale, budget):
            rate = (history[-1] / history[-4]) ** (1 / 3)
            result.status, result.iterations = Status.BREAKDOWN, k
            result.extra["rate"] = float(rate)
            result.message = (f"fixed_point abandoned after {k} iterations (observed "
                              f"rate {rate:.3f})")
            return None
        x, new = new, x
    result.iterations, result.status = k, Status.MAX_ITERATIONS
    return x


def series_too_slow(history: list[float], k: int, target: float, budget: int) -> bool:
    """The series' own rate over its last three steps (the forward rate can be
    far too hopeful) predicts more than ``budget`` iterations in all. The
    residuals are positive (none has met ``target`` yet), so with
    q = rate^3 the prediction k + log(target / h_k) / log(rate) > budget is
    h_k rate^(budget - k) > target: one power, no logarithms."""
    q = history[-1] / history[-4]
    return q >= 1.0 or history[-1] * q ** ((budget - k) / 3) > target
