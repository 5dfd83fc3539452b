"""Constants as a program holds them: private, read-only copies.

A program is data that is solved later, possibly many times. A constant it
read from the caller (an operand, a ``where`` condition, an index array, a
scipy.sparse matrix, an ``init``) is copied when it is recorded and frozen, so
that changing the caller's array afterwards cannot change the program, and
no solve can write into the program's own copy.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import DTypeLike

from lagrad.errors import ProgramError

__all__ = ["frozen", "frozen_sparse", "frozen_param", "as_real"]

# numpy >= 1.25 has it in np.exceptions (numpy 2 removed np.ComplexWarning)
_ComplexWarning = getattr(np, "exceptions", np).ComplexWarning


_PLAIN = (int, bool, float, str, slice)


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
    if value is None or type(value) in _PLAIN:
        return value  # the common case (an axis, a flag): nothing to freeze
    if isinstance(value, np.ndarray):
        return frozen(value)
    if sp.issparse(value):
        return frozen_sparse(value)
    if isinstance(value, tuple):
        return tuple(frozen_param(v) for v in value)
    return value


def as_real(value: Any, what: str, *, warn_complex: bool = True) -> np.ndarray:
    """``value`` as a float64 array; ``what`` names it in errors.

    Complex values lose their imaginary part with a ``ComplexWarning`` (as in
    numpy) when ``warn_complex``, else raise; anything not numeric raises.
    """
    arr = np.asarray(value)
    if arr.dtype.kind == "c" and warn_complex:
        warnings.warn(f"{what} is complex; its imaginary part is discarded", _ComplexWarning,
                      stacklevel=3)
        arr = arr.real
    if arr.dtype.kind not in "biuf":
        raise ProgramError(f"{what} must be real numbers, got {type(value).__name__} "
                           f"{_short(value)} of dtype {arr.dtype}")
    return arr.astype(float, copy=False)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
