"""One banded LU for a chain of same-structure blocks (solve/grouped.py).

In a chain each element reads the unknowns (and carries) of the few elements
just before it, so with U laid out element by element, (B n_U, B n_U), the
Newton matrix I - dG/dU = M - C is banded: the diagonal blocks M_k = I - D_k
span n_U - 1 diagonals above and below, and an element reading the one ``d``
places back adds d n_U more below. LAPACK's band LU (``gbtrf``, partial
pivoting) factorizes it in O(B n_U^3) with no fill outside the band, and
``gbtrs`` solves with it, transposed (``trans=1``) for the adjoint, so the
forward Newton step, the tangent and the multipliers share one factorization.

The band storage is LAPACK's: entry (i, j) of the matrix at row
``kl + ku + i - j`` of an array with ``2 kl + ku + 1`` rows, in Fortran order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.linalg.lapack import dgbtrf, dgbtrs

__all__ = ["BandFactor", "Coupling", "band_width", "band_factorize", "MAX_REACH"]

Array = NDArray[np.float64]
MAX_REACH = 4
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


@dataclass
class BandFactor:
    """The band LU of M - C, with what the Newton solve checks on the way."""

    lu: Array
    piv: NDArray[np.intc]
    kl: int
    ku: int
    condition: Array  # per element, the ratio of its largest to smallest pivot
    diagonal: Array  # D, kept to see how much it moved over a Newton step

    def solve(self, r: Array, transposed: bool) -> Array:
        """(M - C) x = r, or its transpose; r and x are (B, n_U)."""
        x, info = dgbtrs(self.lu, self.kl, self.ku, r.ravel(), self.piv,
                         trans=1 if transposed else 0)
        assert info == 0, info
        return x.reshape(r.shape)


def band_width(n: int, reach: int) -> tuple[int, int]:
    """(kl, ku) of M - C for blocks of n unknowns reading ``reach`` places back."""
    return reach * n + n - 1, n - 1


def band_factorize(m: Array, coupling: Sequence[Coupling], reach: int,
                   cache: dict[Any, Any]) -> BandFactor | int:
    """The band LU of M - C from the stacked M (B, n, n) and C's columns; the
    number of an element when a pivot of its rows is zero. ``cache`` keeps
    the band positions of the pattern, which is the same at every call."""
    b, n = m.shape[0], m.shape[1]
    kl, ku = band_width(n, reach)
    ldab = 2 * kl + ku + 1
    ab = np.zeros((b * n, ldab))  # C order: the transpose is LAPACK's band array
    # entry (i, j) of element k's M at band row kl + ku + i - j, column k n + j
    i, j = np.divmod(np.arange(n * n), n)
    ab.reshape(b, n, ldab)[:, j, kl + ku + i - j] = m.reshape(b, n * n)
    flat = ab.reshape(-1)
    for c in coupling:
        key = ("band", c.key, b, n, reach)
        where = cache.get(key)
        if where is None:
            col = c.source * n + c.col  # (len(k),)
            row = c.k[:, None] * n + np.arange(n)  # (len(k), n)
            where = cache[key] = (kl + ku + row - col[:, None]) + col[:, None] * ldab
        flat[where] -= c.values
    lu, piv, info = dgbtrf(ab.T, kl, ku, overwrite_ab=1)
    if info > 0:
        return (info - 1) // n
    pivots = np.abs(lu[kl + ku]).reshape(b, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        condition = pivots.max(axis=1) / pivots.min(axis=1)
    return BandFactor(lu, piv, kl, ku, np.where(np.isfinite(condition), condition, np.inf),
                      np.eye(n) - m)
