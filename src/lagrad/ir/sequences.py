"""numpy's operations along a sequence on traced values: ``convolve``,
``correlate``, ``trapezoid``, ``polyval``, ``ediff1d``, numpy 2's
``cumulative_sum`` / ``cumulative_prod`` (with ``include_initial``) and
``unstack``.

Each is written with constant-index gathers, products and sums, so it needs
no derivative rule of its own and is exact to any order. A convolution is
the product of a Toeplitz matrix, gathered from one operand (constant
positions, zero outside), with the other, so both may be traced.

>>> import numpy as np, lagrad
>>> lagrad.grad(lambda v: np.sum(np.convolve([1.0, 2.0], v)))(np.array([1.0, 1.0, 1.0]))
array([3., 3., 3.])
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lagrad.errors import ProgramError
from lagrad.ir import ops
from lagrad.ir import primitives as P
from lagrad.ir.arrayops import axis_of, moveaxis, shape_of
from lagrad.ir.cumulative import cumprod

__all__ = ["convolve", "correlate", "trapezoid", "polyval", "ediff1d", "cumulative_sum",
           "cumulative_prod", "unstack"]


def _along(x: Any, axis: int, index: Any) -> Any:
    return P.getitem(x, index=(slice(None),) * axis + (index,))


def _vector(name: str, x: Any) -> Any:
    if not isinstance(x, P.Tracer):
        x = np.asarray(x, dtype=float)
    if len(shape_of(x)) != 1 or not shape_of(x)[0]:
        raise ProgramError(f"{name}: give non-empty 1-D arrays, got shape {shape_of(x)}")
    return x


def convolve(a: Any, v: Any, mode: str = "full") -> Any:
    """The discrete convolution of two 1-D arrays, as :func:`numpy.convolve`
    (modes "full", "same", "valid"); either may be traced."""
    a, v = _vector("convolve", a), _vector("convolve", v)
    n, m = shape_of(a)[0], shape_of(v)[0]
    if mode not in ("full", "same", "valid"):
        raise ProgramError(f"convolve: mode must be 'full', 'same' or 'valid', got {mode!r}")
    if m > n:  # numpy swaps so that the longer one slides; the sums are the same
        a, v, n, m = v, a, m, n
    # full[k] = sum_i a[i] v[k - i]: the Toeplitz matrix T[k, i] = v[k - i] (0 outside)
    k, i = np.meshgrid(np.arange(n + m - 1), np.arange(n), indexing="ij")
    lag = k - i
    inside = (lag >= 0) & (lag < m)
    padded = ops.concatenate([v, np.zeros(1)])
    toeplitz = P.getitem(padded, index=np.where(inside, lag, m))
    full = ops.matmul(toeplitz, a)
    if mode == "full":
        return full
    if mode == "valid":
        return P.getitem(full, index=slice(m - 1, n))
    start = (m - 1) // 2
    return P.getitem(full, index=slice(start, start + n))


def correlate(a: Any, v: Any, mode: str = "valid") -> Any:
    """The cross-correlation of two 1-D real arrays, as :func:`numpy.correlate`:
    ``convolve(a, v[::-1], mode)``."""
    a, v = _vector("correlate", a), _vector("correlate", v)
    flipped = P.getitem(v, index=slice(None, None, -1)) if isinstance(v, P.Tracer) else v[::-1]
    return convolve(a, flipped, mode)


def trapezoid(y: Any, x: Any = None, dx: float = 1.0, axis: int = -1) -> Any:
    """The integral of y by the trapezoidal rule along ``axis``, as
    :func:`numpy.trapezoid` (x may be traced, and 1-D along the axis or y's
    shape)."""
    shape = shape_of(y)
    ax = axis_of("trapezoid", axis, len(shape))
    n = shape[ax]
    ends = P.add(_along(y, ax, slice(1, None)), _along(y, ax, slice(None, n - 1)))
    if x is None:
        return P.mul(ops.sum(ends, axis=ax), 0.5 * dx)
    xs = x if isinstance(x, P.Tracer) else np.asarray(x, dtype=float)
    if len(shape_of(xs)) == 1:
        width = P.sub(P.getitem(xs, index=slice(1, None)), P.getitem(xs, index=slice(None, -1)))
        width = ops.reshape(width, (n - 1,) + (1,) * (len(shape) - 1 - ax))
    else:
        width = P.sub(_along(xs, ax, slice(1, None)), _along(xs, ax, slice(None, n - 1)))
    return P.mul(ops.sum(P.mul(ends, width), axis=ax), 0.5)


def polyval(p: Any, x: Any) -> Any:
    """The polynomial with coefficients ``p`` (highest degree first) at x, by
    Horner's scheme, as :func:`numpy.polyval`."""
    if not isinstance(p, P.Tracer):
        p = np.asarray(p, dtype=float)
    if len(shape_of(p)) != 1:
        raise ProgramError(f"polyval: p must be 1-D, got shape {shape_of(p)}")
    y: Any = P.mul(x, 0.0)
    for k in range(shape_of(p)[0]):
        y = P.add(P.mul(y, x), p[k])
    return y


def ediff1d(ary: Any, to_end: Any = None, to_begin: Any = None) -> Any:
    """The differences of consecutive entries of the flattened array, with
    ``to_begin`` and ``to_end`` around them, as :func:`numpy.ediff1d`."""
    flat = ops.reshape(ary, (math.prod(shape_of(ary)),))
    size = shape_of(flat)[0]
    parts = [P.sub(P.getitem(flat, index=slice(1, None)),
                   P.getitem(flat, index=slice(0, size - 1)))]
    if to_begin is not None:
        parts.insert(0, ops.reshape(to_begin, (-1,)) if isinstance(to_begin, P.Tracer)
                     else np.ravel(np.asarray(to_begin, dtype=float)))
    if to_end is not None:
        parts.append(ops.reshape(to_end, (-1,)) if isinstance(to_end, P.Tracer)
                     else np.ravel(np.asarray(to_end, dtype=float)))
    return ops.concatenate(parts) if len(parts) > 1 else parts[0]


def _cumulative(name: str, run: Any, initial: float, x: Any, axis: Any, dtype: Any,
                out: Any, include_initial: bool) -> Any:
    if out is not None:
        raise ProgramError(f"{name}: out= cannot hold a traced value")
    shape = shape_of(x)
    if axis is None:
        if len(shape) > 1:
            raise ProgramError(f"{name}: give an axis for an array of {len(shape)} dimensions")
        axis = 0
    ax = axis_of(name, axis, len(shape))
    total = run(x, axis=ax)
    if not include_initial:
        return total
    edge = list(shape)
    edge[ax] = 1
    return ops.concatenate([np.full(edge, initial), total], axis=ax)


def cumulative_sum(x: Any, /, *, axis: Any = None, dtype: Any = None, out: Any = None,
                   include_initial: bool = False) -> Any:
    """numpy 2's cumulative sum along ``axis``, starting with 0 when
    ``include_initial``, as :func:`numpy.cumulative_sum`."""
    return _cumulative("cumulative_sum", ops.cumsum, 0.0, x, axis, dtype, out, include_initial)


def cumulative_prod(x: Any, /, *, axis: Any = None, dtype: Any = None, out: Any = None,
                    include_initial: bool = False) -> Any:
    """numpy 2's cumulative product along ``axis``, starting with 1 when
    ``include_initial``, as :func:`numpy.cumulative_prod`."""
    return _cumulative("cumulative_prod", cumprod, 1.0, x, axis, dtype, out, include_initial)


def unstack(x: Any, /, *, axis: int = 0) -> tuple[Any, ...]:
    """The slices of x along ``axis``, as :func:`numpy.unstack`."""
    shape = shape_of(x)
    ax = axis_of("unstack", axis, len(shape))
    front = moveaxis(x, ax, 0)
    return tuple(front[k] for k in range(shape[ax]))
