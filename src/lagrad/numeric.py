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
    up over the iterations of many small blocks."""
    return math.sqrt(float(np.dot(x, x)))


def all_finite(vec: Array) -> bool:
    """True when every entry is finite: one reduction, no boolean temporary
    (a sum is non-finite when an entry is; an overflowing sum of finite
    entries is re-checked entrywise)."""
    with np.errstate(all="ignore"):
        total = np.add.reduce(vec, axis=None)
    return bool(np.isfinite(total)) or bool(np.isfinite(vec).all())


def lu_condition(pivots: Array) -> float:
    """Condition estimate of a matrix I - J from its LU pivots: the largest
    pivot (at least 1, the identity's scale) over the smallest; inf for a zero
    pivot. Cheap and rough, but it sees a block that is nearly singular."""
    d = np.abs(pivots)
    if not d.size:
        return 1.0
    return float(max(d.max(), 1.0) / d.min()) if d.min() > 0 else float("inf")
