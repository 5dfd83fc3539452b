"""numpy 2's array-API names and small compositions on traced values:
``matrix_transpose``, ``linalg.vecdot`` / ``np.vecdot``, the ``linalg``
aliases (``outer``, ``trace``, ``diagonal``, ``cross``, ``tensordot``,
``matmul``, ``matrix_transpose``), ``linalg.cond``,
``fix``, ``nan_to_num``, ``real`` / ``imag`` / ``conj``, and the reductions
to 0/1 of ``all``, ``any`` and ``count_nonzero``.

Each is one or a few of lagrad's operations: ``cond`` (2-norm) is the ratio
of the extreme singular values, the other orders ``norm(a) norm(inv(a))``;
``nan_to_num``,
``real`` and ``conj`` are the value itself, since a traced value is real and
finite (a solve refuses NaN).

>>> import numpy as np, lagrad
>>> lagrad.grad(lambda x: np.linalg.vecdot(x, x))(np.array([1.0, 3.0]))
array([2., 6.])
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lagrad.errors import ProgramError
from lagrad.ir import arrayops as A
from lagrad.ir import ops
from lagrad.ir import primitives as P
from lagrad.ir import ufuncs as U
from lagrad.ir.eigen import svdvals
from lagrad.ir.linalg import inv
from lagrad.ir.norms import norm

__all__ = ["matrix_transpose", "vecdot", "linalg_trace", "linalg_diagonal", "linalg_cross",
           "linalg_tensordot", "cond", "fix", "nan_to_num", "real", "imag",
           "all_", "any_", "count_nonzero"]


def matrix_transpose(x: Any, /) -> Any:
    """The last two axes swapped, as :func:`numpy.matrix_transpose`."""
    if len(A.shape_of(x)) < 2:
        raise ProgramError(f"matrix_transpose: needs at least 2 dimensions, got shape "
                           f"{A.shape_of(x)}")
    return A.swapaxes(x, -1, -2)


def vecdot(x1: Any, x2: Any, /, *, axis: int = -1) -> Any:
    """The dot product of vectors along ``axis`` (broadcast elsewhere), as
    :func:`numpy.linalg.vecdot`."""
    product = P.mul(x1, x2)
    return ops.sum(product, axis=A.axis_of("vecdot", axis, len(A.shape_of(product))))


def linalg_trace(x: Any, /, *, offset: int = 0, dtype: Any = None) -> Any:
    """The trace of the last two axes, as :func:`numpy.linalg.trace`."""
    return A.trace(x, offset, -2, -1)


def linalg_diagonal(x: Any, /, *, offset: int = 0) -> Any:
    """The diagonal of the last two axes, as :func:`numpy.linalg.diagonal`."""
    return A.diagonal(x, offset, -2, -1)


def linalg_cross(x1: Any, x2: Any, /, *, axis: int = -1) -> Any:
    """The cross product of 3-vectors along ``axis``, as :func:`numpy.linalg.cross`."""
    return A.cross(x1, x2, axis=axis)


def linalg_tensordot(x1: Any, x2: Any, /, *, axes: Any = 2) -> Any:
    """As :func:`numpy.linalg.tensordot`."""
    return ops.tensordot(x1, x2, axes)


def cond(x: Any, p: Any = None) -> Any:
    """The condition number of a matrix (or a stack) in the norm ``p``, as
    :func:`numpy.linalg.cond`."""
    if p is None or p in (2, -2):
        s = svdvals(x)
        largest, smallest = ops.getitem(s, (..., 0)), ops.getitem(s, (..., -1))
        return P.div(smallest, largest) if p == -2 else P.div(largest, smallest)
    return P.mul(norm(x, p, axis=(-2, -1)), norm(inv(x), p, axis=(-2, -1)))


def fix(x: Any, out: Any = None) -> Any:
    """Rounded toward zero, as :func:`numpy.fix` (``trunc``)."""
    if out is not None:
        raise ProgramError("fix: out= cannot hold a traced value")
    return U.trunc(x)


def nan_to_num(x: Any, copy: bool = True, nan: float = 0.0, posinf: Any = None,
               neginf: Any = None) -> Any:
    """x itself: a traced value is finite (a solve refuses NaN and inf)."""
    return P.identity(x)


def real(val: Any) -> Any:
    """x itself: traced values are real."""
    return val


def imag(val: Any) -> Any:
    """Zeros of x's shape: traced values are real."""
    return np.zeros(A.shape_of(val))


def _mask_reduce(reduce: Any, a: Any, axis: Any, keepdims: bool) -> Any:
    return reduce(ops.not_equal(a, 0.0), axis=axis, keepdims=keepdims is True)


def all_(a: Any, axis: Any = None, out: Any = None, keepdims: Any = False, *,
         where: Any = None) -> Any:
    """Whether every entry is nonzero, as :func:`numpy.all`: 1.0 or 0.0 (the
    current values, derivative zero)."""
    if out is not None or where is not None:
        raise ProgramError("all: out= and where= are not supported on traced values")
    return _mask_reduce(ops.min, a, axis, keepdims)


def any_(a: Any, axis: Any = None, out: Any = None, keepdims: Any = False, *,
         where: Any = None) -> Any:
    """Whether some entry is nonzero, as :func:`numpy.any`: 1.0 or 0.0."""
    if out is not None or where is not None:
        raise ProgramError("any: out= and where= are not supported on traced values")
    return _mask_reduce(ops.max, a, axis, keepdims)


def count_nonzero(a: Any, axis: Any = None, *, keepdims: bool = False) -> Any:
    """The number of nonzero entries, as :func:`numpy.count_nonzero` (float64)."""
    if math.prod(A.shape_of(a)) == 0:
        return np.zeros(())
    return _mask_reduce(ops.sum, a, axis, keepdims)
