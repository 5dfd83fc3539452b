"""Constants as a program holds them: private, read-only copies.

A program is data that is solved later, possibly many times. A constant it
read from the caller (an operand, a ``where`` condition, an index array, a
scipy.sparse matrix, an ``init``) is copied when it is recorded and frozen, so
that changing the caller's array afterwards cannot change the program, and
no solve can write into the program's own copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import DTypeLike

__all__ = ["frozen", "frozen_sparse", "frozen_param"]


def frozen(a: Any, dtype: DTypeLike = None) -> np.ndarray:
    """A read-only copy of ``a`` as an ndarray (of ``dtype``, if given)."""
    out = np.array(a, dtype=dtype, copy=True)
    out.flags.writeable = False
    return out


def frozen_sparse(m: Any) -> sp.csr_matrix:
    """A read-only CSR copy of the scipy.sparse matrix ``m``, in canonical form
    (sorted indices, no duplicates), so that scipy never needs to fix it in place."""
    out = sp.csr_matrix(m, dtype=float, copy=True)
    out.sum_duplicates()  # also sorts the indices
    for arr in (out.data, out.indices, out.indptr):
        arr.flags.writeable = False
    return out


def frozen_param(value: Any) -> Any:
    """A primitive's parameter as recorded: arrays (also inside a tuple, as in an
    index) and sparse matrices frozen; anything else (ints, slices, shapes) as is."""
    if isinstance(value, np.ndarray):
        return frozen(value)
    if sp.issparse(value):
        return frozen_sparse(value)
    if isinstance(value, tuple):
        return tuple(frozen_param(v) for v in value)
    return value
