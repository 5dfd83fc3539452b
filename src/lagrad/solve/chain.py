"""The Newton matrix of a chain of same-structure blocks, factorized as M L.

In a chain each element reads the unknowns (and carries) of the few elements
just before it, so with U laid out element by element, (B n_U, B n_U), the
Newton matrix I - dG/dU = M - C has the B diagonal blocks M_k = I - D_k and a
strictly block lower triangular coupling C (an element reading the one ``d``
places back). It is factorized as

    M - C = M (I - M^-1 C) = M L:

* M, B small dense n_U x n_U matrices, by one LU with partial pivoting
  vectorized over the elements (numpy, the B axis last and contiguous: each
  elimination step is one array operation for all elements, not one LAPACK
  call per element);
* L, unit lower triangular, is banded: an element reading ``reach`` places
  back puts entries at most ``reach n_U + n_U - 1`` diagonals below the
  main one. It is stored in BLAS's lower band form and solved by ``dtbsv``
  (O(B n_U bandwidth), no fill, no pivoting needed: its diagonal is one).

The tangent solves M L x = r (x = L^-1 M^-1 r), the adjoint its transpose
(x = M^-T L^-T r): the forward Newton step, the tangent and the multipliers
share one factorization. Where each coupling entry lands in the band is the
same at every call and is kept in the group's cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.linalg.blas import dtbsv

__all__ = ["BandFactor", "BlockLU", "Coupling", "as_index", "band_width", "band_factorize",
           "MAX_REACH"]

Array = NDArray[np.float64]
MAX_REACH = 4
PIVOT = 0.1
"""Elements may read at most this many places back for the band form; a
group reaching further keeps the stacked-inverse form."""


@dataclass(frozen=True)
class Coupling:
    """dG_k/dU_source (column ``col`` of the source's U) for the elements ``k``:
    ``values`` (len(k), n_U)."""

    k: NDArray[np.intp]
    source: NDArray[np.intp]
    col: int
    values: Array
    key: Any  # the same for the same column of the same group


class BlockLU:
    """LU with (threshold) partial pivoting of B matrices n x n at once, stored (n, n, B).

    ``m`` is (B, n, n); the rows of element k were permuted by ``perm[:, k]``
    (None: no row was swapped). With ``overwrite``, an ``m`` that is a view of
    an (n, n, B) C-contiguous array (``np.moveaxis(a, -1, 0)``) is factorized
    in place, with no copy, like scipy's ``overwrite_a``."""

    def __init__(self, m: Array, overwrite: bool = False) -> None:
        moved = np.moveaxis(m, 0, -1)  # (n, n, B)
        a = np.ascontiguousarray(moved) if overwrite else np.array(moved, order="C")
        n, b = a.shape[0], a.shape[2]
        perm: NDArray[np.intp] | None = None
        for j in range(n):
            column = np.abs(a[j:, j])
            # threshold pivoting: a row is swapped in only where the diagonal
            # entry is small against the column's largest (growth <= 1 + 1/PIVOT)
            small = np.flatnonzero(column[0] < PIVOT * column.max(axis=0))
            if small.size:
                if perm is None:
                    perm = np.broadcast_to(np.arange(n)[:, None], (n, b)).copy()
                p = np.full(b, j)
                p[small] += np.argmax(column[:, small], axis=0)
                _swap(a, j, p)
                _swap(perm, j, p)
            with np.errstate(divide="ignore", invalid="ignore"):
                for i in range(j + 1, n):  # row by row, in place (no (n, n, B) temporaries)
                    a[i, j] /= a[j, j]
                    a[i, j + 1:] -= a[i, j] * a[j, j + 1:]
        self.a, self.perm, self.n = a, perm, n
        self.pivots = np.abs(a[np.arange(n), np.arange(n)])  # (n, B)

    def solve(self, r: Array, transposed: bool = False) -> Array:
        """M_k x_k = r_k for every element (or M_k^T); r (n, B) or (n, m, B).
        Substitution one entry at a time: n^2 array operations over B (an
        einsum per row was 3x slower at B = 1e5)."""
        a, n = self.a, self.n
        x = np.array(r, dtype=float)
        extra = (None,) * (x.ndim - 2)  # broadcast the factors over middle axes
        if not transposed:
            if self.perm is not None:
                x = np.take_along_axis(x, self.perm.reshape((n,) + (1,) * (x.ndim - 2)
                                                            + (-1,)), axis=0)
            for i in range(1, n):  # L y = P r, unit diagonal
                for j in range(i):
                    x[i] -= a[i, j][extra] * x[j]
            for i in range(n - 1, -1, -1):  # U x = y
                for j in range(i + 1, n):
                    x[i] -= a[i, j][extra] * x[j]
                x[i] /= a[i, i][extra]
            return x
        for i in range(n):  # U^T y = r
            for j in range(i):
                x[i] -= a[j, i][extra] * x[j]
            x[i] /= a[i, i][extra]
        for i in range(n - 2, -1, -1):  # L^T w = y
            for j in range(i + 1, n):
                x[i] -= a[j, i][extra] * x[j]
        if self.perm is not None:  # x = P^T w
            out = np.empty_like(x)
            np.put_along_axis(out, self.perm.reshape((n,) + (1,) * (x.ndim - 2) + (-1,)),
                              x, axis=0)
            x = out
        return x

    @property
    def condition(self) -> Array:
        """Per element, the ratio of its largest to smallest pivot (inf if singular)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            c = self.pivots.max(axis=0) / self.pivots.min(axis=0)
        return np.where(np.isfinite(c), c, np.inf)


def _swap(a: NDArray[Any], j: int, p: NDArray[np.intp]) -> None:
    """Swap row j with row p[k] of every element k (axis 0; elements on the last)."""
    idx = p.reshape((1,) + (1,) * (a.ndim - 2) + (-1,))
    row_p = np.take_along_axis(a, np.broadcast_to(idx, (1,) + a.shape[1:]), axis=0)[0]
    row_j = a[j].copy()
    a[j] = row_p
    np.put_along_axis(a, np.broadcast_to(idx, (1,) + a.shape[1:]), row_j[None], axis=0)


@dataclass
class BandFactor:
    """M L = M - C: the elements' LU and L's band, with what the Newton solve
    checks on the way."""

    lu: BlockLU
    band: Array | None  # (bandwidth + 1, B n) BLAS lower band form of L; None: L = I
    bandwidth: int
    condition: Array  # per element, the ratio of its largest to smallest pivot
    diagonal: Array  # D, kept to see how much it moved over a Newton step
    map: Any = None  # the group's map evaluated where this was made (linear solves reuse it)

    def solve(self, r: Array, transposed: bool) -> Array:
        """(M - C) x = r, or its transpose; r and x are (B, n_U)."""
        b, n = r.shape
        if not transposed:
            y = self.lu.solve(r.T).T  # Fortran order, like the group's arrays
            if self.band is None:
                return y
            x = dtbsv(self.bandwidth, self.band, y.ravel(), lower=1, diag=1)
            return x.reshape(b, n)
        w = r
        if self.band is not None:
            w = dtbsv(self.bandwidth, self.band, np.ravel(r), lower=1, trans=1,
                      diag=1).reshape(b, n)
        return self.lu.solve(w.T, transposed=True).T


def as_index(k: NDArray[np.intp]) -> slice | NDArray[np.intp]:
    """``k`` as a slice when it is an arithmetic progression (fancy indexing
    gathers and scatters element by element; a slice is a strided view)."""
    if k.size < 2:
        return k
    step = int(k[1] - k[0])
    if step > 0 and np.all(np.diff(k) == step):
        return slice(int(k[0]), int(k[-1]) + 1, step)
    return k


def band_width(n: int, reach: int) -> int:
    """Diagonals below the main one in L for blocks of n unknowns reading
    ``reach`` places back."""
    return reach * n + n - 1


def band_factorize(m: Array, coupling: Sequence[Coupling], reach: int,
                   cache: dict[Any, Any], diagonal: Array | None = None,
                   overwrite: bool = False) -> BandFactor | int:
    """M L from the stacked M (B, n, n) and C's columns; the number of an
    element when a pivot of its M is zero. ``cache`` keeps the band positions
    of the pattern, which is the same at every call. ``diagonal``: D = I - M
    when the caller has it; ``overwrite``: as for :class:`BlockLU`."""
    b, n = m.shape[0], m.shape[1]
    if diagonal is None:
        diagonal = np.eye(n) - m
    lu = BlockLU(m, overwrite)
    zero = ~(lu.pivots.min(axis=0) > 0.0)  # a zero pivot (or NaN after one)
    if zero.any():
        return int(np.argmax(zero))
    condition = lu.condition
    kb = band_width(n, reach)
    band = None
    if coupling:
        v = np.zeros((n, len(coupling), b))  # the coupling columns, per element
        for i, c in enumerate(coupling):
            v[:, i, as_index(c.k)] = c.values.T
        x = lu.solve(v)  # M^-1 C's columns
        band = np.zeros((kb + 1, b * n), order="F")
        flat = band.T.reshape(-1)  # a view: entry (o, j) at j (kb + 1) + o
        for i, c in enumerate(coupling):
            key = ("band", c.key, b, n, reach)
            where = cache.get(key)
            if where is None:
                col = c.source * n + c.col  # (len(k),): the column of L
                row = c.k[None, :] * n + np.arange(n)[:, None]  # (n, len(k))
                where = cache[key] = [as_index(w) for w in
                                      col[None, :] * (kb + 1) + (row - col[None, :])]
            values = x[:, i, as_index(c.k)]
            for r, w in enumerate(where):  # a strided slice in a regular chain
                flat[w] -= values[r]
    return BandFactor(lu, band, kb, condition, diagonal)
