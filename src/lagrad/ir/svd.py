"""``lagrad.linalg.svd`` with the singular vectors: the reduced SVD
A = U diag(s) Vh of a matrix or a stack, as :func:`numpy.linalg.svd` with
``full_matrices=False`` (or a square A), with first and second derivatives.

With k = min(m, n), V = Vh^T, S = diag(s), dP = U^T dA V and
F_ij = 1 / (s_j^2 - s_i^2) off the diagonal (0 on it):

* JVP: dU = U (F o (dP S + S dP^T)) + (I - U U^T) dA V S^-1,
  dV = V (F o (S dP + dP^T S)) + (I - V V^T) dA^T U S^-1;
* VJP: with X = F o (U^T Ubar) and Y = F o (V^T Vbar), the cotangent of A
  is U (X + X^T) S V^T + (I - U U^T) Ubar S^-1 V^T from U, and
  U S (Y + Y^T) V^T + U S^-1 Vbar^T (I - V V^T) from V (Townsend's form).

They need distinct nonzero singular values. A singular vector's sign (of a
pair u_i, v_i) is LAPACK's choice at each solve: differentiate what does not
depend on it (u_i v_i^T, U diag(s) Vh, squares). The second-order terms
differentiate these VJPs by the product rule, with dU, dV from the JVPs,
ds = diag(dP) and dF_ij = -2 (s_j ds_j - s_i ds_i) F_ij^2.

>>> import numpy as np, lagrad
>>> a = np.array([[3.0, 1.0], [1.0, 2.0], [0.0, 1.0]])
>>> g = lagrad.grad(lambda m: np.sum(np.linalg.svd(m, full_matrices=False).U[:, 0] ** 2))(a)
>>> g.shape
(3, 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from lagrad.errors import ProgramError
from lagrad.ir.arrayops import shape_of
from lagrad.ir.eigen import jacobian_by_jvp, svdvals
from lagrad.ir.primitives import Primitive

__all__ = ["svd", "SVDResult", "svd_u_p", "svd_vh_p"]

Array = NDArray[np.float64]
Shape = tuple[int, ...]


def _t(x: Array) -> Array:
    return np.swapaxes(x, -1, -2)


def _parts(a: Array) -> tuple[Array, Array, Array, Array]:
    """U, s, V and F of the reduced SVD."""
    u, s, vh = np.linalg.svd(np.asarray(a, dtype=float), full_matrices=False)
    sq = s * s
    gap = sq[..., None, :] - sq[..., :, None]  # s_j^2 - s_i^2
    off = ~np.eye(s.shape[-1], dtype=bool)
    f = np.divide(1.0, gap, out=np.zeros_like(gap), where=off)
    return u, s, _t(vh), f


def _u_value(a: Array) -> Array:
    return np.linalg.svd(np.asarray(a, dtype=float), full_matrices=False)[0]


def _vh_value(a: Array) -> Array:
    return np.linalg.svd(np.asarray(a, dtype=float), full_matrices=False)[2]


def _u_shape(s: Shape) -> Shape:
    _check(s)
    return s[:-1] + (min(s[-2:]),)


def _vh_shape(s: Shape) -> Shape:
    _check(s)
    return s[:-2] + (min(s[-2:]), s[-1])


def _check(s: Shape) -> None:
    if len(s) < 2:
        raise ValueError(f"svd: a has shape {s}; give a matrix or a stack of them")


def _u_jvp(ts: Sequence[Array | None], ans: Array, a: Array) -> Array:
    u, s, v, f = _parts(a)
    da = np.asarray(ts[0], dtype=float)
    dp = _t(u) @ da @ v
    rest = da @ v / s[..., None, :] - u @ (_t(u) @ da @ v / s[..., None, :])
    return u @ (f * (dp * s[..., None, :] + s[..., :, None] * _t(dp))) + rest


def _vh_jvp(ts: Sequence[Array | None], ans: Array, a: Array) -> Array:
    u, s, v, f = _parts(a)
    da = np.asarray(ts[0], dtype=float)
    dp = _t(u) @ da @ v
    rest = _t(da) @ u / s[..., None, :] - v @ (_t(v) @ _t(da) @ u / s[..., None, :])
    return _t(v @ (f * (s[..., :, None] * dp + _t(dp) * s[..., None, :])) + rest)


def _u_vjp(k: int, g: Array, ans: Array, a: Array) -> Array:
    u, s, v, f = _parts(a)
    g = np.asarray(g, dtype=float)
    x = f * (_t(u) @ g)
    inner = (x + _t(x)) * s[..., None, :]
    outside = (g - u @ (_t(u) @ g)) / s[..., None, :]
    return (u @ inner + outside) @ _t(v)


def _vh_vjp(k: int, g: Array, ans: Array, a: Array) -> Array:
    u, s, v, f = _parts(a)
    vbar = _t(np.asarray(g, dtype=float))
    y = f * (_t(v) @ vbar)
    inner = s[..., :, None] * (y + _t(y))
    outside = (_t(vbar) - (_t(vbar) @ v) @ _t(v)) / s[..., :, None]
    return u @ (inner @ _t(v) + outside)


class _Moved(NamedTuple):
    """The SVD's parts and their derivatives along a tangent T of A."""

    u: Array
    s: Array
    v: Array
    f: Array
    du: Array
    ds: Array
    dv: Array
    df: Array


def _moved(a: Array, t: Array) -> _Moved:
    u, s, v, f = _parts(a)
    dp = _t(u) @ t @ v
    ds = np.diagonal(dp, axis1=-2, axis2=-1)
    d_sq = 2.0 * s * ds
    df = -(d_sq[..., None, :] - d_sq[..., :, None]) * f * f
    return _Moved(u, s, v, f, _u_jvp([t], u, a), ds, _t(_vh_jvp([t], _t(v), a)), df)


def _u_second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array,
                  a: Array) -> Array | None:
    """The U cotangent (U (X + X^T) S + (I - U U^T) G S^-1) V^T, X = F o (U^T G),
    differentiated along T by the product rule."""
    if ts[0] is None:
        return None
    m = _moved(a, np.asarray(ts[0], dtype=float))
    g = np.asarray(g, dtype=float)
    x = m.f * (_t(m.u) @ g)
    dx = m.df * (_t(m.u) @ g) + m.f * (_t(m.du) @ g)
    sym, d_sym = x + _t(x), dx + _t(dx)
    outside = (g - m.u @ (_t(m.u) @ g)) / m.s[..., None, :]
    d_outside = (-(m.du @ (_t(m.u) @ g) + m.u @ (_t(m.du) @ g)) / m.s[..., None, :]
                 - outside * (m.ds / m.s)[..., None, :])
    left = m.u @ (sym * m.s[..., None, :]) + outside
    d_left = (m.du @ (sym * m.s[..., None, :])
              + m.u @ (d_sym * m.s[..., None, :] + sym * m.ds[..., None, :]) + d_outside)
    return d_left @ _t(m.v) + left @ _t(m.dv)


def _vh_second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array,
                   a: Array) -> Array | None:
    """The Vh cotangent U (S (Y + Y^T) V^T + S^-1 Vbar^T (I - V V^T)),
    Y = F o (V^T Vbar), differentiated along T by the product rule."""
    if ts[0] is None:
        return None
    m = _moved(a, np.asarray(ts[0], dtype=float))
    vbar = _t(np.asarray(g, dtype=float))
    y = m.f * (_t(m.v) @ vbar)
    dy = m.df * (_t(m.v) @ vbar) + m.f * (_t(m.dv) @ vbar)
    sym, d_sym = y + _t(y), dy + _t(dy)
    proj = _t(vbar) - (_t(vbar) @ m.v) @ _t(m.v)  # Vbar^T (I - V V^T)
    d_proj = -(_t(vbar) @ m.dv) @ _t(m.v) - (_t(vbar) @ m.v) @ _t(m.dv)
    inner = (m.s[..., :, None] * sym) @ _t(m.v) + proj / m.s[..., :, None]
    d_inner = ((m.ds[..., :, None] * sym + m.s[..., :, None] * d_sym) @ _t(m.v)
               + (m.s[..., :, None] * sym) @ _t(m.dv)
               + d_proj / m.s[..., :, None] - proj * (m.ds / m.s ** 2)[..., :, None])
    return m.du @ inner + m.u @ d_inner


svd_u_p = Primitive("svd_u", _u_value, _u_shape, vjp=_u_vjp, jvp=_u_jvp,
                    jacobian=jacobian_by_jvp(_u_jvp), second_vjp=_u_second_vjp,
                    doc="U of the reduced SVD")
svd_vh_p = Primitive("svd_vh", _vh_value, _vh_shape, vjp=_vh_vjp, jvp=_vh_jvp,
                     jacobian=jacobian_by_jvp(_vh_jvp), second_vjp=_vh_second_vjp,
                     doc="Vh of the reduced SVD")


class SVDResult(NamedTuple):
    """numpy's ``SVDResult``: ``(U, S, Vh)``."""

    U: Any  # noqa: N815 (numpy's names)
    S: Any  # noqa: N815
    Vh: Any  # noqa: N815


def svd(a: Any, full_matrices: bool = True, compute_uv: bool = True,
        hermitian: bool = False) -> Any:
    """:func:`numpy.linalg.svd`: the singular values (``compute_uv=False``,
    with first and second derivatives), or the reduced SVD ``(U, S, Vh)``
    (``full_matrices=False``, or a square matrix), with first and second
    derivatives."""
    if not compute_uv:
        return svdvals(a)
    shape = shape_of(a)
    if len(shape) < 2 or not min(shape[-2:]):
        raise ProgramError(f"linalg.svd: a has shape {shape}; give a non-empty matrix or a "
                           "stack of them")
    if hermitian:
        raise ProgramError("linalg.svd: hermitian=True picks other signs for the vectors; on "
                           "traced values use hermitian=False, or linalg.eigh")
    if full_matrices and shape[-1] != shape[-2]:
        raise ProgramError("linalg.svd: the full U or Vh of a non-square matrix has no unique "
                           "derivative (its extra columns are any basis); give "
                           "full_matrices=False")
    return SVDResult(svd_u_p(a), svdvals(a), svd_vh_p(a))
