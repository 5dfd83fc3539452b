"""The constant part of a sparse matrix with variable values: its pattern.

A :class:`CSRPattern` is built once, when an operation is recorded, from COO
indices (``row``, ``col``, ``shape``); the values may then be traced
variables. :func:`lagrad.coo_matvec` (``ir/sparse.py``) and
:func:`lagrad.linalg.spsolve` (``ir/linalg.py``) share it, with the checks
of the indices below.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from lagrad.errors import ProgramError
from lagrad.ir.constants import frozen
from lagrad.ir.primitives import Tracer

__all__ = ["CSRPattern", "check_matrix_shape", "check_indices"]

Array = NDArray[np.float64]


@dataclass(frozen=True, eq=False, repr=False)
class CSRPattern:
    """The CSR structure of a sparse matrix pattern, built once from COO indices.

    Attributes
    ----------
    shape : (int, int)
        The matrix shape.
    indptr, indices : ndarray of int
        scipy's CSR arrays: the entries of row r are ``indptr[r]:indptr[r + 1]``,
        ``indices`` their columns (repeated columns are kept, and add up).
    rows : ndarray of int
        The row of each entry, in CSR order.
    order : ndarray of int or None
        ``order[k]`` is the COO position of CSR entry k, so that CSR values are
        ``data[order]``; ``None`` when the COO order already is CSR order.
    """

    shape: tuple[int, int]
    indptr: NDArray[np.integer[Any]]
    indices: NDArray[np.integer[Any]]
    rows: NDArray[np.integer[Any]]
    order: NDArray[np.intp] | None

    @classmethod
    def from_coo(cls, row: NDArray[np.integer[Any]], col: NDArray[np.integer[Any]],
                 shape: tuple[int, int]) -> CSRPattern:
        """Pattern of ``coo_matrix((data, (row, col)), shape)``; indices already checked."""
        # int32 indices when they fit: scipy then neither copies nor scans them
        dtype = np.int32 if max(shape[0], shape[1], row.size) < 2**31 - 1 else np.int64
        order: NDArray[np.intp] | None = None
        if row.size and np.any(row[1:] < row[:-1]):
            order = np.argsort(row, kind="stable")  # stable: ties keep COO order
            row, col = row[order], col[order]
        counts = np.bincount(row, minlength=shape[0])
        indptr = np.concatenate([[0], np.cumsum(counts)])
        return cls(shape, frozen(indptr, dtype), frozen(col, dtype), frozen(row, dtype),
                   None if order is None else frozen(order))

    @property
    def nnz(self) -> int:
        """Number of stored entries (repeated pairs counted separately)."""
        return int(self.indices.size)

    def matrix(self, data: Array) -> sp.csr_matrix:
        """A as a scipy CSR matrix, for values ``data`` in CSR order (no copy)."""
        return _with_data(self._csr, data)

    def transposed(self, data: Array) -> sp.csc_matrix:
        """A^T as a scipy CSC matrix on the same arrays (no copy)."""
        return _with_data(self._csc_transposed, data)

    # Templates holding the structure. scipy's constructor copies a ``data``
    # that is a view into a larger array (its ``_prune_array``), and lagrad's
    # values are views into the flat z: a shallow copy of a template with its
    # ``data`` replaced makes the matrix in O(1) instead.
    @cached_property
    def _csr(self) -> sp.csr_matrix:
        return sp.csr_matrix((np.zeros(self.nnz), self.indices, self.indptr), shape=self.shape)

    @cached_property
    def _csc_transposed(self) -> sp.csc_matrix:
        return self._csr.T

    def __repr__(self) -> str:
        return f"CSRPattern(shape={self.shape}, nnz={self.nnz})"


def _with_data(template: Any, data: Array) -> Any:
    out = copy.copy(template)
    out.data = np.ascontiguousarray(data, dtype=float)
    return out


def check_matrix_shape(shape: Any, who: str) -> tuple[int, int]:
    """``shape`` as two non-negative ints; ``who`` names the operation in errors."""
    dims = tuple(shape) if isinstance(shape, (tuple, list)) else ()
    if len(dims) != 2 or not all(isinstance(n, (int, np.integer)) and n >= 0 for n in dims):
        raise ProgramError(f"{who}: shape={shape!r} is not a matrix shape; give two "
                           "non-negative integers (n_rows, n_cols)")
    return int(dims[0]), int(dims[1])


def check_indices(index: Any, name: str, bound: int, who: str) -> NDArray[np.intp]:
    """A constant 1-D integer index array, every entry in ``[0, bound)``."""
    if isinstance(index, Tracer):
        raise ProgramError(f"{who}: {name} is the traced variable {index.name!r}; the "
                           "sparsity pattern must be constant (an integer array computed "
                           "outside the traced function)")
    arr = np.asarray(index)
    if arr.ndim != 1 or (arr.dtype.kind not in "iu" and arr.size):
        raise ProgramError(f"{who}: {name} must be a 1-D array of integers, got "
                           f"{arr.dtype} of shape {arr.shape}")
    arr = arr.astype(np.intp)
    bad = np.flatnonzero((arr < 0) | (arr >= bound))
    if bad.size:
        k = int(bad[0])
        raise ProgramError(f"{who}: {name}[{k}] = {int(arr[k])} is out of range for "
                           f"{bound} {name}s ({bad.size} such entries); indices must lie in "
                           f"[0, {bound}): check the pattern or the shape")
    return arr
