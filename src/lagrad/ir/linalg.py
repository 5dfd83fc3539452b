"""Linear algebra on traced values (``lagrad.linalg``): solve, spsolve, inv,
det, slogdet, cholesky, multi_dot, matrix_power; eigvalsh, eigh, svdvals and
pinv (:mod:`lagrad.ir.eigen`), qr (:mod:`lagrad.ir.qr`), expm
(:mod:`lagrad.ir.expm`), solve_triangular, cho_factor and cho_solve
(:mod:`lagrad.ir.triangular`), lstsq and matrix_rank (:mod:`lagrad.ir.lstsq`)
and the norms (:mod:`lagrad.ir.norms`).

Each is a primitive whose rules are written with the factorization its value
computed. For x = A^-1 b (``solve`` and ``spsolve``), differentiating
A x = b gives A dx = db - dA x, so

* the JVP is one solve with A: dx = A^-1 (db - dA x);
* the VJP is one solve with A^T: with b_bar = A^-T g, the cotangents are
  b_bar for b and -b_bar x^T for A (for sparse values d_e at (row_e, col_e),
  -b_bar[row_e] x[col_e]), as in JAX's ``custom_linear_solve``.

The factorization (``scipy.linalg.lu_factor``, or ``splu`` for sparse A) is
memoized on A's values (:mod:`lagrad.ir.memo`), and the transposed solve on
(A, g): the forward value, the JVP and the VJP of one equation share one
factorization (``lu_solve(..., trans=1)``, ``splu(...).solve(..., trans="T")``),
and the reverse sweep makes one transposed solve per equation, not one per
argument. Singular A raises :class:`lagrad.SingularSystemError` (the forward
pass adds the equation to the message).

>>> import numpy as np, lagrad
>>> A, c = np.array([[3.0, 1.0], [1.0, 2.0]]), np.array([1.0, -1.0])
>>> L = lambda A, b: lagrad.linalg.solve(A, b) @ c
>>> gA, gb = lagrad.grad(L, argnums=(0, 1))(A, np.ones(2))
>>> bool(np.allclose(gb, np.linalg.solve(A.T, c)))
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from lagrad.errors import ProgramError
from lagrad.ir import ops
from lagrad.ir import primitives as P
from lagrad.ir.arrayops import shape_of
from lagrad.ir.cholesky import cholesky_p
from lagrad.ir.determinants import det_p, logabsdet_p, sign_det_p
from lagrad.ir.eigen import (
    eigh,
    eigvalsh,
    eigvalsh_p,
    eigvecsh_p,
    pinv,
    pinv_p,
    svdvals,
    svdvals_p,
)
from lagrad.ir.expm import expm, expm_p
from lagrad.ir.factors import (
    adjoint_memo,
    factor_memo,
    nonsingular,
    sparse_key,
    sparse_lu,
)
from lagrad.ir.lstsq import lstsq, matrix_rank
from lagrad.ir.memo import value_key
from lagrad.ir.norms import matrix_norm, norm, vector_norm
from lagrad.ir.pattern import CSRPattern, check_indices, check_matrix_shape
from lagrad.ir.qr import qr, qr_q_p, qr_r_p
from lagrad.ir.stacks import per_matrix
from lagrad.ir.svd import svd, svd_u_p, svd_vh_p
from lagrad.ir.triangular import cho_factor, cho_solve, solve_triangular, solve_triangular_p

__all__ = ["solve", "spsolve", "inv", "det", "slogdet", "cholesky", "eigvalsh", "eigh", "svdvals",
           "svd", "norm", "vector_norm", "matrix_norm", "multi_dot",
           "matrix_power", "pinv", "qr", "expm", "solve_triangular", "cho_factor",
           "cho_solve", "lstsq", "matrix_rank", "LINALG",
           "factor_memo"]

def __dir__() -> list[str]:
    """``dir(lagrad.linalg)``: its public names, not the module's imports."""
    return sorted(__all__)


Array = NDArray[np.float64]
Shape = tuple[int, ...]

# --------------------------------------------------------------- dense solve

def _solve_value(a: Array, b: Array) -> Array:
    return nonsingular(a, "linalg.solve").solve(b)


def _solve_shape(sa: Shape, sb: Shape) -> Shape:
    if len(sa) != 2 or sa[0] != sa[1]:
        raise ValueError(f"A must be a square matrix, got shape {sa}")
    if not 1 <= len(sb) <= 2 or sb[0] != sa[0]:
        raise ValueError(f"b must have shape ({sa[0]},) or ({sa[0]}, k), got {sb}")
    return sb


def _solve_adjoint(a: Array, g: Array) -> Array:
    """b_bar = A^-T g: one transposed solve with A's factorization, per (A, g)."""
    def build() -> Array:
        return nonsingular(a, "linalg.solve").solve(g, trans=1)
    return adjoint_memo.get(("solve", value_key(a, g)), build)


def _solve_vjp(k: int, g: Array, ans: Array, a: Array, b: Array) -> Array:
    b_bar = _solve_adjoint(a, np.asarray(g, dtype=float))
    if k == 1:
        return b_bar
    # A x = b gives dA's cotangent -b_bar x^T (summed over the columns of a matrix b)
    return -np.multiply.outer(b_bar, ans) if np.ndim(ans) == 1 else -b_bar @ ans.T


def _solve_jvp(ts: Sequence[Array | None], ans: Array, a: Array, b: Array) -> Array:
    ta, tb = ts
    rhs = np.zeros(np.shape(ans)) if tb is None else np.array(tb, dtype=float)
    if ta is not None:
        rhs -= ta @ ans
    return nonsingular(a, "linalg.solve").solve(rhs)


def _solve_jacobian(k: int, ans: Array, a: Array, b: Array) -> sp.csr_matrix:
    a_inv = nonsingular(a, "linalg.solve").solve(np.eye(np.shape(a)[0]))
    width = 1 if np.ndim(ans) == 1 else np.shape(ans)[1]
    if k == 1:  # x[i, j] = sum_l Ainv[i, l] b[l, j]: Ainv kron I
        return sp.csr_matrix(np.kron(a_inv, np.eye(width)))
    # d x[i, j] / d A[p, q] = -Ainv[i, p] x[q, j]: row i * width + j, column p * n + q
    return sp.csr_matrix(-np.kron(a_inv, np.reshape(ans, (-1, width)).T))


def _solve_second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array, a: Array,
                      b: Array) -> Array | None:
    # with g fixed: b_bar = A^-T g moves with A only, d b_bar = -A^-T tA^T b_bar;
    # A_bar = -b_bar x^T moves with both, d A_bar = -(d b_bar) x^T - b_bar (dx)^T
    ta = ts[0]
    b_bar = _solve_adjoint(a, np.asarray(g, dtype=float))
    d_bbar = None if ta is None else -_solve_adjoint(a, np.asarray(ta).T @ b_bar)
    if k == 1:
        return d_bbar
    dx = _solve_jvp(ts, ans, a, b)
    outer = (lambda u, v: np.multiply.outer(u, v)) if np.ndim(ans) == 1 else \
        (lambda u, v: u @ v.T)
    term = -outer(b_bar, dx)
    return term if d_bbar is None else term - outer(d_bbar, ans)


solve_p = P.Primitive("solve", _solve_value, _solve_shape, vjp=_solve_vjp, jvp=_solve_jvp,
                      jacobian=_solve_jacobian, second_vjp=_solve_second_vjp,
                      doc="A^-1 b by LU, adjoint by lu_solve(trans=1)")


# -------------------------------------------------------------- sparse solve

def _spsolve_value(data: Array, b: Array, *, pattern: CSRPattern) -> Array:
    return sparse_lu(data, pattern).solve(b)


def _spsolve_shape(s_data: Shape, s_b: Shape, *, pattern: CSRPattern) -> Shape:
    n = pattern.shape[0]
    if s_data != (pattern.nnz,):
        raise ValueError(f"values of shape {s_data} for a pattern of {pattern.nnz} entries")
    if not 1 <= len(s_b) <= 2 or s_b[0] != n:
        raise ValueError(f"b must have shape ({n},) or ({n}, k), got {s_b}")
    return s_b


def _spsolve_vjp(k: int, g: Array, ans: Array, data: Array, b: Array, *,
                 pattern: CSRPattern) -> Array:
    g = np.asarray(g, dtype=float)

    def build() -> Array:
        return sparse_lu(data, pattern).solve(g, trans="T")
    b_bar = adjoint_memo.get(("spsolve", sparse_key(data, pattern), value_key(g)), build)
    if k == 1:
        return b_bar
    # d x / d data_e = -A^-1 E_e x: the cotangent is -b_bar[row_e] x[col_e]
    br, xc = b_bar[pattern.rows], ans[pattern.indices]
    return -(br * xc if np.ndim(ans) == 1 else np.einsum("ej,ej->e", br, xc))


def _spsolve_jvp(ts: Sequence[Array | None], ans: Array, data: Array, b: Array, *,
                 pattern: CSRPattern) -> Array:
    t_data, t_b = ts
    rhs = np.zeros(np.shape(ans)) if t_b is None else np.array(t_b, dtype=float)
    if t_data is not None:
        rhs -= pattern.matrix(t_data) @ ans
    return sparse_lu(data, pattern).solve(rhs)


def _spsolve_jacobian(k: int, ans: Array, data: Array, b: Array, *,
                      pattern: CSRPattern) -> sp.csr_matrix:
    # dense: A^-1 of a sparse A is dense in general (Newton in a block pays n solves)
    n = pattern.shape[0]
    a_inv = sparse_lu(data, pattern).solve(np.eye(n))
    width = 1 if np.ndim(ans) == 1 else np.shape(ans)[1]
    if k == 1:
        return sp.csr_matrix(np.kron(a_inv, np.eye(width)))
    # row i * width + j, column e: -Ainv[i, row_e] x[col_e, j]
    x = np.reshape(ans, (n, width))
    block = -np.einsum("ie,ej->ije", a_inv[:, pattern.rows], x[pattern.indices])
    return sp.csr_matrix(block.reshape(n * width, pattern.nnz))


def _spsolve_second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array,
                        data: Array, b: Array, *, pattern: CSRPattern) -> Array | None:
    # as solve: b_bar = A^-T g moves with the values only, d b_bar = -A^-T dA^T b_bar;
    # data_bar_e = -b_bar[row_e] x[col_e] moves with both
    t_data = ts[0]
    b_bar = _spsolve_vjp(1, g, ans, data, b, pattern=pattern)
    d_bbar = None if t_data is None else -sparse_lu(data, pattern).solve(
        pattern.transposed(t_data) @ b_bar, trans="T")
    if k == 1:
        return d_bbar
    dx = _spsolve_jvp(ts, ans, data, b, pattern=pattern)

    def pair(u: Array, v: Array) -> Array:
        ur, vc = u[pattern.rows], v[pattern.indices]
        return ur * vc if np.ndim(v) == 1 else np.einsum("ej,ej->e", ur, vc)
    term = -pair(b_bar, dx)
    return term if d_bbar is None else term - pair(d_bbar, ans)


spsolve_p = P.Primitive("spsolve", _spsolve_value, _spsolve_shape, vjp=_spsolve_vjp,
                        jvp=_spsolve_jvp, jacobian=_spsolve_jacobian,
                        second_vjp=_spsolve_second_vjp,
                        doc="A(data)^-1 b by splu, adjoint by splu.solve(trans='T')")


LINALG: tuple[P.Primitive, ...] = (solve_p, spsolve_p, det_p, logabsdet_p, sign_det_p,
                                   cholesky_p, eigvalsh_p, eigvecsh_p, svdvals_p, pinv_p,
                                   qr_q_p, qr_r_p, expm_p, solve_triangular_p, svd_u_p,
                                   svd_vh_p)


# ------------------------------------------------------------------- the ops

def _shape_of(x: Any) -> Shape:
    return x.shape if isinstance(x, P.Tracer) else np.shape(x)


def _check_square(a: Any, who: str) -> int:
    s = _shape_of(a)
    if len(s) < 2 or s[-1] != s[-2]:
        name = f" {a.name!r}" if isinstance(a, P.Tracer) else ""
        raise ProgramError(f"{who}: A{name} has shape {s}; it must be a square matrix "
                           "(n, n) or a stack of them (..., n, n)")
    return int(s[-1])


def _stacked(a: Any) -> bool:
    """A stack of matrices (..., n, n) rather than one."""
    return len(_shape_of(a)) > 2


def _one_each(numpys: Any, ours: Any, who: str, a: Any) -> Any:
    """A stack: numpy's function on numbers, ``ours`` per matrix on traced values."""
    if not isinstance(a, P.Tracer):
        return numpys(a)
    return per_matrix(ours, who, a)


def _check_rhs(b: Any, n: int, who: str) -> None:
    s = _shape_of(b)
    if not 1 <= len(s) <= 2 or s[0] != n:
        name = f" {b.name!r}" if isinstance(b, P.Tracer) else ""
        raise ProgramError(f"{who}: b{name} has shape {s}, but A is ({n}, {n}); b must have "
                           f"shape ({n},) or ({n}, k)")


def solve(a: Any, b: Any) -> Any:
    """The solution x of A x = b, for a dense square A (``numpy.linalg.solve``).

    Parameters
    ----------
    a : array_like or Variable, shape (n, n)
    b : array_like or Variable, shape (n,) or (n, k)

    Returns
    -------
    ndarray or Variable, the shape of b

    Raises
    ------
    ProgramError
        A not square, or b of the wrong shape.
    SingularSystemError
        A singular to working precision (when the value is computed).

    Notes
    -----
    One LU factorization (``scipy.linalg.lu_factor``) per value of A, shared
    by the value, the JVP dx = A^-1 (db - dA x) and the VJP, which is one
    transposed solve b_bar = A^-T g (``lu_solve(..., trans=1)``) giving
    b_bar for b and -b_bar x^T for A. ``numpy.linalg.solve`` on traced
    variables calls this function.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> A = np.array([[2.0, 1.0], [1.0, 3.0]])
    >>> lagrad.linalg.solve(A, np.array([3.0, 4.0]))
    array([1., 1.])
    >>> g = lagrad.grad(lambda b: np.linalg.solve(A, b).sum())(np.ones(2))
    >>> bool(np.allclose(g, np.linalg.solve(A.T, np.ones(2))))  # A^-T 1
    True
    """
    n = _check_square(a, "linalg.solve")
    if _stacked(a) or len(_shape_of(b)) > 2:  # numpy 2: b is (n,) or a stack (..., n, k)
        if not isinstance(a, P.Tracer) and not isinstance(b, P.Tracer):
            return np.linalg.solve(a, b)
        rhs = 1 if len(_shape_of(b)) == 1 else 2
        if len(_shape_of(b)) < 2 or _shape_of(b)[-2] != n:
            _check_rhs(b if rhs == 1 else b[(0,) * (len(_shape_of(b)) - 2)], n, "linalg.solve")
        return per_matrix(lambda a1, b1: solve(a1, b1), "linalg.solve", a, b, cores=(2, rhs))
    _check_rhs(b, n, "linalg.solve")
    return solve_p(a, b)


def inv(a: Any) -> Any:
    """The inverse of a dense square A (``numpy.linalg.inv``), as ``solve(A, I)``:
    its VJP is -A^-T G A^-T and its JVP -A^-1 dA A^-1, from solve's rules.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> lagrad.linalg.inv(np.array([[2.0, 0.0], [0.0, 4.0]]))
    array([[0.5 , 0.  ],
           [0.  , 0.25]])
    """
    n = _check_square(a, "linalg.inv")
    if _stacked(a):
        return _one_each(np.linalg.inv, inv, "linalg.inv", a)
    return solve_p(a, np.eye(n))


def det(a: Any) -> Any:
    """The determinant of a dense square A (``numpy.linalg.det``), from its LU.

    The derivative is det(A) A^-T, which needs a nonsingular A: at a singular
    A the value is 0 and a derivative raises :class:`lagrad.SingularSystemError`.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> A = np.array([[2.0, 1.0], [1.0, 3.0]])
    >>> round(float(lagrad.linalg.det(A)), 12)
    5.0
    >>> lagrad.grad(lagrad.linalg.det)(A)  # det(A) A^-T, the cofactors
    array([[ 3., -1.],
           [-1.,  2.]])
    """
    _check_square(a, "linalg.det")
    if _stacked(a):
        return _one_each(np.linalg.det, det, "linalg.det", a)
    return det_p(a)


class SlogdetResult(NamedTuple):
    """numpy's ``SlogdetResult``: ``(sign, logabsdet)``."""

    sign: Any
    logabsdet: Any


def slogdet(a: Any) -> SlogdetResult:
    """``(sign, log|det A|)`` of a dense square A (``numpy.linalg.slogdet``).

    The sign is piecewise constant (derivative zero); d log|det A| / dA = A^-T.
    A singular A raises :class:`lagrad.SingularSystemError`.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> sign, logdet = lagrad.linalg.slogdet(np.array([[0.0, 2.0], [3.0, 0.0]]))
    >>> float(sign), round(float(logdet), 12)
    (-1.0, 1.791759469228)
    """
    _check_square(a, "linalg.slogdet")
    if _stacked(a):
        return _one_each(np.linalg.slogdet, slogdet, "linalg.slogdet", a)
    return SlogdetResult(sign_det_p(a), logabsdet_p(a))


def cholesky(a: Any) -> Any:
    """The lower Cholesky factor L of a symmetric positive definite A, A = L L^T
    (``numpy.linalg.cholesky``).

    As numpy, only A's lower triangle is read; the derivative is that of this
    map (its upper triangle's cotangent is zero; for a symmetric A built from
    variables, the gradient is the usual symmetric one). Not positive definite
    raises :class:`lagrad.SolveError`.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> lagrad.linalg.cholesky(np.array([[4.0, 2.0], [2.0, 2.0]]))
    array([[2., 0.],
           [1., 1.]])
    """
    _check_square(a, "linalg.cholesky")
    if _stacked(a):
        return _one_each(np.linalg.cholesky, cholesky, "linalg.cholesky", a)
    return cholesky_p(a)


def spsolve(a: Any, b: Any, *, shape: Sequence[int] | None = None) -> Any:
    """The solution x of A x = b for a sparse A (``scipy.sparse.linalg.spsolve``).

    Parameters
    ----------
    a : scipy.sparse matrix, or tuple (data, row, col)
        A constant sparse matrix, or its COO form with constant indices
        ``row``, ``col`` and values ``data`` that may be traced (repeated
        (row, col) pairs add up), as :func:`lagrad.coo_matvec`.
    b : array_like or Variable, shape (n,) or (n, k)
    shape : (int, int), optional
        A's shape, required with the COO form.

    Returns
    -------
    ndarray or Variable, the shape of b

    Raises
    ------
    ProgramError
        A not square, a bad pattern, or ``data`` or ``b`` of the wrong shape.
    SingularSystemError
        A singular to working precision.

    Notes
    -----
    One ``scipy.sparse.linalg.splu`` per value of A, shared by the value, the
    JVP and the VJP, which is one transposed solve ``solve(g, trans="T")``:
    the cotangents are b_bar = A^-T g for b and -b_bar[row_e] x[col_e] for
    data_e. The pattern is compiled once into a
    :class:`lagrad.ir.pattern.CSRPattern`, as in ``coo_matvec``. The local
    Jacobian (needed only by Newton's method or a direct solver when the
    solve sits in a cyclic block) is dense, n solves.

    Examples
    --------
    >>> import numpy as np, scipy.sparse, lagrad
    >>> row, col = np.array([0, 1, 1]), np.array([0, 0, 1])
    >>> lagrad.linalg.spsolve((np.array([2.0, 1.0, 4.0]), row, col), np.array([2.0, 5.0]),
    ...                       shape=(2, 2))
    array([1., 1.])
    >>> f = lambda d: lagrad.linalg.spsolve((d, row, col), np.ones(2), shape=(2, 2)).sum()
    >>> err = lagrad.check_grad(f, np.array([2.0, 1.0, 4.0]))
    """
    if sp.issparse(a):
        m = sp.csr_matrix(a, dtype=float)
        m.sum_duplicates()
        coo = m.tocoo()
        data: Any = coo.data
        row, col, dims = coo.row, coo.col, check_matrix_shape(m.shape, "linalg.spsolve")
    elif isinstance(a, (tuple, list)) and len(a) == 3:
        if shape is None:
            raise ProgramError("linalg.spsolve: A given as (data, row, col) needs shape=(n, n)")
        data, row, col = a
        dims = check_matrix_shape(shape, "linalg.spsolve")
    else:
        raise ProgramError(f"linalg.spsolve: A is a {type(a).__name__}; give a scipy.sparse "
                           "matrix or a tuple (data, row, col) with shape=(n, n)")
    if dims[0] != dims[1]:
        raise ProgramError(f"linalg.spsolve: A has shape {dims}; it must be square")
    row_a = check_indices(row, "row", dims[0], "linalg.spsolve")
    col_a = check_indices(col, "col", dims[1], "linalg.spsolve")
    if row_a.size != col_a.size or _shape_of(data) != (row_a.size,):
        raise ProgramError(f"linalg.spsolve: data has shape {_shape_of(data)}, row "
                           f"{row_a.size} and col {col_a.size} entries; give one value per "
                           "(row, col) pair")
    _check_rhs(b, dims[0], "linalg.spsolve")
    pattern = CSRPattern.from_coo(row_a, col_a, dims)
    if pattern.order is not None:  # values into CSR order, as coo_matvec does
        if isinstance(data, P.Tracer):
            data = P.getitem(data, index=pattern.order)
        else:
            data = np.asarray(data, dtype=float)[pattern.order]
    return spsolve_p(data, b, pattern=pattern)


# ------------------------------------------------- products of matrices

def multi_dot(arrays: Sequence[Any], *, out: Any = None) -> Any:
    """The product of two or more matrices, as :func:`numpy.linalg.multi_dot`
    (a first 1-D operand is a row, a last one a column). The products are
    taken from the left; numpy picks the cheapest order, so values agree to
    rounding."""
    arrays = list(arrays)
    if out is not None:
        raise ProgramError("multi_dot: out= cannot hold a traced value")
    if len(arrays) < 2:
        raise ProgramError("multi_dot: give at least two arrays")
    for k, a in enumerate(arrays):
        ndim = len(shape_of(a))
        if not (ndim == 2 or (ndim == 1 and k in (0, len(arrays) - 1))):
            raise ProgramError(f"multi_dot: operand {k} has shape {shape_of(a)}; the first and "
                               "last may be 1-D, every other must be 2-D")
    result = arrays[0]
    for a in arrays[1:]:
        result = ops.matmul(result, a)
    return result


def matrix_power(a: Any, n: int) -> Any:
    """``a`` to the integer power ``n`` (negative: of its inverse), as
    :func:`numpy.linalg.matrix_power`, by repeated squaring.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> lagrad.linalg.matrix_power(np.array([[1.0, 1.0], [0.0, 1.0]]), 3)
    array([[1., 3.],
           [0., 1.]])
    """
    shape = shape_of(a)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ProgramError(f"matrix_power: a has shape {shape}; give a square matrix")
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        raise ProgramError(f"matrix_power: the exponent must be an int, got {n!r}")
    if n == 0:
        return np.eye(shape[0])
    base = inv(a) if n < 0 else a
    result, power, k = None, base, abs(int(n))
    while k:
        if k & 1:
            result = power if result is None else ops.matmul(result, power)
        k >>= 1
        if k:
            power = ops.matmul(power, power)
    return result if result is not a else P.identity(a)
