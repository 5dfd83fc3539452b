"""Sparse matrices with a fixed pattern and variable values: y = A x.

``A`` is given in coordinate (COO) form, as for
``scipy.sparse.coo_matrix((data, (row, col)), shape)``: the pattern ``row``,
``col``, ``shape`` is constant, the values ``data`` may be traced variables.
This is JAX's ``jax.experimental.sparse.coo_matvec`` (whose primitive binds
``data, row, col, v`` with the shape and ``transpose`` as static parameters).

How it is recorded. The pattern is compiled once, when the operation is
recorded, into a :class:`CSRPattern`: the CSR structure (``indptr``,
``indices``) and the permutation that takes ``data`` from COO order into CSR
order. :func:`coo_matvec` then records up to two equations:

* ``d = getitem(data, index=order)``: the values in CSR order (left out when
  ``row`` is already sorted, or when ``data`` is a constant, permuted at once);
* ``y = csr_matvec(d, x, pattern=...)``: the product, the primitive below.

The permutation is an equation of its own, not part of the product, so that
in a fixed point such as PageRank's r = alpha A^T r + b, with A's values
computed outside the cycle, the O(nnz) random gather runs once per forward
solve instead of once per iteration: inside the cycle each iteration, each
VJP and each JVP costs one scipy sparse product and nothing else of size nnz.

Derivatives of y = A(d) x, with A(d) = sum_e d_e E_{row_e, col_e}
(repeated (row, col) pairs add up, as in COO):

* d y / d x = A: the JVP is A xdot, the VJP A^T g (the CSC view of the same
  arrays: no transposed copy is made);
* d y_r / d d_e = x_{col_e} [r == row_e]: the JVP is A(ddot) x, the VJP
  g[row_e] x[col_e] (summed over columns of ``x`` for a matrix ``x``).

>>> import numpy as np, lagrad
>>> data, row, col = np.array([1.0, 2.0, 3.0]), np.array([0, 1, 1]), np.array([1, 0, 1])
>>> lagrad.coo_matvec(data, row, col, np.array([1.0, 10.0]), shape=(2, 2))
array([10., 32.])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from lagrad.errors import ProgramError
from lagrad.ir import primitives as P
from lagrad.ir.pattern import CSRPattern, check_indices, check_matrix_shape
from lagrad.ir.program import Variable

__all__ = ["coo_matvec", "csr_matvec", "CSRPattern", "SPARSE"]

Array = NDArray[np.float64]
Shape = tuple[int, ...]


# ------------------------------------------------------------ the primitive

def _csr_value(data: Array, x: Array, *, pattern: CSRPattern) -> Array:
    return np.asarray(pattern.matrix(data) @ x)


def _csr_shape(s_data: Shape, s_x: Shape, *, pattern: CSRPattern) -> Shape:
    if s_data != (pattern.nnz,):
        raise ValueError(f"values of shape {s_data} for a pattern of {pattern.nnz} entries")
    if not 1 <= len(s_x) <= 2 or s_x[0] != pattern.shape[1]:
        raise ValueError(f"matrix of shape {pattern.shape} cannot multiply an operand of "
                         f"shape {s_x}")
    return (pattern.shape[0],) + s_x[1:]


def _csr_vjp(k: int, g: Array, ans: Array, data: Array, x: Array, *,
             pattern: CSRPattern) -> Array:
    if k == 1:
        return np.asarray(pattern.transposed(data) @ g)
    # d y[r, j] / d data_e = x[col_e, j] [r == row_e]
    gr, xc = g[pattern.rows], x[pattern.indices]
    return gr * xc if np.ndim(x) == 1 else np.einsum("ej,ej->e", gr, xc)


def _csr_jvp(ts: Sequence[Array | None], ans: Array, data: Array, x: Array, *,
             pattern: CSRPattern) -> Array:
    t_data, t_x = ts
    out = np.zeros(np.shape(ans))
    if t_data is not None:
        out = out + pattern.matrix(t_data) @ x
    if t_x is not None:
        out = out + pattern.matrix(data) @ t_x
    return out


def _csr_jacobian(k: int, ans: Array, data: Array, x: Array, *,
                  pattern: CSRPattern) -> sp.csr_matrix:
    a = pattern.matrix(data)
    width = 1 if np.ndim(x) == 1 else np.shape(x)[1]
    if k == 1:  # row-major: d y[r, j] / d x[c, j] = A[r, c], that is A kron I
        return a if np.ndim(x) == 1 else sp.kron(a, sp.identity(width), format="csr")
    # row r * width + j, column e, value x[col_e, j]
    nnz = pattern.nnz
    rows = (pattern.rows.astype(np.intp)[:, None] * width + np.arange(width)).ravel()
    cols = np.repeat(np.arange(nnz), width)
    vals = np.reshape(x, (pattern.shape[1], width))[pattern.indices].ravel()
    return sp.csr_matrix((vals, (rows, cols)), shape=(pattern.shape[0] * width, nnz))


def _csr_second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array, data: Array,
                    x: Array, *, pattern: CSRPattern) -> Array | None:
    # bilinear in (data, x), as matmul: each cotangent moves only with the other operand
    other = ts[1 - k]
    if other is None:
        return None
    return _csr_vjp(k, g, ans, data, other, pattern=pattern) if k == 0 else \
        _csr_vjp(k, g, ans, other, x, pattern=pattern)


csr_matvec = P.Primitive(
    "csr_matvec", _csr_value, _csr_shape, vjp=_csr_vjp, jvp=_csr_jvp, jacobian=_csr_jacobian,
    second_vjp=_csr_second_vjp,
    doc="A @ x for A = csr_matrix((data, pattern.indices, pattern.indptr)): values in CSR "
        "order, one scipy sparse product per value, VJP or JVP")

SPARSE: tuple[P.Primitive, ...] = (csr_matvec,)


# ------------------------------------------------------------------- the op

def coo_matvec(data: Any, row: Any, col: Any, x: Any, *, shape: Sequence[int],
               transpose: bool = False) -> Any:
    """Product ``A @ x`` of a sparse matrix in COO form with a vector or matrix.

    ``A = scipy.sparse.coo_matrix((data, (row, col)), shape=shape)``: the
    pattern (``row``, ``col``, ``shape``) is constant, the values ``data``
    and the operand ``x`` may be traced variables. Repeated (row, col) pairs
    add up.

    Parameters
    ----------
    data : array_like or Variable, shape (nnz,)
        The values of the stored entries.
    row, col : array_like of int, shape (nnz,)
        Their row and column indices: constants, in ``[0, shape[0])`` and
        ``[0, shape[1])``.
    x : array_like or Variable, shape (shape[1],) or (shape[1], k)
        The vector (or k vectors, as columns) to multiply.
    shape : (int, int)
        The shape of ``A``.
    transpose : bool, optional
        Multiply by ``A.T`` instead (then ``x`` has ``shape[0]`` rows), as
        ``jax.experimental.sparse.coo_matvec(..., transpose=True)``.

    Returns
    -------
    ndarray or Variable, shape (shape[0],) or (shape[0], k) (swapped if transposed)
        The product; a Variable if ``data`` or ``x`` is traced.

    Raises
    ------
    ProgramError
        Indices not 1-D integer arrays of one length, out of range, or traced;
        ``data`` or ``x`` of the wrong shape.

    Notes
    -----
    The pattern is compiled once per call into a :class:`CSRPattern` (a
    stable sort of the rows, O(nnz log nnz)); every later evaluation, VJP or
    JVP is one scipy sparse product plus, for the derivative with respect to
    ``data``, the O(nnz) gather ``g[row] * x[col]``. See the module docstring
    for how the permutation into CSR order is recorded.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> row, col = np.array([0, 1, 1]), np.array([1, 0, 1])
    >>> f = lambda d, x: lagrad.sum(lagrad.coo_matvec(d, row, col, x, shape=(2, 2)) ** 2)
    >>> gd, gx = lagrad.grad(f, argnums=(0, 1))(np.array([1.0, 2.0, 3.0]), np.ones(2))
    >>> gd, gx  # y = (1, 5): dy^2/dd_e = 2 y[row_e] x[col_e]; A^T (2 y)
    (array([ 2., 10., 10.]), array([20., 32.]))
    """
    shape2 = check_matrix_shape(shape, "coo_matvec")
    row_a = check_indices(row, "row", shape2[0], "coo_matvec")
    col_a = check_indices(col, "col", shape2[1], "coo_matvec")
    if row_a.size != col_a.size:
        raise ProgramError(f"coo_matvec: row has {row_a.size} entries and col has "
                           f"{col_a.size}; give one (row, col) pair per value")
    if transpose:
        row_a, col_a, shape2 = col_a, row_a, (shape2[1], shape2[0])
    _check_operands(data, x, row_a.size, shape2, bool(transpose))
    pattern = CSRPattern.from_coo(row_a, col_a, shape2)
    if pattern.order is not None:
        if isinstance(data, Variable):
            data = P.getitem(data, index=pattern.order)
        else:
            data = np.asarray(data, dtype=float)[pattern.order]
    return csr_matvec(data, x, pattern=pattern)


def _check_operands(data: Any, x: Any, nnz: int, shape: tuple[int, int],
                    transpose: bool) -> None:
    s_data = data.shape if isinstance(data, Variable) else np.shape(data)
    if s_data != (nnz,):
        raise ProgramError(f"coo_matvec: data has shape {s_data}, the pattern has {nnz} "
                           f"(row, col) pairs; give one value per pair, shape ({nnz},)")
    s_x = x.shape if isinstance(x, Variable) else np.shape(x)
    if not 1 <= len(s_x) <= 2 or s_x[0] != shape[1]:
        what = "A.T" if transpose else "A"
        raise ProgramError(f"coo_matvec: {what} has shape {shape} and cannot multiply x of "
                           f"shape {s_x}; x must have shape ({shape[1]},) or ({shape[1]}, k)")
    if isinstance(data, Variable) and isinstance(x, Variable) and data.program is not x.program:
        raise ProgramError(f"coo_matvec: data {data.name!r} and x {x.name!r} belong to "
                           "different programs; variables cannot be shared between programs")
