"""Factorizations of the matrices of ``lagrad.linalg``'s primitives, memoized
on the matrices' values, and the test that a factor is singular to working
precision (:class:`lagrad.SingularSystemError` names the caller).

The value, the JVP and the VJP of one equation find the same factorization
here (``scipy.linalg.lu_factor``, or ``splu`` for a sparse matrix); the
transposed solves of a reverse sweep are memoized on (A, g) in
:data:`adjoint_memo`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse.linalg as spla
from numpy.typing import NDArray

from lagrad.errors import SingularSystemError
from lagrad.ir.memo import ValueMemo, value_key
from lagrad.ir.pattern import CSRPattern

__all__ = ["SINGULAR_PIVOT_RATIO", "factor_memo", "adjoint_memo", "DenseLU", "dense_lu",
           "negligible_pivot", "nonsingular", "sparse_key", "SparseLU", "sparse_lu"]

Array = NDArray[np.float64]

# A pivot ratio beyond 1/eps: A is singular to working precision.
SINGULAR_PIVOT_RATIO = 1.0 / np.finfo(float).eps

# Factorizations and transposed solves, by value (pure functions of their keys).
factor_memo = ValueMemo(maxsize=16, maxbytes=2**28)
adjoint_memo = ValueMemo(maxsize=16)


def negligible_pivot(pivots: Array) -> bool:
    """Whether U's diagonal has a zero, or its largest and smallest entries
    (in magnitude) differ by more than :data:`SINGULAR_PIVOT_RATIO`."""
    d = np.abs(pivots)
    return bool(d.size) and not (d.min() > 0 and d.max() / d.min() < SINGULAR_PIVOT_RATIO)


@dataclass(frozen=True, eq=False)
class DenseLU:
    """``lu_factor(A)``: P A = L U, with the solves and determinant it gives."""

    lu: Array
    piv: NDArray[np.int32]

    @property
    def nbytes(self) -> int:
        return int(self.lu.nbytes)

    @property
    def singular(self) -> bool:
        return negligible_pivot(np.diag(self.lu))

    def solve(self, b: Array, trans: int = 0) -> Array:
        """A^-1 b, or A^-T b with ``trans=1``."""
        return sla.lu_solve((self.lu, self.piv), b, trans=trans, check_finite=False)

    def sign_logabsdet(self) -> tuple[float, float]:
        d = np.diag(self.lu)
        swaps = int(np.count_nonzero(self.piv != np.arange(self.piv.size)))
        sign = float(np.prod(np.sign(d))) * (-1.0) ** swaps
        with np.errstate(divide="ignore"):
            return sign, float(np.sum(np.log(np.abs(d))))


def dense_lu(a: Array) -> DenseLU:
    """The LU factorization of the square matrix ``a``, memoized on its values."""
    def build() -> DenseLU:
        with warnings.catch_warnings():  # an exactly singular A: reported by the callers
            warnings.simplefilter("ignore", sla.LinAlgWarning)
            lu, piv = sla.lu_factor(np.asarray(a, dtype=float), check_finite=False)
        return DenseLU(lu, piv)
    return factor_memo.get(("lu", value_key(a)), build)


def nonsingular(a: Array, who: str) -> DenseLU:
    factor = dense_lu(a)
    if factor.singular:
        raise SingularSystemError(
            f"{who}: the matrix A of shape {np.shape(a)} is singular to working precision "
            "(a zero or negligible LU pivot), so A x = b does not determine x; check how A "
            "is built, or regularize it")
    return factor


def sparse_key(data: Array, pattern: CSRPattern) -> tuple[Any, ...]:
    return value_key(data, pattern.indptr, pattern.indices)


@dataclass(frozen=True, eq=False)
class SparseLU:
    """``splu(A)`` for a pattern and values, with the size of A for the memo."""

    factor: Any
    nbytes: int

    def solve(self, b: Array, trans: str = "N") -> Array:
        return self.factor.solve(np.ascontiguousarray(b, dtype=float), trans=trans)


def sparse_lu(data: Array, pattern: CSRPattern, who: str = "linalg.spsolve") -> SparseLU:
    """The sparse LU factorization of A(data), memoized on its values and pattern."""
    def build() -> SparseLU:
        m = pattern.matrix(data).tocsc()
        m.sum_duplicates()
        try:
            factor = spla.splu(m)
        except RuntimeError as err:  # scipy: "Factor is exactly singular"
            raise _sparse_singular(pattern, who) from err
        if negligible_pivot(factor.U.diagonal()):
            raise _sparse_singular(pattern, who)
        return SparseLU(factor, 8 * (factor.L.nnz + factor.U.nnz))
    return factor_memo.get(("splu", sparse_key(data, pattern)), build)


def _sparse_singular(pattern: CSRPattern, who: str) -> SingularSystemError:
    return SingularSystemError(
        f"{who}: the sparse matrix A of shape {pattern.shape} with {pattern.nnz} stored "
        "entries is singular to working precision, so A x = b does not determine x; check "
        "its pattern (an empty row or column?) and values")
