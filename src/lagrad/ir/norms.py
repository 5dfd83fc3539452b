"""``lagrad.linalg.norm`` (and numpy 2's ``vector_norm``, ``matrix_norm``):
vector and matrix norms on traced values, as :func:`numpy.linalg.norm`,
written with the primitives (square root of a sum of squares, sums and
extrema of absolute values, powers, singular values for the matrix norms
2, -2 and 'nuc'), so they need no derivative rules of their own.

Where the derivative is not unique it is the primitives': the 2-norm's at
zero is not finite (0 times the infinite derivative of the square root, as
in JAX), and ``inf`` / ``-inf`` split it among tied entries.

>>> import numpy as np, lagrad
>>> lagrad.grad(lambda x: lagrad.linalg.norm(x))(np.array([3.0, 4.0]))
array([0.6, 0.8])
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lagrad.errors import ProgramError
from lagrad.ir import numpy_prims as N
from lagrad.ir import primitives as P
from lagrad.ir.arrayops import axes_of, moveaxis, shape_of
from lagrad.ir.eigen import svdvals

__all__ = ["norm", "vector_norm", "matrix_norm"]

Axes = tuple[int, ...] | None


def _sum(x: Any, axes: Axes, keepdims: bool) -> Any:
    return P.sum_(x, axis=None if axes is None else tuple(sorted(axes)), keepdims=keepdims)


def _two(x: Any, axes: Axes, keepdims: bool) -> Any:
    return P.sqrt(_sum(P.mul(x, x), axes, keepdims))


def _vector(x: Any, order: Any, axes: Axes, keepdims: bool) -> Any:
    if order is None or order == 2:
        return _two(x, axes, keepdims)
    size = P.absolute(x)
    if order == 1:
        return _sum(size, axes, keepdims)
    if order in (np.inf, -np.inf):
        pick = N.amax if order > 0 else N.amin
        return pick(size, axis=axes, keepdims=keepdims)
    if isinstance(order, (int, float, np.integer, np.floating)) and \
            not isinstance(order, bool) and 0 < order < np.inf:
        p = float(order)
        return P.power(_sum(P.power(size, p), axes, keepdims), 1.0 / p)
    raise ProgramError(f"norm: vector norm ord={order!r} is not supported on traced values; "
                       "use None, 1, 2, inf, -inf or another positive number")


def _matrix(x: Any, order: Any, axes: tuple[int, int], keepdims: bool) -> Any:
    if order is None or order == "fro":
        return _two(x, axes, keepdims)
    if order in (1, -1, np.inf, -np.inf):
        row, col = axes
        # ord 1: the largest column sum (sum over rows); inf: the largest row sum
        summed, other = (row, col) if order in (1, -1) else (col, row)
        sums = _sum(P.absolute(x), (summed,), True)
        pick = N.amax if order > 0 else N.amin
        out = pick(sums, axis=(other,), keepdims=True)
        if keepdims:
            return out
        return P.reshape(out, shape=tuple(s for n, s in enumerate(shape_of(x)) if n not in axes))
    if order in (2, -2, "nuc"):
        values = svdvals(moveaxis(x, axes, (-2, -1)))  # the other axes, then k
        last = (len(shape_of(values)) - 1,)
        out = N.amax(values, axis=last, keepdims=False) if order == 2 else \
            N.amin(values, axis=last, keepdims=False) if order == -2 else \
            _sum(values, last, False)
        if not keepdims:
            return out
        return P.reshape(out, shape=tuple(1 if n in axes else s
                                          for n, s in enumerate(shape_of(x))))
    raise ProgramError(f"norm: matrix norm ord={order!r} is not supported; use 'fro', 'nuc', "
                       "1, -1, 2, -2, inf or -inf")


def norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A002
    """Vector or matrix norm, as :func:`numpy.linalg.norm`: vector norms
    (None or 2, 1, inf, -inf, any p > 0) and matrix norms (None or 'fro',
    'nuc', 1, -1, 2, -2, inf, -inf; 2, -2 and 'nuc' by singular values),
    over ``axis`` (one axis: vectors, two: matrices; None: the whole of a
    1-D or 2-D array, or the 2-norm of any array flattened when ``ord`` is
    None).

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> a = np.array([[1.0, -2.0], [3.0, 4.0]])
    >>> float(lagrad.linalg.norm(a, 1)), float(lagrad.linalg.norm(a, np.inf))
    (6.0, 7.0)
    """
    shape = shape_of(x)
    ndim = len(shape)
    keepdims = bool(keepdims)
    if axis is None:
        if ord is None:
            flat = P.reshape(x, shape=(math.prod(shape),))
            out = _two(flat, None, False)
            return P.reshape(out, shape=(1,) * ndim) if keepdims else out
        if ndim == 1:
            return _vector(x, ord, None, keepdims)
        if ndim == 2:
            return _matrix(x, ord, (0, 1), keepdims)
        raise ProgramError(f"norm: ord={ord!r} needs a 1-D or 2-D array or an axis; got "
                           f"shape {shape}")
    axes = axes_of("norm", axis, ndim)
    if len(axes) == 1:
        return _vector(x, ord, axes, keepdims)
    if len(axes) == 2:
        return _matrix(x, ord, (axes[0], axes[1]), keepdims)
    raise ProgramError(f"norm: axis {axis!r} names {len(axes)} axes; give one or two")


def vector_norm(x: Any, /, *, axis: Any = None, keepdims: bool = False, ord: Any = 2) -> Any:  # noqa: A002
    """Vector norm over ``axis`` (None: all entries), as
    :func:`numpy.linalg.vector_norm`."""
    shape = shape_of(x)
    if axis is None:
        out = _vector(P.reshape(x, shape=(math.prod(shape),)), ord, None, False)
        return P.reshape(out, shape=(1,) * len(shape)) if keepdims else out
    return _vector(x, ord, axes_of("vector_norm", axis, len(shape)), bool(keepdims))


def matrix_norm(x: Any, /, *, keepdims: bool = False, ord: Any = "fro") -> Any:  # noqa: A002
    """Matrix norm of the last two axes, as :func:`numpy.linalg.matrix_norm`."""
    ndim = len(shape_of(x))
    if ndim < 2:
        raise ProgramError(f"matrix_norm: x has shape {shape_of(x)}; give a matrix or a stack")
    return _matrix(x, ord, (ndim - 2, ndim - 1), bool(keepdims))
