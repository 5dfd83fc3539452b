"""The Cholesky factor as a primitive (``lagrad.linalg.cholesky``): its value,
first-order rules and second-order rule, written with triangular solves.

L = chol(S) with S = tril(A) + tril(A, -1)^T: like numpy, only A's lower
triangle is read, and the rules are the derivatives of exactly that map.
With Phi(X) = tril(X) with its diagonal halved, S = L L^T gives
dS = dL L^T + L dL^T, so L^-1 dS L^-T = Phi(.) + Phi(.)^T and
dL = L Phi(L^-1 dS L^-T). Transposing (Phi is its own adjoint):
S_bar = L^-T Phi(L^T L_bar) L^-1, and A's lower triangle collects S_bar and
S_bar^T (each off-diagonal entry of A appears twice in S).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from numpy.typing import NDArray

from lagrad.errors import SolveError
from lagrad.ir import primitives as P

__all__ = ["cholesky_p"]

Array = NDArray[np.float64]
Shape = tuple[int, ...]


def _from_lower(a: Array) -> Array:
    return np.tril(a) + np.tril(a, -1).T


def _phi(x: Array) -> Array:
    return np.tril(x) - 0.5 * np.diag(np.diag(x))


def _cholesky_value(a: Array) -> Array:
    try:
        return np.linalg.cholesky(_from_lower(np.asarray(a, dtype=float)))
    except np.linalg.LinAlgError as err:
        raise SolveError(f"linalg.cholesky: the matrix of shape {np.shape(a)} (its lower "
                         "triangle, read as symmetric) is not positive definite; check how "
                         "it is built, or add a multiple of the identity") from err


def _cholesky_shape(s: Shape) -> Shape:
    if len(s) != 2 or s[0] != s[1]:
        raise ValueError(f"A must be a square matrix, got shape {s}")
    return s


def _tri_solve(l_mat: Array, b: Array, trans: int = 0) -> Array:
    return sla.solve_triangular(l_mat, b, lower=True, trans=trans, check_finite=False)


def _cholesky_jvp(ts: Sequence[Array | None], ans: Array, a: Array) -> Array:
    ds = _from_lower(np.asarray(ts[0], dtype=float))
    m = _tri_solve(ans, _tri_solve(ans, ds).T).T  # L^-1 dS L^-T (dS symmetric)
    return ans @ _phi(m)


def _sandwich(l_mat: Array, x: Array) -> Array:
    """L^-T X L^-1, by two triangular solves."""
    return _tri_solve(l_mat, _tri_solve(l_mat, x, trans=1).T, trans=1).T


def _lower_cotangent(s_bar: Array) -> Array:
    """S's cotangent as A's: each off-diagonal entry of A's lower triangle is
    read twice (S_ij and S_ji), its upper triangle never."""
    return np.tril(s_bar + s_bar.T, -1) + np.diag(np.diag(s_bar))


def _cholesky_vjp(k: int, g: Array, ans: Array, a: Array) -> Array:
    return _lower_cotangent(_sandwich(ans, _phi(ans.T @ g)))


def _cholesky_second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array,
                         a: Array) -> Array | None:
    # S_bar = L^-T Phi(L^T g) L^-1 with g fixed moves with L by dL = jvp(tA):
    # d(L^-1) = -L^-1 dL L^-1, so
    # dS_bar = -L^-T dL^T S_bar + L^-T Phi(dL^T g) L^-1 - S_bar dL L^-1,
    # and A's cotangent is the same linear map of dS_bar as of S_bar.
    if ts[0] is None:
        return None
    g = np.asarray(g, dtype=float)
    s_bar = _sandwich(ans, _phi(ans.T @ g))
    dl = _cholesky_jvp(ts, ans, a)
    left = _tri_solve(ans, dl.T @ s_bar, trans=1)  # L^-T dL^T S_bar
    right = _tri_solve(ans, dl.T @ s_bar.T, trans=1).T  # S_bar dL L^-1
    return _lower_cotangent(_sandwich(ans, _phi(dl.T @ g)) - left - right)


def _cholesky_jacobian(k: int, ans: Array, a: Array) -> sp.csr_matrix:
    n = np.shape(a)[0]
    cols = np.zeros((n * n, n * n))
    for p, q in zip(*np.tril_indices(n)):  # the upper triangle is not read
        e = np.zeros((n, n))
        e[p, q] = 1.0
        cols[:, p * n + q] = _cholesky_jvp((e,), ans, a).ravel()
    return sp.csr_matrix(cols)


cholesky_p = P.Primitive("cholesky", _cholesky_value, _cholesky_shape, vjp=_cholesky_vjp,
                         jvp=_cholesky_jvp, jacobian=_cholesky_jacobian,
                         second_vjp=_cholesky_second_vjp,
                         doc="the lower Cholesky factor of A's lower triangle")
