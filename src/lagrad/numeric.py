"""Numerical helpers shared by the compile and solve layers: cheap norms and
finiteness checks on the flat vectors."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

__all__ = ["norm2", "all_finite", "lu_condition"]

Array = NDArray[np.float64]


def norm2(x: Array) -> float:
    """Euclidean norm of a vector: what np.linalg.norm computes for real 1-D
    input (sqrt of x . x), without its ~2 us of overhead per call, which adds
    up over the iterations of many small blocks. Scale-safe: when x . x
    overflows (entries above ~1e154) it is recomputed on x / max|x| (call it
    under ``np.errstate(over="ignore")`` where that can happen: the first try
    warns)."""
    squares = float(np.dot(x, x))
    if squares == math.inf:
        return _rescaled_norm2(x)
    return math.sqrt(squares)


def _rescaled_norm2(x: Array) -> float:
    """max|x| * ||x / max|x|||: inf only when an entry is."""
    largest = float(np.max(np.abs(x)))
    if not math.isfinite(largest):
        return math.inf
    y = x / largest
    return largest * math.sqrt(float(np.dot(y, y)))


def all_finite(vec: Array) -> bool:
    """True when every entry is finite: one BLAS dot, no boolean temporary.
    The sum of squares is finite only when every entry is (its terms are
    non-negative, so nothing cancels an inf or a NaN); one that overflows, from
    finite entries above 1e154, is re-checked entrywise. About 1.4x the speed
    of a plain sum on large vectors."""
    with np.errstate(all="ignore"):
        total = np.vdot(vec, vec)
    return bool(np.isfinite(total)) or bool(np.isfinite(vec).all())


def lu_condition(pivots: Array) -> float:
    """Condition estimate of a matrix I - J from its LU pivots: the largest
    pivot (at least 1, the identity's scale) over the smallest; inf for a zero
    pivot. Cheap and rough, but it sees a block that is nearly singular."""
    d = np.abs(pivots)
    if not d.size:
        return 1.0
    return float(max(d.max(), 1.0) / d.min()) if d.min() > 0 else float("inf")
