"""The determinant primitives of ``lagrad.linalg``: det A, log |det A| and
the sign of det A (``det`` and ``slogdet``), each from A's LU factorization
(memoized on A's values, :mod:`lagrad.ir.factors`).

d det A = det A tr(A^-1 dA), so the VJP of det is g det(A) A^-T and that of
log |det A| is g A^-T; the sign is piecewise constant (derivative zero).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from lagrad.ir import primitives as P
from lagrad.ir.factors import dense_lu, nonsingular

__all__ = ["det_p", "logabsdet_p", "sign_det_p"]

Array = NDArray[np.float64]
Shape = tuple[int, ...]


def _square_shape(s: Shape) -> Shape:
    if len(s) != 2 or s[0] != s[1]:
        raise ValueError(f"A must be a square matrix, got shape {s}")
    return ()


def _det_value(a: Array) -> Array:
    factor = dense_lu(a)
    if factor.singular:
        return np.zeros(())
    sign, logabs = factor.sign_logabsdet()
    return np.asarray(sign * math.exp(logabs))


def _inverse_transpose(a: Array, who: str) -> Array:
    return nonsingular(a, who).solve(np.eye(np.shape(a)[0]), trans=1)


def _det_vjp(k: int, g: Array, ans: Array, a: Array) -> Array:
    # d det A = det A tr(A^-1 dA): the cotangent is g det(A) A^-T
    return g * ans * _inverse_transpose(a, "linalg.det (its derivative)")


def _det_jvp(ts: Sequence[Array | None], ans: Array, a: Array) -> Array:
    return ans * np.sum(_inverse_transpose(a, "linalg.det (its derivative)") * ts[0])


def _det_jacobian(k: int, ans: Array, a: Array) -> sp.csr_matrix:
    row = ans * _inverse_transpose(a, "linalg.det (its derivative)").ravel()
    return sp.csr_matrix(row.reshape(1, -1))


def _det_second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array,
                    a: Array) -> Array | None:
    # g det(A) A^-T along tA: d det = det tr(A^-1 tA), d A^-T = -A^-T tA^T A^-T
    if ts[0] is None:
        return None
    inv_t = _inverse_transpose(a, "linalg.det (its derivative)")
    t = np.asarray(ts[0])
    return g * ans * (np.sum(inv_t * t) * inv_t - inv_t @ t.T @ inv_t)


det_p = P.Primitive("det", _det_value, _square_shape, vjp=_det_vjp, jvp=_det_jvp,
                    jacobian=_det_jacobian, second_vjp=_det_second_vjp, doc="det A by LU")


def _logabsdet_value(a: Array) -> Array:
    return np.asarray(nonsingular(a, "linalg.slogdet").sign_logabsdet()[1])


def _logabsdet_vjp(k: int, g: Array, ans: Array, a: Array) -> Array:
    return g * _inverse_transpose(a, "linalg.slogdet")  # d log|det A| = tr(A^-1 dA)


def _logabsdet_jvp(ts: Sequence[Array | None], ans: Array, a: Array) -> Array:
    return np.sum(_inverse_transpose(a, "linalg.slogdet") * ts[0])


def _logabsdet_jacobian(k: int, ans: Array, a: Array) -> sp.csr_matrix:
    return sp.csr_matrix(_inverse_transpose(a, "linalg.slogdet").reshape(1, -1))


def _logabsdet_second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array,
                          a: Array) -> Array | None:
    if ts[0] is None:  # g A^-T along tA: -g A^-T tA^T A^-T
        return None
    inv_t = _inverse_transpose(a, "linalg.slogdet")
    return -g * (inv_t @ np.asarray(ts[0]).T @ inv_t)


logabsdet_p = P.Primitive("logabsdet", _logabsdet_value, _square_shape, vjp=_logabsdet_vjp,
                          jvp=_logabsdet_jvp, jacobian=_logabsdet_jacobian,
                          second_vjp=_logabsdet_second_vjp,
                          doc="log |det A| by LU")


def _sign_value(a: Array) -> Array:
    factor = dense_lu(a)
    return np.zeros(()) if factor.singular else np.asarray(factor.sign_logabsdet()[0])


def _sign_vjp(k: int, g: Array, ans: Array, a: Array) -> Array:
    return np.zeros(np.shape(a))  # piecewise constant


def _sign_jvp(ts: Sequence[Array | None], ans: Array, a: Array) -> Array:
    return np.zeros(())


def _sign_jacobian(k: int, ans: Array, a: Array) -> sp.csr_matrix:
    return sp.csr_matrix((1, np.size(a)))


sign_det_p = P.Primitive("sign_det", _sign_value, _square_shape, vjp=_sign_vjp,
                         jvp=_sign_jvp, jacobian=_sign_jacobian,
                         second_vjp=P.linear_second_vjp,
                         doc="the sign of det A (derivative zero)")
