"""Numerical helpers shared by the compile and solve layers: cheap norms and
finiteness checks on the flat vectors, and the scatter-add of the sweeps."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse
from numpy.typing import NDArray

__all__ = ["norm2", "all_finite", "lu_condition", "index_array", "scatter_add",
           "compiled_scatter", "broadcast"]

Array = NDArray[np.float64]
Ints = NDArray[np.integer]


def _compiled_loops() -> tuple[Any, Any]:
    """SciPy's ``csc_matvec`` and ``coo_matvec`` (y[i] += a * x[j] over a
    sparse matrix's entries, in place: one C loop each) when they are there and
    do what :func:`scatter_add` needs, checked once on a small case against
    ``np.add.at`` (the module is private: it may change); else (None, None),
    and add.at does the work."""
    try:
        tools = getattr(scipy.sparse, "_sparsetools", None)
        csc_matvec, coo_matvec = tools.csc_matvec, tools.coo_matvec  # type: ignore[union-attr]
        x, w = np.array([1.0, 2.0, 4.0]), np.array([1.0, 3.0, 5.0])
        at, gather = np.array([0, 2, 0], dtype=np.int32), np.array([2, 0, 1], dtype=np.int32)
        y, expected = np.zeros(3), np.zeros(3)
        csc_matvec(3, 3, np.arange(4, dtype=np.int32), at, w, x, y)
        coo_matvec(3, at, gather, w, x, y)
        np.add.at(expected, at, w * x)
        np.add.at(expected, at, w * x[gather])
        if np.array_equal(y, expected):
            return csc_matvec, coo_matvec
    except Exception:  # a SciPy without them (AttributeError), or changed
        pass
    return None, None


_csc_matvec, _coo_matvec = _compiled_loops()


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


def broadcast(x: Any, shape: tuple[int, ...]) -> Any:
    """``np.broadcast_to(x, shape)``, or ``x`` itself when it has that shape
    already: the common case of a batched rule, where numpy's call (Python
    code making a view) costs more than a small block's arithmetic. The
    result is to be read, not written."""
    return x if np.shape(x) == shape else np.broadcast_to(x, shape)


def lu_condition(pivots: Array) -> float:
    """Condition estimate of a matrix I - J from its LU pivots: the largest
    pivot (at least 1, the identity's scale) over the smallest; inf for a zero
    pivot. Cheap and rough, but it sees a block that is nearly singular."""
    d = np.abs(pivots)
    if not d.size:
        return 1.0
    return float(max(d.max(), 1.0) / d.min()) if d.min() > 0 else float("inf")


def index_array(positions: Ints, bound: int) -> Ints:
    """``positions`` (each below ``bound``) as the index array :func:`scatter_add`
    reads fastest: int32 when ``bound`` fits, which halves the index traffic,
    else int64; contiguous."""
    dtype = np.int32 if bound < 2**31 else np.int64
    return np.ascontiguousarray(positions, dtype=dtype)


_COLUMN_STARTS: dict[type, Ints] = {}


def _column_starts(m: int, dtype: type) -> Ints:
    """0, 1, ..., m as ``dtype``: a view of one cached range, grown on demand."""
    starts = _COLUMN_STARTS.get(dtype)
    if starts is None or starts.size <= m:
        starts = np.arange(max(m + 1, 2 * (0 if starts is None else starts.size)), dtype=dtype)
        _COLUMN_STARTS[dtype] = starts
    return starts[:m + 1]


def compiled_scatter(at: Ints) -> Callable[[Array, Array, Array], None] | None:
    """:func:`scatter_add` bound to one ``at``: ``f(y, w, x)`` runs the
    compiled loop with none of its checks (together as costly as a small
    level's arithmetic). The caller guarantees what they would: y, w and x
    contiguous float64 vectors, w and x of ``at``'s length, every position
    inside y. None where the loop cannot run (then :func:`scatter_add`)."""
    if _csc_matvec is None or at.ndim != 1 or at.dtype not in (np.int32, np.int64) \
            or not at.flags.c_contiguous:
        return None
    m, loop = at.size, _csc_matvec
    starts = _column_starts(m, at.dtype.type)

    def run(y: Array, w: Array, x: Array) -> None:
        loop(y.size, m, starts, at, w, x, y)
    return run


def scatter_add(y: Array, at: Ints, w: Array, x: Array, gather: Ints | None = None) -> None:
    """``y[at[j]] += w[j] * x[j]`` for every j in order, repeated positions
    accumulating: ``np.add.at(y, at, w * x)``, bit for bit. With ``gather``,
    ``x[gather[j]]`` in place of ``x[j]`` (``np.add.at(y, at, w * x[gather])``).

    It runs as SciPy's product of a sparse matrix with x accumulated into y in
    place (compressed columns with one entry each, or coordinates with
    ``gather``): one compiled loop with no temporary, faster than add.at and
    its separate product, more so with int32 positions (see
    :func:`index_array`). Where that loop cannot run (a 2-D or
    non-float64 operand, positions of another dtype, y not contiguous, or a
    SciPy without it) numpy's add.at does it. ``x`` may be ``y`` or a view of
    it when no position written is read. The compiled loop does not check
    positions: they must lie in y (and ``gather``'s in x), as the sweeps'
    do by construction; operands of different lengths take add.at's path."""
    m = at.size
    fast = _csc_matvec is not None and y.dtype == np.float64 and y.ndim == 1 and \
        x.ndim == 1 and w.dtype == np.float64 and x.dtype == np.float64 and \
        at.dtype in (np.int32, np.int64) and y.flags.c_contiguous and y.flags.writeable \
        and at.ndim == 1 and w.shape == at.shape
    if gather is None:
        if fast and x.shape == at.shape:
            _csc_matvec(y.size, m, _column_starts(m, at.dtype.type), at, w, x, y)
        else:
            np.add.at(y, at, w * x)
    elif fast and gather.dtype == at.dtype and gather.shape == at.shape:
        _coo_matvec(m, at, gather, w, x, y)
    else:
        np.add.at(y, at, w * x[gather])
