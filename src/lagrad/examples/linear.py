"""A linear system A y = b written as Jacobi's fixed point y = D^-1 (b - R y)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from lagrad.ir import ops
from lagrad.ir.program import Program

from .base import Example

__all__ = ["linear_system"]

Array = NDArray[np.float64]


def linear_system(n: int = 10, seed: int = 0) -> Example:
    """Linear system A y = b by Jacobi splitting; output c^T y.

    Parameters
    ----------
    n : int
        Size of the system.
    seed : int
        Seed of A, b and c.

    Returns
    -------
    Example
        Inputs ``A`` (n, n), strictly diagonally dominant (so the Jacobi map
        contracts), and ``b`` (n,); c is a constant.

    Notes
    -----
    With D = diag(A) and R = A - D, computed inside the program from A with
    constant masks (``sum(A * eye, axis=1)`` and ``A * (1 - eye)``), the
    constraint is y = D^-1 (b - R y). The reference is the closed form

        y = A^-1 b,   lambda = A^-T c,   d output / d b = lambda,
        d output / d A = -outer(lambda, y).

    Examples
    --------
    >>> from lagrad.examples import linear_system
    >>> ex = linear_system()
    >>> sol = ex.solve()
    >>> bool(ex.gradient_error(sol) < 1e-8)
    True
    >>> import numpy as np
    >>> y = np.linalg.solve(ex.inputs["A"], ex.inputs["b"])
    >>> bool(np.allclose(sol["y"], y, rtol=1e-11, atol=0))
    True
    """
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n))
    # strict diagonal dominance: |a_ii| > sum_{j != i} |a_ij|, with random signs
    off = np.abs(a).sum(axis=1) - np.abs(np.diag(a))
    signs = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    np.fill_diagonal(a, signs * (off + rng.uniform(0.5, 1.5, n)))
    b = rng.standard_normal(n)
    c = rng.standard_normal(n)

    eye = np.eye(n)
    p = Program("linear")
    a_in = p.input("A", (n, n))
    b_in = p.input("b", (n,))
    diagonal = ops.sum(a_in * eye, axis=1)
    rest = a_in * (1.0 - eye)
    y = p.unknown("y", (n,))
    p.define(y, (b_in - rest @ y) / diagonal)
    p.output(ops.dot(c, y))

    y_ref = np.linalg.solve(a, b)
    lam = np.linalg.solve(a.T, c)
    return Example(
        name="linear", program=p, inputs={"A": a, "b": b},
        reference={"A": -np.outer(lam, y_ref), "b": lam},
        description=f"A y = b (n={n}, strictly diagonally dominant) as the Jacobi fixed "
                    "point y = D^-1 (b - R y), output c^T y; reference: numpy.linalg.solve")
