"""Least squares on traced values: ``lagrad.linalg.lstsq`` and
``matrix_rank``, as :func:`numpy.linalg.lstsq` and
:func:`numpy.linalg.matrix_rank`, both read from the singular values.

lstsq's solution is ``pinv(a) @ b`` (numpy's cutoff is pinv's: singular
values below ``max(M, N) eps`` times the largest count as zero), so it has
pinv's first and second derivatives, which hold where the rank does not
change; the rank is a count of the current values (float64, derivative
zero).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from lagrad.errors import ProgramError
from lagrad.ir import ops
from lagrad.ir import primitives as P
from lagrad.ir.arrayops import shape_of
from lagrad.ir.eigen import pinv, svdvals

__all__ = ["lstsq", "matrix_rank", "LstsqResult"]


def matrix_rank(a: Any, tol: Any = None, hermitian: bool = False, *, rtol: Any = None) -> Any:
    """The number of singular values above numpy's tolerance (``S.max() *
    max(M, N) * eps``, or ``tol``), as :func:`numpy.linalg.matrix_rank`: a
    float64 count of the current values, derivative zero."""
    if not isinstance(a, P.Tracer):  # numbers: numpy's integer
        return np.linalg.matrix_rank(a, tol, hermitian, rtol=rtol)
    shape = shape_of(a)
    if len(shape) < 2:
        return ops.not_equal(a, 0.0) if not shape else ops.max(ops.not_equal(a, 0.0))
    if rtol is not None:
        raise ProgramError("linalg.matrix_rank: give tol (absolute), not rtol, on traced values")
    s = svdvals(a)
    if tol is None:
        tol = P.mul(ops.max(s, axis=-1, keepdims=True), max(shape[-2:]) * np.finfo(float).eps)
    return ops.sum(ops.greater(s, tol), axis=-1)


class LstsqResult(NamedTuple):
    """numpy's ``lstsq`` result: ``(x, residuals, rank, s)``."""

    x: Any
    residuals: Any
    rank: Any
    s: Any


def lstsq(a: Any, b: Any, rcond: Any = None) -> LstsqResult:
    """The least-squares solution of a x = b (the minimum-norm one where a
    has a lower rank), as :func:`numpy.linalg.lstsq` with its default
    cutoff: x = pinv(a) b (the same cutoff), with first and second
    derivatives where the rank does not change; ``rank`` counts the singular
    values above the cutoff (float64, derivative zero) and ``s`` are the
    singular values.

    ``residuals`` (the squared norm of each column of b - a x) has shape
    (k,), or (1,) for a vector b, when a is tall (m > n), and is empty
    otherwise: numpy's shapes where a tall a has full column rank. (While
    tracing there are no values to find the rank from: for a tall a of lower
    rank, numpy returns an empty array, lagrad still the squared norms.)

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> a = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]])
    >>> lagrad.grad(lambda b: np.sum(np.linalg.lstsq(a, b)[0]))(np.array([1.0, 2.0, 4.0]))
    array([0.33333333, 0.33333333, 0.33333333])
    """
    if rcond is not None:
        raise ProgramError("linalg.lstsq: only numpy's default cutoff (rcond=None) on traced "
                           "values")
    sa, sb = shape_of(a), shape_of(b)
    if len(sa) != 2 or not 1 <= len(sb) <= 2 or sb[0] != sa[0] or not min(sa):
        raise ProgramError(f"linalg.lstsq: a has shape {sa} and b {sb}; give a matrix (m, n) "
                           f"and b of shape ({sa[0] if sa else 'm'},) or (m, k)")
    if not isinstance(a, P.Tracer) and not isinstance(b, P.Tracer):
        return LstsqResult(*np.linalg.lstsq(a, b))
    x = ops.matmul(pinv(a), b)
    s = svdvals(a)
    m, n = sa
    if m > n:
        r = P.sub(ops.matmul(a, x), b)
        residuals = ops.sum(P.mul(r, r), axis=0, keepdims=len(sb) == 1)
    else:
        residuals = np.zeros(0)
    return LstsqResult(x, residuals, matrix_rank(a), s)
