"""Derivative checks users can run on their own programs.

* :func:`check_grad` compares reverse mode, forward mode and central finite
  differences along random directions (as ``jax.test_util.check_grads``).
* :func:`taylor_test` checks that the first-order Taylor remainder
  |f(x + h d) - f(x) - h <grad f(x), d>| shrinks like h^2.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.api import grad, jvp, vjp
from lagrad.errors import GradientCheckError

__all__ = ["check_grad", "taylor_test"]


def _evaluate(fn: Callable[..., Any], args: tuple[Any, ...]) -> NDArray[np.float64]:
    return np.asarray(fn(*args), dtype=float)


def check_grad(fn: Callable[..., Any], *args: Any, n_directions: int = 3, eps: float = 1e-6,
               rtol: float = 1e-5, atol: float = 1e-8, seed: int = 0) -> float:
    """Check reverse mode, forward mode and central differences against each other.

    Along ``n_directions`` random input directions v (and a random output
    cotangent u for non-scalar outputs) it compares u . J v computed by
    ``vjp``, by ``jvp``, and by central differences with step ``eps``.

    Returns
    -------
    float
        The worst relative error seen.

    Raises
    ------
    GradientCheckError
        If reverse and forward mode differ by more than 1e-8 relative, or
        either differs from finite differences by more than ``atol + rtol * |fd|``.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> err = lagrad.check_grad(lambda x: lagrad.tanh(x).sum(), np.array([0.1, 0.5]))
    >>> err < 1e-6
    True
    """
    rng = np.random.default_rng(seed)
    args = tuple(np.asarray(a, dtype=float) for a in args)
    value, pullback = vjp(fn, *args)
    u = rng.standard_normal(np.shape(value))
    cotangents = pullback(u)
    worst = 0.0
    for _ in range(n_directions):
        vs = tuple(rng.standard_normal(np.shape(a)) for a in args)
        reverse = sum(float(np.sum(c * v)) for c, v in zip(cotangents, vs))
        forward = float(np.sum(u * jvp(fn, args, vs)[1]))
        plus = _evaluate(fn, tuple(a + eps * v for a, v in zip(args, vs)))
        minus = _evaluate(fn, tuple(a - eps * v for a, v in zip(args, vs)))
        fd = float(np.sum(u * (plus - minus))) / (2 * eps)
        scale = max(abs(reverse), abs(forward), abs(fd), np.finfo(float).tiny)
        worst = max(worst, abs(reverse - forward) / scale, abs(reverse - fd) / scale)
        if abs(reverse - forward) > 1e-8 * scale + 1e-12:
            raise GradientCheckError(f"reverse mode ({reverse!r}) and forward mode ({forward!r})"
                                     " disagree along a random direction")
        if abs(reverse - fd) > atol + rtol * abs(fd):
            raise GradientCheckError(f"reverse mode gives {reverse!r} but central differences "
                                     f"give {fd!r} (relative error {abs(reverse - fd) / scale:.2e}"
                                     f", tolerance rtol={rtol}, atol={atol})")
    return worst


def taylor_test(fn: Callable[..., Any], x: Any, direction: Any, *, h0: float = 1e-2,
                halvings: int = 6, min_order: float = 1.8, verbose: bool = True
                ) -> NDArray[np.float64]:
    """Verify that the first-order Taylor remainder shrinks at order 2.

    With r(h) = |f(x + h d) - f(x) - h <grad f(x), d>| at h = h0, h0/2, ...,
    the observed orders log2(r(h) / r(h/2)) approach 2 when the gradient is
    right (and 1 when it is wrong). Remainders at round-off level are skipped.

    Returns
    -------
    ndarray
        The observed orders (printed as a table when ``verbose``).

    Raises
    ------
    GradientCheckError
        If the last observed order is below ``min_order``.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> orders = lagrad.taylor_test(lagrad.exp, 0.5, 1.0, verbose=False)
    >>> bool(abs(orders[-1] - 2) < 0.1)
    True
    """
    x = np.asarray(x, dtype=float)
    d = np.asarray(direction, dtype=float)
    f0 = float(np.asarray(fn(x)))
    slope = float(np.sum(np.asarray(grad(fn)(x)) * d))
    hs = h0 * 0.5 ** np.arange(halvings + 1)
    rem = np.array([abs(float(np.asarray(fn(x + h * d))) - f0 - h * slope) for h in hs])
    noise = 1e3 * np.finfo(float).eps * max(abs(f0), 1.0)
    usable = rem > noise
    orders = np.array([np.log2(rem[k] / rem[k + 1]) for k in range(halvings)
                       if usable[k] and usable[k + 1]])
    if verbose:
        print(f"{'h':>10} {'remainder':>12} {'order':>7}")
        for k, h in enumerate(hs):
            order = np.log2(rem[k - 1] / rem[k]) if k and usable[k] and usable[k - 1] else None
            print(f"{h:10.3e} {rem[k]:12.4e} " + (f"{order:7.3f}" if order is not None else ""))
    if orders.size and orders[-1] < min_order:
        raise GradientCheckError(f"Taylor remainder shrinks at order {orders[-1]:.2f}, not 2: "
                                 f"the gradient is wrong (orders {np.round(orders, 2)})")
    return orders
