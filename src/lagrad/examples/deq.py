"""A deep-equilibrium layer z = tanh(W z + U x + b)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from lagrad.ir import ops
from lagrad.ir.program import Program

from .base import Example

__all__ = ["deq"]

Array = NDArray[np.float64]


def deq(n: int = 20, d: int = 5, seed: int = 0) -> Example:
    """Deep-equilibrium layer z = tanh(W z + U x + b), output sum(z^2).

    Parameters
    ----------
    n : int
        Width of the layer (size of z).
    d : int
        Size of the input x.
    seed : int
        Seed of the random W, U, b and x.

    Returns
    -------
    Example
        Inputs ``x`` (d,) and ``W`` (n, n); U and b are constants. W is
        scaled to spectral norm 0.9, so the map is a contraction.

    Notes
    -----
    The reference solves the forward fixed point by numpy iteration to machine
    precision; then with D = diag(1 - z^2) the multipliers of the block are
    lambda = (I - D W)^-T 2 z and

        d output / d x = U^T D lambda,    d output / d W = outer(D lambda, z).

    Examples
    --------
    >>> from lagrad.examples import deq
    >>> ex = deq()
    >>> [b.name for b in ex.program.blocks if b.cyclic]
    ['block 3 (z)']
    >>> sol = ex.solve()
    >>> bool(ex.gradient_error(sol) < 1e-8)
    True
    >>> gx, gW = sol.grad()
    >>> gx.shape, gW.shape
    ((5,), (20, 20))
    """
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, n))
    w *= 0.9 / np.linalg.norm(w, 2)
    u = rng.standard_normal((n, d)) / np.sqrt(d)
    b = 0.1 * rng.standard_normal(n)
    x = rng.standard_normal(d)

    p = Program("deq")
    x_in = p.input("x", (d,))
    w_in = p.input("W", (n, n))
    z = p.unknown("z", (n,))
    p.define(z, ops.tanh(w_in @ z + u @ x_in + b))
    p.output(ops.sum(z * z))

    return Example(
        name="deq", program=p, inputs={"x": x, "W": w},
        reference=_reference(w, u, b, x),
        description=f"deep-equilibrium layer z = tanh(W z + U x + b), n={n}, d={d}, "
                    "||W|| = 0.9; reference: numpy iteration and a dense adjoint solve")


def _reference(w: Array, u: Array, b: Array, x: Array) -> dict[str, Array]:
    """Gradients of sum(z^2) by numpy iteration and a dense adjoint solve."""
    a = u @ x + b
    z = np.zeros(w.shape[0])
    for _ in range(10_000):  # contraction 0.9: about 350 iterations reach rounding
        new = np.tanh(w @ z + a)
        if np.array_equal(new, z):
            break
        z = new
    dg = 1.0 - z * z  # the diagonal of D
    lam = np.linalg.solve((np.eye(z.size) - dg[:, None] * w).T, 2.0 * z)
    return {"x": u.T @ (dg * lam), "W": np.outer(dg * lam, z)}
