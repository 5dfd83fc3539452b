"""numpy's statistics on traced values: median, quantile and percentile
(numpy's default method "linear", and "lower", "higher", "nearest",
"midpoint"), average (with weights), ptp, cov and corrcoef.

Order statistics are read from ``sort`` (:mod:`lagrad.ir.sorting`), whose
order is found again at every solve, at constant positions: the derivative
of a median is that of the middle entry (half of each of the two middle
ones for an even count), as in JAX. The rest are sums, products and
``mean`` (:mod:`lagrad.ir.ops`).

>>> import numpy as np, lagrad
>>> lagrad.grad(lambda x: np.median(x))(np.array([3.0, 1.0, 2.0, 5.0]))
array([0.5, 0. , 0.5, 0. ])
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lagrad.errors import ProgramError
from lagrad.ir import ops
from lagrad.ir import primitives as P
from lagrad.ir.arrayops import axis_of, moveaxis, shape_of
from lagrad.ir.sorting import sort

__all__ = ["median", "quantile", "percentile", "average", "ptp", "cov", "corrcoef"]


def _sorted_first(name: str, a: Any, axis: Any) -> tuple[Any, tuple[int, ...], int | None]:
    """``a`` sorted along ``axis`` with that axis moved first (None: flattened),
    the shape of the rest, and the axis (None for a flattened ``a``)."""
    shape = shape_of(a)
    if axis is None:
        flat = ops.reshape(a, (math.prod(shape),))
        return sort(flat, axis=0), (), None
    ax = axis_of(name, axis, len(shape))
    rest = shape[:ax] + shape[ax + 1:]
    return moveaxis(sort(a, axis=ax), ax, 0), rest, ax


def _kept(out: Any, lead: tuple[int, ...], shape: tuple[int, ...], axis: int | None,
          keepdims: bool) -> Any:
    """``out`` of shape lead + the reduced shape, with the reduced axes kept as ones."""
    if not keepdims:
        return out
    kept = tuple(1 for _ in shape) if axis is None else shape[:axis] + (1,) + shape[axis + 1:]
    return ops.reshape(out, lead + kept)


QUANTILE_METHODS = ("linear", "lower", "higher", "nearest", "midpoint")
"""numpy's quantile methods on traced values (JAX's list)."""


def quantile(a: Any, q: Any, axis: Any = None, out: Any = None, overwrite_input: bool = False,
             method: str = "linear", keepdims: bool = False) -> Any:
    """The ``q``-th quantiles (constants in [0, 1]) along ``axis``, as
    :func:`numpy.quantile` with ``method`` one of "linear" (numpy's
    default), "lower", "higher", "nearest" or "midpoint": q's axes first."""
    if method not in QUANTILE_METHODS or out is not None:
        raise ProgramError(f"quantile: method must be one of {list(QUANTILE_METHODS)} and no "
                           f"out= on traced values, got method={method!r}")
    if isinstance(q, P.Tracer):
        raise ProgramError("quantile: q must be a constant, not a traced value")
    qs = np.asarray(q, dtype=float)
    if not ((qs >= 0) & (qs <= 1)).all():
        raise ProgramError(f"quantile: q must be in [0, 1], got {q!r}")
    shape = shape_of(a)
    srt, rest, ax = _sorted_first("quantile", a, axis)
    n = shape_of(srt)[0]
    if n == 0:
        raise ProgramError(f"quantile of an empty array (shape {shape}) is undefined")
    lo, hi, w = _positions(qs.ravel() * (n - 1), n, method)
    if lo is hi:
        value = ops.getitem(srt, lo)
    else:
        w = w.reshape((-1,) + (1,) * len(rest))
        low, high = ops.getitem(srt, lo), ops.getitem(srt, hi)
        # numpy's lerp: below one half from the low end, from the high end above
        value = ops.where(w < 0.5, P.add(low, P.mul(P.sub(high, low), w)),
                          P.sub(high, P.mul(P.sub(high, low), 1.0 - w)))
    value = ops.reshape(value, qs.shape + rest)
    return _kept(value, qs.shape, shape, ax, keepdims)


def _positions(position: Any, n: int, method: str) -> tuple[Any, Any, Any]:
    """The sorted positions a quantile reads at ``position`` (in [0, n - 1])
    and the weight of the higher one: (index, the same index, None) for the
    methods that pick one entry, numpy's choice of entry for each."""
    lo = np.floor(position).astype(np.intp)
    if method == "lower":
        return lo, lo, None
    if method == "higher":
        up = np.ceil(position).astype(np.intp)
        return up, up, None
    if method == "nearest":  # numpy rounds half to even
        near = np.around(position).astype(np.intp)
        return near, near, None
    hi = np.minimum(lo + 1, n - 1)
    if method == "midpoint":
        return lo, hi, np.where(position % 1 == 0, 0.0, 0.5)
    return lo, hi, position - lo


def percentile(a: Any, q: Any, axis: Any = None, out: Any = None, overwrite_input: bool = False,
               method: str = "linear", keepdims: bool = False) -> Any:
    """The ``q``-th percentiles (constants in [0, 100]), as :func:`numpy.percentile`."""
    if isinstance(q, P.Tracer):
        raise ProgramError("percentile: q must be a constant, not a traced value")
    qs = np.asarray(q, dtype=float)
    if not ((qs >= 0) & (qs <= 100)).all():
        raise ProgramError(f"percentile: q must be in [0, 100], got {q!r}")
    return quantile(a, qs / 100.0, axis, out, overwrite_input, method, keepdims)


def median(a: Any, axis: Any = None, out: Any = None, overwrite_input: bool = False,
           keepdims: bool = False) -> Any:
    """The median along ``axis`` (None: of all entries), as :func:`numpy.median`."""
    if out is not None:
        raise ProgramError("median: out= cannot hold a traced value")
    shape = shape_of(a)
    srt, _, ax = _sorted_first("median", a, axis)
    n = shape_of(srt)[0]
    if n == 0:
        raise ProgramError(f"median of an empty array (shape {shape}) is undefined")
    middle = ops.getitem(srt, n // 2)
    if n % 2 == 0:
        middle = P.mul(P.add(ops.getitem(srt, n // 2 - 1), middle), 0.5)
    return _kept(middle, (), shape, ax, keepdims)


def average(a: Any, axis: Any = None, weights: Any = None, returned: bool = False,
            keepdims: bool = False) -> Any:
    """The mean along ``axis`` weighted by ``weights`` (a's shape, or one
    weight per entry along an int axis), as :func:`numpy.average`; with
    ``returned``, also the sum of the weights."""
    shape = shape_of(a)
    if weights is None:
        avg = ops.mean(a, axis=axis, keepdims=keepdims)
        count = math.prod(shape) // max(math.prod(shape_of(avg)), 1)
        return (avg, np.full(shape_of(avg), float(count))) if returned else avg
    w_shape = shape_of(weights)
    if w_shape != shape:
        if axis is None or len(w_shape) != 1 or not isinstance(axis, (int, np.integer)) or \
                w_shape[0] != shape[axis_of("average", axis, len(shape))]:
            raise ProgramError(f"average: weights of shape {w_shape} do not fit an array of "
                               f"shape {shape} (give a's shape, or one weight per entry along "
                               "an int axis)")
        ax = axis_of("average", axis, len(shape))
        weights = ops.reshape(weights, tuple(s if k == ax else 1
                                             for k, s in enumerate(shape)))
    total = ops.sum(P.mul(np.ones(shape), weights), axis=axis, keepdims=keepdims)
    avg = P.div(ops.sum(P.mul(a, weights), axis=axis, keepdims=keepdims), total)
    return (avg, total) if returned else avg


def ptp(a: Any, axis: Any = None, out: Any = None, keepdims: bool = False) -> Any:
    """Largest minus smallest entry along ``axis``, as :func:`numpy.ptp`."""
    return P.sub(ops.max(a, axis=axis, keepdims=keepdims), ops.min(a, axis=axis,
                                                                    keepdims=keepdims))


def cov(m: Any, y: Any = None, rowvar: bool = True, bias: bool = False,
        ddof: int | None = None) -> Any:
    """Covariance matrix of the variables in ``m``'s rows (columns when
    ``rowvar`` is False) and ``y``'s, as :func:`numpy.cov` without weights."""
    rows = _variables(m, rowvar)
    if y is not None:
        rows = ops.concatenate([rows, _variables(y, rowvar)], axis=0)
    count = shape_of(rows)[1]
    dof = count - (ddof if ddof is not None else (0 if bias else 1))
    if dof <= 0:
        raise ProgramError(f"cov: {count} observations leave {dof} degrees of freedom")
    centred = P.sub(rows, ops.mean(rows, axis=1, keepdims=True))
    c = P.div(ops.matmul(centred, ops.transpose(centred)), float(dof))
    kept = tuple(s for s in shape_of(c) if s != 1)
    return ops.reshape(c, kept) if kept != shape_of(c) else c


def _variables(x: Any, rowvar: bool) -> Any:
    shape = shape_of(x)
    if len(shape) > 2:
        raise ProgramError(f"cov: an array of shape {shape} has more than two dimensions")
    rows = ops.reshape(x, (1, shape[0])) if len(shape) == 1 else \
        ops.reshape(x, (1, 1)) if not shape else x
    return ops.transpose(rows) if not rowvar and shape_of(rows)[0] != 1 else rows


def corrcoef(x: Any, y: Any = None, rowvar: bool = True) -> Any:
    """Correlation coefficients, cov / sqrt(var_i var_j), as :func:`numpy.corrcoef`."""
    c = cov(x, y, rowvar)
    if not shape_of(c):
        return P.div(c, c)
    d = ops.sqrt(ops.getitem(c, (np.arange(shape_of(c)[0]),) * 2))
    return P.div(P.div(c, ops.reshape(d, (-1, 1))), ops.reshape(d, (1, -1)))
