"""``cumprod`` on traced values: a primitive whose derivative rules are
recurrences along the axis, exact where entries are zero (no division by
the running product).

With C_i = x_0 ... x_i along the axis (C_{-1} = 1):

* JVP, by the product rule: dC_i = dC_{i-1} x_i + C_{i-1} dx_i;
* VJP: x_bar_j = C_{j-1} S_j with S_j = sum_{i >= j} g_i x_{j+1} ... x_i,
  from the end: S_{n-1} = g_{n-1}, S_j = g_j + x_{j+1} S_{j+1};
* local Jacobian: dC_i / dx_j = C_{j-1} x_{j+1} ... x_i for j <= i.

* second order (the VJP along a tangent t): dC_{j-1} S_j + C_{j-1} dS_j,
  dS_j = t_{j+1} S_{j+1} + x_{j+1} dS_{j+1}.

Each costs one pass along the axis (a Python loop over its length, numpy
over the other axes).

>>> import numpy as np, lagrad
>>> lagrad.grad(lambda x: np.cumprod(x)[-1])(np.array([2.0, 0.0, 3.0]))
array([0., 6., 0.])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from lagrad.errors import ProgramError
from lagrad.ir import primitives as P
from lagrad.ir.arrayops import axis_of, shape_of
from lagrad.ir.primitives import Primitive

__all__ = ["cumprod", "cumprod_p"]

Array = NDArray[np.float64]
Shape = tuple[int, ...]


def _last(x: Any, axis: int) -> Array:
    """``x`` with ``axis`` moved last, as float."""
    return np.moveaxis(np.asarray(x, dtype=float), axis, -1)


def _before(c: Array, first: float = 1.0) -> Array:
    """C_{j-1} along the last axis: ``first`` (C_{-1} = 1, its tangent 0)
    before the first entry."""
    out = np.full_like(c, first)
    out[..., 1:] = c[..., :-1]
    return out


def _value(x: Array, *, axis: int) -> Array:
    return np.cumprod(x, axis=axis)


def _shape(s: Shape, *, axis: int) -> Shape:
    if not 0 <= axis < len(s):
        raise ValueError(f"axis {axis} is out of bounds for an array of dimension {len(s)}")
    return s


def _jvp(ts: Sequence[Array | None], ans: Array, x: Array, *, axis: int) -> Array:
    xs, t, c = _last(x, axis), _last(ts[0], axis), _last(ans, axis)
    out = np.empty(np.broadcast_shapes(t.shape, xs.shape))
    if out.shape[-1]:
        out[..., 0] = t[..., 0]
    for i in range(1, out.shape[-1]):
        out[..., i] = out[..., i - 1] * xs[..., i] + c[..., i - 1] * t[..., i]
    return np.moveaxis(out, -1, axis)


def _vjp(k: int, g: Array, ans: Array, x: Array, *, axis: int) -> Array:
    xs, gs, c = _last(x, axis), _last(g, axis), _last(ans, axis)
    s = np.empty_like(gs)
    n = s.shape[-1]
    if n:
        s[..., n - 1] = gs[..., n - 1]
    for j in range(n - 2, -1, -1):
        s[..., j] = gs[..., j] + xs[..., j + 1] * s[..., j + 1]
    return np.moveaxis(_before(c) * s, -1, axis)


def _second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array, x: Array, *,
                axis: int) -> Array | None:
    """The VJP C_{j-1} S_j along the tangent t: dC_{j-1} S_j + C_{j-1} dS_j,
    with dC from the JVP's recurrence and dS_j = t_{j+1} S_{j+1} + x_{j+1}
    dS_{j+1} (dS_{n-1} = 0); exact where entries are zero, as the rest."""
    if ts[0] is None:
        return None
    xs, gs, c, t = _last(x, axis), _last(g, axis), _last(ans, axis), _last(ts[0], axis)
    n = xs.shape[-1]
    s, ds = np.empty_like(gs), np.zeros_like(gs)
    if n:
        s[..., n - 1] = gs[..., n - 1]
    for j in range(n - 2, -1, -1):
        s[..., j] = gs[..., j] + xs[..., j + 1] * s[..., j + 1]
        ds[..., j] = t[..., j + 1] * s[..., j + 1] + xs[..., j + 1] * ds[..., j + 1]
    dc = _last(_jvp([ts[0]], ans, x, axis=axis), axis)
    return np.moveaxis(_before(dc, 0.0) * s + _before(c) * ds, -1, axis)


def _jacobian(k: int, ans: Array, x: Array, *, axis: int) -> sp.csr_matrix:
    shape = np.shape(x)
    n = shape[axis]
    flat = np.moveaxis(np.arange(math.prod(shape)).reshape(shape), axis, -1).reshape(-1, n)
    xs, before = _last(x, axis).reshape(-1, n), _before(_last(ans, axis)).reshape(-1, n)
    rows, cols, vals = [], [], []
    for j in range(n):  # column j of each line: C_{j-1}, then times x_{j+1}, x_{j+2}, ...
        run = np.ones((xs.shape[0], n - j))
        run[:, 1:] = xs[:, j + 1:]
        rows.append(flat[:, j:].ravel())
        cols.append(np.repeat(flat[:, j], n - j))
        vals.append((before[:, j:j + 1] * np.cumprod(run, axis=1)).ravel())
    size = math.prod(shape)
    if not rows:
        return sp.csr_matrix((size, size))
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(size, size))


cumprod_p = Primitive("cumprod", _value, _shape, vjp=_vjp, jvp=_jvp, jacobian=_jacobian,
                      second_vjp=_second_vjp, doc="cumulative product along one axis")


def cumprod(a: Any, axis: Any = None, dtype: Any = None, out: Any = None) -> Any:
    """Cumulative product along ``axis`` (None: of the flattened array), as
    :func:`numpy.cumprod`; its derivative is exact where entries are zero."""
    if out is not None:
        raise ProgramError("cumprod: out= cannot hold a traced value")
    shape = shape_of(a)
    if axis is None:
        return cumprod_p(P.reshape(a, shape=(math.prod(shape),)), axis=0)
    if not shape:
        raise ProgramError(f"cumprod: axis {axis!r} given for a 0-d array; use axis=None")
    return cumprod_p(a, axis=axis_of("cumprod", axis, len(shape)))
