"""``lagrad.linalg.eigvalsh``, ``eigh`` and ``svdvals``: the eigenvalues
(and eigenvectors) of a symmetric matrix, ascending, as
:func:`numpy.linalg.eigvalsh` and :func:`numpy.linalg.eigh`, and the
singular values of a matrix, descending, as :func:`numpy.linalg.svdvals`
(also ``np.linalg.svd(a, compute_uv=False)``), for a matrix or a stack.

Singular values: with A = U diag(s) V^T, d s_k = u_k^T dA v_k, so the VJP
is U diag(g) V^T, and its derivative comes from the SVD's (see
``_sv_second_vjp``). A repeated or zero singular value has no unique
derivative: the first-order rules then use numpy's vectors, and the
second-order one gives a non-finite Hessian, which the solve reports.

numpy reads one triangle only (``UPLO``, the lower by default): the value is
that of S = the triangle mirrored, so the derivative with respect to the
other triangle is zero, and an off-diagonal entry of the read triangle
counts twice. With S = V diag(lambda) V^T:

* JVP: d lambda_k = v_k^T dS v_k;
* VJP: M = V diag(g) V^T, read back onto the triangle (off-diagonal
  entries doubled, the other triangle zero);
* second order: dV = V (F o (V^T dS V)), F_ij = 1 / (lambda_j - lambda_i)
  off the diagonal, and dM = dV diag(g) V^T + V diag(g) dV^T. It needs
  distinct eigenvalues (a repeated one gives a non-finite Hessian, which
  the solve reports); the first derivative of a function of all of them
  (a trace, a sum) does not.

>>> import numpy as np, lagrad
>>> a = np.array([[2.0, 0.0], [1.0, 3.0]])  # the lower triangle is read
>>> lagrad.jacobian(lambda a: lagrad.linalg.eigvalsh(a))(a)[1]
array([[0.2763932 , 0.        ],
       [0.89442719, 0.7236068 ]])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from lagrad.errors import ProgramError
from lagrad.ir.arrayops import shape_of
from lagrad.ir.primitives import Primitive

__all__ = ["eigvalsh", "eigvalsh_p", "eigh", "eigvecsh_p", "EighResult", "svdvals",
           "svdvals_p", "pinv", "pinv_p", "jvp_columns", "jacobian_by_jvp"]

Array = NDArray[np.float64]
Shape = tuple[int, ...]


def _mirror(a: Array, uplo: str) -> Array:
    """S: the ``uplo`` triangle of ``a`` mirrored onto the other."""
    keep = np.tril(a) if uplo == "L" else np.triu(a)
    return keep + np.swapaxes(keep, -1, -2) - np.diagonal(a, axis1=-2, axis2=-1)[..., None] \
        * np.eye(a.shape[-1])


def _onto_triangle(m: Array, uplo: str) -> Array:
    """A symmetric cotangent M of S as the cotangent of ``a``: the read
    triangle's off-diagonal entries twice, its diagonal once."""
    doubled = np.tril(2.0 * m) if uplo == "L" else np.triu(2.0 * m)
    return doubled - np.diagonal(m, axis1=-2, axis2=-1)[..., None] * np.eye(m.shape[-1])


def _value(a: Array, *, uplo: str = "L") -> Array:
    return np.linalg.eigvalsh(a, UPLO=uplo)


def _shape(s: Shape, *, uplo: str = "L") -> Shape:
    if len(s) < 2 or s[-1] != s[-2]:
        raise ValueError(f"eigvalsh: a has shape {s}; give a square matrix or a stack of them")
    return s[:-1]


def _vjp(k: int, g: Array, ans: Array, a: Array, *, uplo: str = "L") -> Array:
    _, v = np.linalg.eigh(a, UPLO=uplo)
    return _onto_triangle((v * np.asarray(g)[..., None, :]) @ np.swapaxes(v, -1, -2), uplo)


def _jvp(ts: Sequence[Array | None], ans: Array, a: Array, *, uplo: str = "L") -> Array:
    _, v = np.linalg.eigh(a, UPLO=uplo)
    ds = _mirror(np.asarray(ts[0], dtype=float), uplo)
    return np.einsum("...ik,...ij,...jk->...k", v, ds, v)


def _jacobian(k: int, ans: Array, a: Array, *, uplo: str = "L") -> sp.csr_matrix:
    _, v = np.linalg.eigh(a, UPLO=uplo)
    n = a.shape[-1]
    # d lambda_k / d a_ij = v_ik v_jk, doubled off the diagonal of the read triangle
    per = np.einsum("...ik,...jk->...kij", v, v)
    per = _onto_triangle(per, uplo).reshape(-1, n, n * n)
    blocks = [sp.csr_matrix(b) for b in per]
    return sp.block_diag(blocks, format="csr") if len(blocks) > 1 else blocks[0]


def _second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array, a: Array, *,
                uplo: str = "L") -> Array | None:
    if ts[0] is None:
        return None
    lam, v = np.linalg.eigh(a, UPLO=uplo)
    vt = np.swapaxes(v, -1, -2)
    gap = lam[..., None, :] - lam[..., :, None]  # lambda_j - lambda_i
    off = ~np.eye(lam.shape[-1], dtype=bool)
    f = np.divide(1.0, gap, out=np.zeros_like(gap), where=off)
    dv = v @ (f * (vt @ _mirror(np.asarray(ts[0], dtype=float), uplo) @ v))
    vg = dv * np.asarray(g)[..., None, :] @ vt
    return _onto_triangle(vg + np.swapaxes(vg, -1, -2), uplo)


eigvalsh_p = Primitive("eigvalsh", _value, _shape, vjp=_vjp, jvp=_jvp, jacobian=_jacobian,
                       second_vjp=_second_vjp,
                       doc="eigenvalues of the symmetric matrix one triangle defines")


def eigvalsh(a: Any, UPLO: str = "L") -> Any:  # noqa: N803 (numpy's name)
    """The eigenvalues of the symmetric matrix whose ``UPLO`` triangle ("L"
    or "U") is read, ascending, as :func:`numpy.linalg.eigvalsh`."""
    if UPLO not in ("L", "U"):
        raise ProgramError(f"linalg.eigvalsh: UPLO must be 'L' or 'U', got {UPLO!r}")
    shape = shape_of(a)
    if len(shape) < 2 or shape[-1] != shape[-2] or not math.prod(shape):
        raise ProgramError(f"linalg.eigvalsh: a has shape {shape}; give a non-empty square "
                           "matrix or a stack of them")
    return eigvalsh_p(a, uplo=UPLO)


# -------------------------------------------------------------- eigenvectors

def _vectors_value(a: Array, *, uplo: str = "L") -> Array:
    return np.linalg.eigh(a, UPLO=uplo)[1]


def _vectors_shape(s: Shape, *, uplo: str = "L") -> Shape:
    _shape(s, uplo=uplo)
    return s


def _gaps(lam: Array) -> Array:
    """F_ij = 1 / (lambda_j - lambda_i) off the diagonal, 0 on it."""
    gap = lam[..., None, :] - lam[..., :, None]
    off = ~np.eye(lam.shape[-1], dtype=bool)
    return np.divide(1.0, gap, out=np.zeros_like(gap), where=off)


def _vectors_jvp(ts: Sequence[Array | None], ans: Array, a: Array, *, uplo: str = "L") -> Array:
    lam, v = np.linalg.eigh(a, UPLO=uplo)
    vt = np.swapaxes(v, -1, -2)
    return v @ (_gaps(lam) * (vt @ _mirror(np.asarray(ts[0], dtype=float), uplo) @ v))


def _vectors_vjp(k: int, g: Array, ans: Array, a: Array, *, uplo: str = "L") -> Array:
    lam, v = np.linalg.eigh(a, UPLO=uplo)
    vt = np.swapaxes(v, -1, -2)
    s_bar = v @ (_gaps(lam) * (vt @ np.asarray(g, dtype=float))) @ vt
    return _onto_triangle(0.5 * (s_bar + np.swapaxes(s_bar, -1, -2)), uplo)


def jvp_columns(jvp: Callable[..., Array], ans: Array, a: Array, **params: Any
                ) -> sp.csr_matrix:
    """The local Jacobian of a primitive of one matrix (or of each matrix of
    a stack, block-diagonal): its JVP of every unit tangent at once, as one
    stack of tangents, so the factorization is made once per matrix. The JVP
    must take a stack of tangents (its products broadcast)."""
    m, n = a.shape[-2:]
    units = np.eye(m * n).reshape(m * n, m, n)
    outs = np.reshape(ans, (-1,) + np.shape(ans)[a.ndim - 2:])
    blocks = [sp.csr_matrix(np.reshape(jvp([units], out, one, **params), (m * n, -1)).T)
              for one, out in zip(np.reshape(a, (-1, m, n)), outs)]
    return sp.block_diag(blocks, format="csr") if len(blocks) > 1 else blocks[0]


def jacobian_by_jvp(jvp: Callable[..., Array]) -> Callable[..., sp.csr_matrix]:
    """A primitive's ``jacobian`` rule from its JVP, by :func:`jvp_columns`
    (a primitive of one matrix, or of each of a stack)."""
    def jacobian(k: int, ans: Array, a: Array, **params: Any) -> sp.csr_matrix:
        return jvp_columns(jvp, ans, a, **params)
    return jacobian


_vectors_jacobian = jacobian_by_jvp(_vectors_jvp)


def _vectors_second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array, a: Array,
                        *, uplo: str = "L") -> Array | None:
    """The VJP V X V^T (X = F o (V^T G), then symmetrized onto the triangle)
    along dS: W = V^T dS V gives dV = V (F o W) and d lambda = diag(W), so
    dF_ij = -(d lambda_j - d lambda_i) F_ij^2 and dX = dF o (V^T G) + F o (dV^T G)."""
    if ts[0] is None:
        return None
    lam, v = np.linalg.eigh(a, UPLO=uplo)
    vt, f = np.swapaxes(v, -1, -2), _gaps(lam)
    w = vt @ _mirror(np.asarray(ts[0], dtype=float), uplo) @ v
    dv = v @ (f * w)
    dlam = np.diagonal(w, axis1=-2, axis2=-1)
    df = -(dlam[..., None, :] - dlam[..., :, None]) * f * f
    g = np.asarray(g, dtype=float)
    x = f * (vt @ g)
    dx = df * (vt @ g) + f * (np.swapaxes(dv, -1, -2) @ g)
    d_bar = dv @ x @ vt + v @ dx @ vt + v @ x @ np.swapaxes(dv, -1, -2)
    return _onto_triangle(0.5 * (d_bar + np.swapaxes(d_bar, -1, -2)), uplo)


eigvecsh_p = Primitive("eigvecsh", _vectors_value, _vectors_shape, vjp=_vectors_vjp,
                       jvp=_vectors_jvp, jacobian=_vectors_jacobian,
                       second_vjp=_vectors_second_vjp,
                       doc="eigenvectors (columns) of the symmetric matrix one triangle defines")


class EighResult(NamedTuple):
    """numpy's ``EighResult``: ``(eigenvalues, eigenvectors)``."""

    eigenvalues: Any
    eigenvectors: Any


def eigh(a: Any, UPLO: str = "L") -> EighResult:  # noqa: N803 (numpy's name)
    """Eigenvalues (ascending) and eigenvectors (columns) of the symmetric
    matrix whose ``UPLO`` triangle is read, as :func:`numpy.linalg.eigh`.
    An eigenvector's sign is numpy's choice at each solve: differentiate
    functions that do not depend on it (v v^T, squares of its entries). The
    vectors' first and second derivatives need distinct eigenvalues."""
    return EighResult(eigvalsh(a, UPLO), eigvecsh_p(a, uplo=UPLO))


# ----------------------------------------------------------- singular values

def _svd(a: Array) -> tuple[Array, Array]:
    """U and V (not V^T) of the thin SVD: columns u_k, v_k."""
    u, _, vt = np.linalg.svd(a, full_matrices=False)
    return u, np.swapaxes(vt, -1, -2)


def _sv_value(a: Array) -> Array:
    return np.linalg.svd(a, compute_uv=False)


def _sv_shape(s: Shape) -> Shape:
    if len(s) < 2:
        raise ValueError(f"svdvals: a has shape {s}; give a matrix or a stack of them")
    return s[:-2] + (min(s[-2:]),)


def _sv_vjp(k: int, g: Array, ans: Array, a: Array) -> Array:
    u, v = _svd(a)
    return (u * np.asarray(g)[..., None, :]) @ np.swapaxes(v, -1, -2)


def _sv_jvp(ts: Sequence[Array | None], ans: Array, a: Array) -> Array:
    u, v = _svd(a)
    return np.einsum("...ik,...ij,...jk->...k", u, np.asarray(ts[0], dtype=float), v)


def _sv_jacobian(k: int, ans: Array, a: Array) -> sp.csr_matrix:
    u, v = _svd(a)
    m, n = a.shape[-2:]
    per = np.einsum("...ik,...jk->...kij", u, v).reshape(-1, min(m, n), m * n)
    blocks = [sp.csr_matrix(b) for b in per]
    return sp.block_diag(blocks, format="csr") if len(blocks) > 1 else blocks[0]


def _sv_second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array,
                   a: Array) -> Array | None:
    """d(U diag(g) V^T) along dA, from the thin SVD's derivative (m >= n; a
    wide matrix through its transpose): with F_ij = 1 / (s_j^2 - s_i^2) off
    the diagonal, P = U^T dA V,
    dU = U (F o (P S + S P^T)) + (I - U U^T) dA V S^-1,
    dV = V (F o (S P + P^T S)) + (I - V V^T) dA^T U S^-1.
    Needs distinct nonzero singular values (else a non-finite Hessian)."""
    if ts[0] is None:
        return None
    da = np.asarray(ts[0], dtype=float)
    wide = a.shape[-2] < a.shape[-1]
    if wide:
        a, da = np.swapaxes(a, -1, -2), np.swapaxes(da, -1, -2)
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    v, ut = np.swapaxes(vt, -1, -2), np.swapaxes(u, -1, -2)
    sq = s * s
    gap = sq[..., None, :] - sq[..., :, None]  # s_j^2 - s_i^2
    f = np.divide(1.0, gap, out=np.zeros_like(gap), where=~np.eye(s.shape[-1], dtype=bool))
    p = ut @ da @ v
    pt = np.swapaxes(p, -1, -2)
    sm = s[..., None, :]  # times S on the right: columns scaled
    du = u @ (f * (p * sm + s[..., :, None] * pt)) + (da @ v - u @ p) / sm
    dv = v @ (f * (s[..., :, None] * p + pt * sm)) + \
        (np.swapaxes(da, -1, -2) @ u - v @ pt) / sm
    gs = np.asarray(g)[..., None, :]
    out = (du * gs) @ vt + (u * gs) @ np.swapaxes(dv, -1, -2)
    return np.swapaxes(out, -1, -2) if wide else out


svdvals_p = Primitive("svdvals", _sv_value, _sv_shape, vjp=_sv_vjp, jvp=_sv_jvp,
                      jacobian=_sv_jacobian, second_vjp=_sv_second_vjp,
                      doc="singular values, descending")


def svdvals(x: Any, /) -> Any:
    """The singular values of ``x``, descending, as :func:`numpy.linalg.svdvals`."""
    shape = shape_of(x)
    if len(shape) < 2 or not math.prod(shape):
        raise ProgramError(f"linalg.svdvals: x has shape {shape}; give a non-empty matrix or "
                           "a stack of them")
    return svdvals_p(x)


# ------------------------------------------------------------ pseudo-inverse

def _pinv_value(a: Array) -> Array:
    return np.linalg.pinv(a)


def _pinv_shape(s: Shape) -> Shape:
    if len(s) < 2:
        raise ValueError(f"pinv: a has shape {s}; give a matrix or a stack of them")
    return s[:-2] + (s[-1], s[-2])


def _t(x: Array) -> Array:
    return np.swapaxes(x, -1, -2)


def _pinv_jvp(ts: Sequence[Array | None], ans: Array, a: Array) -> Array:
    """dA+ = -A+ dA A+ + A+ A+^T dA^T (I - A A+) + (I - A+ A) dA^T A+^T A+
    (Golub and Pereyra: the derivative at constant rank)."""
    da, p = np.asarray(ts[0], dtype=float), ans
    left = np.eye(a.shape[-2]) - a @ p  # I - A A+, (m, m)
    right = np.eye(a.shape[-1]) - p @ a  # I - A+ A, (n, n)
    return -p @ da @ p + p @ _t(p) @ _t(da) @ left + right @ _t(da) @ _t(p) @ p


def _pinv_vjp(k: int, g: Array, ans: Array, a: Array) -> Array:
    p, g = ans, np.asarray(g, dtype=float)
    left = np.eye(a.shape[-2]) - a @ p
    right = np.eye(a.shape[-1]) - p @ a
    return -_t(p) @ g @ _t(p) + left @ _t(g) @ p @ _t(p) + _t(p) @ p @ _t(g) @ right


_pinv_jacobian = jacobian_by_jvp(_pinv_jvp)


def _pinv_second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array,
                     a: Array) -> Array | None:
    """The VJP -P^T G P^T + (I - A P) G^T P P^T + P^T P G^T (I - P A)
    along dA = T, by the product rule, with dP the JVP (same rank)."""
    if ts[0] is None:
        return None
    p, g, t = ans, np.asarray(g, dtype=float), np.asarray(ts[0], dtype=float)
    dp = _pinv_jvp([t], ans, a)
    left = np.eye(a.shape[-2]) - a @ p
    right = np.eye(a.shape[-1]) - p @ a
    d_left, d_right = -(t @ p + a @ dp), -(dp @ a + p @ t)
    ppt, d_ppt = p @ _t(p), dp @ _t(p) + p @ _t(dp)
    ptp, d_ptp = _t(p) @ p, _t(dp) @ p + _t(p) @ dp
    return (-_t(dp) @ g @ _t(p) - _t(p) @ g @ _t(dp)
            + d_left @ _t(g) @ ppt + left @ _t(g) @ d_ppt
            + d_ptp @ _t(g) @ right + ptp @ _t(g) @ d_right)


pinv_p = Primitive("pinv", _pinv_value, _pinv_shape, vjp=_pinv_vjp, jvp=_pinv_jvp,
                   jacobian=_pinv_jacobian, second_vjp=_pinv_second_vjp,
                   doc="Moore-Penrose pseudo-inverse")


def pinv(a: Any, rcond: Any = None, hermitian: bool = False, *, rtol: Any = None) -> Any:
    """The Moore-Penrose pseudo-inverse of a matrix (or a stack), as
    :func:`numpy.linalg.pinv`
    (numpy's default cutoff of small singular values). Its first and second
    derivatives hold where the rank does not change (Golub and Pereyra's
    formula, and its derivative)."""
    if rcond is not None or rtol is not None:
        raise ProgramError("linalg.pinv: only numpy's default cutoff (no rcond, rtol) on "
                           "traced values")
    shape = shape_of(a)
    if len(shape) < 2 or not math.prod(shape):
        raise ProgramError(f"linalg.pinv: a has shape {shape}; give a non-empty matrix or a "
                           "stack of them")
    return pinv_p(a)
