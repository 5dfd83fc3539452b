"""``lagrad.linalg.qr``: the reduced QR factorization of a tall matrix of full
column rank (m >= n), as :func:`numpy.linalg.qr` (mode "reduced"), with
first and second derivatives.

With A = Q R and X = Q^T dA R^-1, the part of X below the diagonal is that
of Q^T dQ (antisymmetric, as Q^T Q = I) and the rest is dR R^-1 (upper
triangular): with Omega = tril(X, -1) - tril(X, -1)^T and U = X - Omega,

* JVP: dR = U R, dQ = dA R^-1 - Q U;
* VJP: with M = R Rbar^T - Qbar^T Q and copyltu(M) the symmetric matrix
  of M's lower triangle, Abar = (Qbar + Q copyltu(M)) R^-T.

Q's and R's signs are LAPACK's; the rules follow them. The second-order
term is the VJP's derivative by the product rule, with dQ and dR from the
JVP and d R^-T = -R^-T dR^T R^-T.

>>> import numpy as np, lagrad
>>> a = np.array([[3.0, 1.0], [4.0, 2.0], [0.0, 1.0]])
>>> q, r = lagrad.linalg.qr(a)
>>> bool(np.allclose(q @ r, a))
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg
from numpy.typing import NDArray

from lagrad.errors import ProgramError
from lagrad.ir.arrayops import shape_of
from lagrad.ir.eigen import jacobian_by_jvp
from lagrad.ir.primitives import Primitive
from lagrad.ir.stacks import per_matrix

__all__ = ["qr", "QRResult", "qr_q_p", "qr_r_p"]

Array = NDArray[np.float64]
Shape = tuple[int, ...]


def _factors(a: Array) -> tuple[Array, Array]:
    q, r = np.linalg.qr(a)
    return q, r


def _right_solve(b: Array, r: Array) -> Array:
    """b R^-1 (R upper triangular), row by row, so ``b`` may be a stack."""
    rows = np.reshape(b, (-1, r.shape[0]))
    return scipy.linalg.solve_triangular(r, rows.T, trans="T", lower=False).T.reshape(b.shape)


def _u(a: Array, da: Array) -> tuple[Array, Array, Array]:
    """Q, R and U (see the module's docstring) for the tangent ``da``."""
    q, r = _factors(a)
    x = q.T @ _right_solve(da, r)
    low = np.tril(x, -1)
    return q, r, x - (low - np.swapaxes(low, -1, -2))


def _q_jvp(ts: Sequence[Array | None], ans: Array, a: Array) -> Array:
    da = np.asarray(ts[0], dtype=float)
    q, r, u = _u(a, da)
    return _right_solve(da, r) - q @ u


def _r_jvp(ts: Sequence[Array | None], ans: Array, a: Array) -> Array:
    _, r, u = _u(a, np.asarray(ts[0], dtype=float))
    return u @ r


def _abar(a: Array, q_bar: Array, r_bar: Array) -> Array:
    q, r = _factors(a)
    m = r @ r_bar.T - q_bar.T @ q
    # (Qbar + Q copyltu(M)) R^-T: R Y^T = (Qbar + Q copyltu(M))^T
    return scipy.linalg.solve_triangular(r, (q_bar + q @ _copyltu(m)).T, lower=False).T


def _q_vjp(k: int, g: Array, ans: Array, a: Array) -> Array:
    return _abar(a, np.asarray(g, dtype=float), np.zeros((a.shape[1], a.shape[1])))


def _r_vjp(k: int, g: Array, ans: Array, a: Array) -> Array:
    return _abar(a, np.zeros(a.shape), np.asarray(g, dtype=float))


def _copyltu(m: Array) -> Array:
    """The symmetric matrix of ``m``'s lower triangle."""
    low = np.tril(m, -1)
    return low + low.T + np.diag(np.diag(m))


def _abar_second(a: Array, q_bar: Array, r_bar: Array, t: Array) -> Array:
    """The derivative of (Qbar + Q copyltu(M)) R^-T along dA = T, with dQ and
    dR from the JVPs: (dQ S + Q dS) R^-T - (Qbar + Q S) R^-T dR^T R^-T, where
    S = copyltu(M) and dS = copyltu(dR Rbar^T - Qbar^T dQ)."""
    q, r = _factors(a)
    dq = _q_jvp([t], q, a)
    dr = _r_jvp([t], r, a)
    big_s = _copyltu(r @ r_bar.T - q_bar.T @ q)
    d_s = _copyltu(dr @ r_bar.T - q_bar.T @ dq)

    def right_inv_t(b: Array) -> Array:  # b R^-T: R Y^T = b^T
        return scipy.linalg.solve_triangular(r, b.T, lower=False).T
    first = right_inv_t(q_bar + q @ big_s)
    return right_inv_t(dq @ big_s + q @ d_s) - right_inv_t(first @ dr.T)


def _q_second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array,
                  a: Array) -> Array | None:
    if ts[0] is None:
        return None
    return _abar_second(a, np.asarray(g, dtype=float), np.zeros((a.shape[1], a.shape[1])),
                        np.asarray(ts[0], dtype=float))


def _r_second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array,
                  a: Array) -> Array | None:
    if ts[0] is None:
        return None
    return _abar_second(a, np.zeros(a.shape), np.asarray(g, dtype=float),
                        np.asarray(ts[0], dtype=float))


def _q_value(a: Array) -> Array:
    return _factors(a)[0]


def _r_value(a: Array) -> Array:
    return _factors(a)[1]


def _q_shape(s: Shape) -> Shape:
    _check(s)
    return s


def _r_shape(s: Shape) -> Shape:
    _check(s)
    return (s[1], s[1])


def _check(s: Shape) -> None:
    if len(s) != 2 or s[0] < s[1]:
        raise ValueError(f"qr: a has shape {s}; give a tall or square matrix (m >= n)")


qr_q_p = Primitive("qr_q", _q_value, _q_shape, vjp=_q_vjp, jvp=_q_jvp,
                   jacobian=jacobian_by_jvp(_q_jvp), second_vjp=_q_second_vjp,
                   doc="Q of the reduced QR factorization")
qr_r_p = Primitive("qr_r", _r_value, _r_shape, vjp=_r_vjp, jvp=_r_jvp,
                   jacobian=jacobian_by_jvp(_r_jvp), second_vjp=_r_second_vjp,
                   doc="R of the reduced QR factorization")


class QRResult(NamedTuple):
    """numpy's ``QRResult``: ``(Q, R)``."""

    Q: Any  # noqa: N815 (numpy's names)
    R: Any  # noqa: N815


def qr(a: Any, mode: str = "reduced") -> QRResult:
    """Q and R of ``a`` = Q R (Q with orthonormal columns, R upper triangular),
    as :func:`numpy.linalg.qr` in mode "reduced", for a tall or square ``a``
    of full column rank."""
    if mode != "reduced":
        raise ProgramError(f"linalg.qr: only mode='reduced' on traced values, got {mode!r}")
    shape = shape_of(a)
    if len(shape) < 2 or shape[-2] < shape[-1] or not shape[-1]:
        raise ProgramError(f"linalg.qr: a has shape {shape}; give a tall or square matrix "
                           "(m >= n >= 1) or a stack of them")
    if len(shape) > 2:  # a stack: one factorization per matrix
        return per_matrix(qr, "linalg.qr", a)
    return QRResult(qr_q_p(a), qr_r_p(a))
