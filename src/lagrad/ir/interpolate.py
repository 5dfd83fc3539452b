"""``numpy.interp`` on traced values: piecewise-linear interpolation of the
points (xp, fp) at x, differentiable in x and in fp (xp is a constant).

The segment each x falls in depends on the values, so it is found again at
every evaluation, as ``sort`` finds its order: a traced program stays right
at inputs that fall in other segments. Inside [xp[0], xp[-1]] the value is
(1 - t) fp[j] + t fp[j + 1] with t = (x - xp[j]) / (xp[j + 1] - xp[j]), so
the derivative in x is the segment's slope and in fp the two weights; at a
knot x = xp[j] the segment to the right is used (numpy's value there is
fp[j] either way), and at xp[-1] the last one. Outside, the value is
``left`` / ``right`` (constants: derivative zero) or, by default, fp[0] /
fp[-1] (derivative one in that entry). The second derivative is the
derivative of the slope in fp and of the weights in x.

>>> import numpy as np, lagrad
>>> float(lagrad.grad(lambda x: np.interp(x, [0.0, 1.0, 3.0], [0.0, 2.0, 3.0]))(2.0))
0.5
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from lagrad.errors import ProgramError
from lagrad.ir import primitives as P
from lagrad.ir.arrayops import shape_of
from lagrad.ir.primitives import Primitive

__all__ = ["interp", "interp_p"]

Array = NDArray[np.float64]
Shape = tuple[int, ...]


class _Segments(NamedTuple):
    lo: Array  # index of each x's lower point, and of its upper one
    hi: Array
    w_lo: Array  # d value / d fp[lo], d value / d fp[hi]
    w_hi: Array
    inside: Array  # x within [xp[0], xp[-1]]
    width: Array  # xp[hi] - xp[lo] (1 where there is no segment)


def _segments(x: Array, xp: Array, left: float | None, right: float | None) -> _Segments:
    x = np.asarray(x, dtype=float)
    n = xp.size
    lo = np.clip(np.searchsorted(xp, x, side="right") - 1, 0, max(n - 2, 0))
    hi = np.minimum(lo + 1, n - 1)
    below, above = x < xp[0], x > xp[-1]
    inside = ~below & ~above
    width = np.where(hi > lo, xp[hi] - xp[lo], 1.0)
    t = np.where(inside & (hi > lo), (x - xp[lo]) / width, 0.0)
    w_lo = np.where(inside, 1.0 - t, 0.0)
    w_hi = np.where(inside & (hi > lo), t, 0.0)
    if left is None:
        w_lo = np.where(below, 1.0, w_lo)
    if right is None:  # (n == 1: hi is lo, whose weight that is)
        w_hi = np.where(above & (hi > lo), 1.0, w_hi)
        w_lo = np.where(above & (hi == lo), 1.0, w_lo)
    return _Segments(lo, hi, w_lo, w_hi, inside, width)


def _slope(s: _Segments, fp: Array) -> Array:
    fp = np.asarray(fp, dtype=float)
    return np.where(s.inside, (fp[s.hi] - fp[s.lo]) / s.width, 0.0)


def _value(x: Array, fp: Array, *, xp: Array, left: float | None,
           right: float | None) -> Array:
    return np.asarray(np.interp(x, xp, fp, left=left, right=right), dtype=float)


def _shape(sx: Shape, sf: Shape, *, xp: Array, left: float | None,
           right: float | None) -> Shape:
    if sf != xp.shape:
        raise ValueError(f"fp has shape {sf}; give one value per point of xp, shape {xp.shape}")
    return sx


def _scatter(index: Array, weights: Array, n: int) -> Array:
    return np.bincount(index.ravel(), weights.ravel(), minlength=n)


def _vjp(k: int, g: Array, ans: Array, x: Array, fp: Array, *, xp: Array,
         left: float | None, right: float | None) -> Array:
    s = _segments(x, xp, left, right)
    if k == 0:
        return g * _slope(s, fp)
    return _scatter(s.lo, g * s.w_lo, xp.size) + _scatter(s.hi, g * s.w_hi, xp.size)


def _jvp(ts: Sequence[Array | None], ans: Array, x: Array, fp: Array, *, xp: Array,
         left: float | None, right: float | None) -> Array:
    s = _segments(x, xp, left, right)
    out = np.zeros(np.shape(ans))
    if ts[0] is not None:
        out = out + _slope(s, fp) * ts[0]
    if ts[1] is not None:
        tf = np.asarray(ts[1], dtype=float)
        out = out + s.w_lo * tf[s.lo] + s.w_hi * tf[s.hi]
    return out


def _jacobian(k: int, ans: Array, x: Array, fp: Array, *, xp: Array, left: float | None,
              right: float | None) -> sp.csr_matrix:
    s = _segments(x, xp, left, right)
    size = int(np.size(ans))
    rows = np.arange(size)
    if k == 0:
        return sp.csr_matrix((_slope(s, fp).ravel(), (rows, rows)), shape=(size, size))
    return sp.csr_matrix((np.concatenate([s.w_lo.ravel(), s.w_hi.ravel()]),
                          (np.concatenate([rows, rows]),
                           np.concatenate([s.lo.ravel(), s.hi.ravel()]))),
                         shape=(size, xp.size))


def _second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array, x: Array,
                fp: Array, *, xp: Array, left: float | None,
                right: float | None) -> Array | None:
    """The slope g-weighted moves with fp (d slope = its tangent's slope); the
    weights move with x (d t = t_x / width inside); nothing else moves."""
    s = _segments(x, xp, left, right)
    if k == 0:
        return None if ts[1] is None else g * _slope(s, ts[1])
    if ts[0] is None:
        return None
    dt = np.where(s.inside & (s.hi > s.lo), np.asarray(ts[0], dtype=float) / s.width, 0.0)
    return _scatter(s.hi, g * dt, xp.size) - _scatter(s.lo, g * dt, xp.size)


interp_p = Primitive("interp", _value, _shape, vjp=_vjp, jvp=_jvp, jacobian=_jacobian,
                     second_vjp=_second_vjp,
                     doc="piecewise-linear interpolation of (xp, fp) at x")


def interp(x: Any, xp: Any, fp: Any, left: Any = None, right: Any = None,
           period: Any = None) -> Any:
    """One-dimensional piecewise-linear interpolation, as :func:`numpy.interp`:
    ``x`` and ``fp`` may be traced; ``xp`` (strictly increasing), ``left`` and
    ``right`` are constants; no ``period``."""
    for name, value in (("xp", xp), ("left", left), ("right", right), ("period", period)):
        if isinstance(value, P.Tracer):
            raise ProgramError(f"interp: {name} must be a constant, not a traced value; "
                               "x and fp may be traced")
    if not isinstance(x, P.Tracer) and not isinstance(fp, P.Tracer):
        return np.interp(x, xp, fp, left=left, right=right, period=period)
    if period is not None:
        raise ProgramError("interp: period= is not supported on traced values")
    points = np.asarray(xp, dtype=float)
    if points.ndim != 1 or points.size == 0:
        raise ProgramError(f"interp: xp must be a non-empty 1-D array, got shape {points.shape}")
    if not (np.diff(points) > 0).all():
        raise ProgramError("interp: xp must be strictly increasing on traced values (numpy "
                           "assumes it increasing; a repeated point has no slope)")
    if len(shape_of(fp)) != 1 or shape_of(fp)[0] != points.size:
        raise ProgramError(f"interp: fp has shape {shape_of(fp)}; give one value per point of "
                           f"xp, shape {points.shape}")
    ends = [None if v is None else float(v) for v in (left, right)]
    return interp_p(x, fp, xp=points, left=ends[0], right=ends[1])
