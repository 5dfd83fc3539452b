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

from lagrad import tree
from lagrad.api import grad, jvp, vjp
from lagrad.errors import GradientCheckError, require_callable

__all__ = ["check_grad", "taylor_test"]


def _as_float64(leaf: Any) -> Any:
    """A numeric leaf as float64 (a check runs at full precision); other leaves
    unchanged, for the functional API to reject with their path."""
    try:
        arr = np.asarray(leaf)
    except ValueError:  # ragged nesting
        return leaf
    return arr.astype(float) if arr.dtype.kind in "biuf" else leaf


def _inner(xs: list[Any], ys: list[Any]) -> float:
    """The sum of the leaves' dot products: <x, y> for pytrees flattened alike."""
    return float(sum(np.sum(np.asarray(x, dtype=float) * np.asarray(y, dtype=float))
                     for x, y in zip(xs, ys)))


def check_grad(fn: Callable[..., Any], *args: Any, n_directions: int = 3, eps: float = 1e-6,
               rtol: float = 1e-5, atol: float = 1e-8, seed: int = 0) -> float:
    """Check reverse mode, forward mode and central differences against each other.

    Along ``n_directions`` random input directions v (and a random output
    cotangent u) it compares u . J v computed by ``vjp``, by ``jvp``, and by
    central differences with step ``eps``.

    Parameters
    ----------
    fn : callable
        The function to check; it returns an array or a pytree of arrays.
    *args
        Its arguments: arrays, floats or pytrees of them (nested tuples,
        lists, dicts, namedtuples), all differentiated. Numeric leaves are
        converted to float64 (integers included), so the check runs at full
        precision.
    n_directions : int
        How many random directions to try.
    eps : float
        The finite-difference step.
    rtol, atol : float
        The tolerance of reverse mode against finite differences.
    seed : int
        Seed of the random directions.

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
    >>> params = {"w": np.array([0.3, -0.2]), "b": [0.1, None]}
    >>> err = lagrad.check_grad(lambda p: (lagrad.exp(p["w"] * p["b"][0]), p["w"].sum()), params)
    >>> err < 1e-6
    True
    """
    require_callable(fn, "lagrad.check_grad")
    rng = np.random.default_rng(seed)
    args = tree.map(_as_float64, tuple(args))
    arg_leaves, arg_def = tree.flatten(args)
    value, pullback = vjp(fn, *args)
    out_leaves, out_def = tree.flatten(value)
    us = [rng.standard_normal(np.shape(leaf)) for leaf in out_leaves]
    cotangents = tree.leaves(pullback(tree.unflatten(out_def, us)))
    worst = 0.0
    for _ in range(n_directions):
        vs = [rng.standard_normal(np.shape(leaf)) for leaf in arg_leaves]
        reverse = _inner(cotangents, vs)
        forward = _inner(us, tree.leaves(jvp(fn, args, tree.unflatten(arg_def, vs))[1]))
        plus = fn(*tree.unflatten(arg_def, [a + eps * v for a, v in zip(arg_leaves, vs)]))
        minus = fn(*tree.unflatten(arg_def, [a - eps * v for a, v in zip(arg_leaves, vs)]))
        fd = (_inner(us, tree.leaves(plus)) - _inner(us, tree.leaves(minus))) / (2 * eps)
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

    Parameters
    ----------
    fn : callable
        A scalar-output function of one argument.
    x : array, float or pytree
        The point; numeric leaves are converted to float64.
    direction : array, float or pytree
        The direction d, with ``x``'s structure and shapes.
    h0 : float
        The first step.
    halvings : int
        How many times the step is halved.
    min_order : float
        The smallest last observed order accepted.
    verbose : bool
        Print the table of steps, remainders and orders.

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
    require_callable(fn, "lagrad.taylor_test")
    x_leaves, x_def = tree.flatten(tree.map(_as_float64, x))
    x = tree.unflatten(x_def, x_leaves)
    d_leaves = [np.asarray(d, dtype=float)
                for d in tree.flatten_up_to(x_def, direction, "direction")]
    f0 = float(np.asarray(fn(x)))
    slope = _inner(tree.leaves(grad(fn)(x)), d_leaves)

    def shifted(h: float) -> Any:
        return tree.unflatten(x_def, [a + h * d for a, d in zip(x_leaves, d_leaves)])
    hs = h0 * 0.5 ** np.arange(halvings + 1)
    rem = np.array([abs(float(np.asarray(fn(shifted(h)))) - f0 - h * slope) for h in hs])
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
