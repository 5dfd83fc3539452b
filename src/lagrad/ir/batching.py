"""Batched rules: one equation's primitive applied to B copies at once.

A group of same-structure cyclic blocks (``compile/groups.py``) evaluates
each of its equations once for all B blocks: every argument then carries a
leading batch axis, ``(B, *shape)``, and the parameters are shared. An
elementwise primitive needs no rule of its own: its arguments are aligned
(``(B, 1, ..., *shape)``, so that numpy broadcasts the trailing axes and never
the batch axis) and its ``partials`` are used as they are. A structural
primitive batches when its :class:`~lagrad.ir.primitives.Primitive` carries a
:class:`BatchRule`; the rules for the common ones are here and are attached
where the primitives are defined.

Each rule works on arrays whose first axis is the batch: ``value(*args,
**params)``, ``jvp(k, t, ans, *args, **params)`` (the output tangent for the
tangent ``t`` of argument ``k`` alone) and ``vjp(k, g, ans, *args, **params)``
(the cotangent of argument ``k``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from lagrad.numeric import broadcast

__all__ = ["BatchRule", "align", "unalign", "MATMUL", "SUM", "RESHAPE", "GETITEM"]

Array = NDArray[np.float64]


@dataclass(frozen=True)
class BatchRule:
    """How a structural primitive runs on a batch (leading axis) of arguments."""

    value: Callable[..., Array]
    jvp: Callable[..., Array]
    vjp: Callable[..., Array]
    accepts: Callable[..., bool] | None = None  # params it can batch (default: all)
    # Shared operands (several seeds of one equation): only the tangent ``t`` or
    # cotangent ``g`` has the leading axis, the arguments are the equation's own;
    # ``shared_jvp(k, t, ans, *args)``, ``shared_vjp(k, g, ans, *args)``. None: the
    # arguments are broadcast to the batch and ``jvp`` / ``vjp`` run.
    shared_jvp: Callable[..., Array] | None = None
    shared_vjp: Callable[..., Array] | None = None


def align(a: Array, rank: int) -> Array:
    """``a`` of shape (B, *s) as (B, 1, ..., 1, *s) with ``rank`` trailing axes."""
    a = np.asarray(a)
    missing = rank - (a.ndim - 1)
    if missing <= 0:
        return a
    return a.reshape((a.shape[0],) + (1,) * missing + a.shape[1:])


def unalign(g: Array, shape: tuple[int, ...]) -> Array:
    """Sum a (B, *out) cotangent down to an argument of batched ``shape``: over
    the axes broadcasting added or stretched, never over the batch axis."""
    rank = g.ndim - 1
    inner = (1,) * (rank - (len(shape) - 1)) + tuple(shape[1:])
    axes = tuple(1 + i for i, n in enumerate(inner) if n == 1 and g.shape[1 + i] != 1)
    if axes:
        g = np.sum(g, axis=axes, keepdims=True)
    return g.reshape(shape)


# ------------------------------------------------------------------ matmul
# 1-D operands are promoted as numpy does (a (k,) -> (1, k), b (k,) -> (k, 1));
# the batch axis stays in front: (B, m, k) @ (B, k, n) -> (B, m, n).

def _promote(a: Array, b: Array) -> tuple[Array, Array]:
    a2 = a[:, None, :] if a.ndim == 2 else a
    b2 = b[:, :, None] if b.ndim == 2 else b
    return a2, b2


SMALL = 512  # m k n up to this: einsum (numpy's stacked matmul costs ~30 ns per matrix)


def _bmm(a2: Array, b2: Array) -> Array:
    """(B, m, k) @ (B, k, n)."""
    if a2.shape[1] * a2.shape[2] * b2.shape[2] <= SMALL:
        return np.einsum("bmk,bkn->bmn", a2, b2)
    return np.matmul(a2, b2)


def _matmul_value(a: Array, b: Array) -> Array:
    a2, b2 = _promote(a, b)
    out = _bmm(a2, b2)
    if a.ndim == 2:
        out = out[:, 0]
    if b.ndim == 2:
        out = out[..., 0]
    return out


def _matmul_jvp(k: int, t: Array, ans: Array, a: Array, b: Array) -> Array:
    return _matmul_value(t, b) if k == 0 else _matmul_value(a, t)


def _matmul_vjp(k: int, g: Array, ans: Array, a: Array, b: Array) -> Array:
    a2, b2 = _promote(a, b)
    g2 = g.reshape(a2.shape[0], a2.shape[1], b2.shape[2])
    if k == 0:  # da = g b^T
        return _bmm(g2, np.swapaxes(b2, 1, 2)).reshape(a.shape)
    return _bmm(np.swapaxes(a2, 1, 2), g2).reshape(b.shape)  # db = a^T g


def _matrices(a: Array, b: Array) -> tuple[Array, Array]:
    a2 = np.reshape(a, (1, -1)) if np.ndim(a) == 1 else np.asarray(a)
    b2 = np.reshape(b, (-1, 1)) if np.ndim(b) == 1 else np.asarray(b)
    return a2, b2


SPARSE_SEEDS = 0.05
"""Seeds stacked into a matrix with at most this fraction of non-zeros (and
at least 4096 entries) multiply as a sparse matrix: unit seeds (a Jacobian's
first products, a block's reduced matrix built from the identity) then cost
O(non-zeros x width), not a dense product."""


def _times(x: Array, m: Array) -> Array:
    """x @ m, by a sparse product when x (the stacked seeds) is mostly zeros."""
    if x.size >= 4096 and np.count_nonzero(x) <= SPARSE_SEEDS * x.size:
        return np.asarray(sp.csr_matrix(x) @ m)
    return x @ m


def _matmul_shared_jvp(k: int, t: Array, ans: Array, a: Array, b: Array) -> Array:
    # K tangents of one a @ b as one gemm: the K copies of t are stacked along
    # the rows (t_a b) or the columns (a t_b) of a single product
    a2, b2 = _matrices(a, b)
    seeds = t.shape[0]
    m, inner, n = a2.shape[0], a2.shape[1], b2.shape[1]
    if k == 0:
        out = _times(np.reshape(t, (seeds * m, inner)), b2)
    else:  # a t_b = (t_b^T a^T)^T, the seeds' columns stacked
        tb = np.reshape(t, (seeds, inner, n)).transpose(1, 0, 2).reshape(inner, seeds * n)
        out = _times(tb.T, a2.T).T.reshape(m, seeds, n).transpose(1, 0, 2)
    return np.reshape(out, (seeds,) + np.shape(ans))


def _matmul_shared_vjp(k: int, g: Array, ans: Array, a: Array, b: Array) -> Array:
    a2, b2 = _matrices(a, b)
    seeds = g.shape[0]
    m, inner, n = a2.shape[0], a2.shape[1], b2.shape[1]
    if k == 0:  # da_j = g_j b^T, the K seeds stacked along the rows
        out = _times(np.reshape(g, (seeds * m, n)), b2.T)
        return out.reshape((seeds,) + np.shape(a))
    if n == 1:  # b a vector: db_j = a^T g_j, i.e. the rows g_j a
        return _times(np.reshape(g, (seeds, m)), a2).reshape((seeds,) + np.shape(b))
    stacked = np.reshape(g, (seeds, m, n)).transpose(1, 0, 2).reshape(m, seeds * n)
    out = _times(stacked.T, a2).T.reshape(inner, seeds, n).transpose(1, 0, 2)
    return out.reshape((seeds,) + np.shape(b))


MATMUL = BatchRule(_matmul_value, _matmul_jvp, _matmul_vjp, shared_jvp=_matmul_shared_jvp,
                   shared_vjp=_matmul_shared_vjp)


# --------------------------------------------------------------------- sum

def _batch_axes(ndim: int, axis: Any) -> tuple[int, ...]:
    """The reduced axes of a batched array of ``ndim`` axes."""
    if axis is None:
        return tuple(range(1, ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return tuple(1 + (int(i) % (ndim - 1)) for i in axes)


def _sum_value(x: Array, *, axis: Any, keepdims: bool) -> Array:
    axes = _batch_axes(x.ndim, axis)
    x = np.asarray(x)
    if axes == tuple(range(1, x.ndim)) and x.ndim > 1 and x.dtype == np.float64:
        # every entry of each element: a product with ones (numpy reduces a
        # short last axis row by row, ~10x slower)
        total = x.reshape(x.shape[0], -1) @ np.ones(x[0].size)
        return total.reshape((x.shape[0],) + (1,) * (x.ndim - 1)) if keepdims else total
    return np.sum(x, axis=axes, keepdims=keepdims)


def _sum_jvp(k: int, t: Array, ans: Array, x: Array, *, axis: Any, keepdims: bool) -> Array:
    return _sum_value(t, axis=axis, keepdims=keepdims)


def _sum_vjp(k: int, g: Array, ans: Array, x: Array, *, axis: Any, keepdims: bool) -> Array:
    axes = _batch_axes(x.ndim, axis)
    kept = tuple(1 if i in axes else n for i, n in enumerate(x.shape))
    return broadcast(np.reshape(g, kept), x.shape)


SUM = BatchRule(_sum_value, _sum_jvp, _sum_vjp)


# ----------------------------------------------------------------- reshape

def _reshape_value(x: Array, *, shape: tuple[int, ...]) -> Array:
    return np.reshape(x, (x.shape[0],) + tuple(shape))


def _reshape_jvp(k: int, t: Array, ans: Array, x: Array, *, shape: tuple[int, ...]) -> Array:
    return _reshape_value(t, shape=shape)


def _reshape_vjp(k: int, g: Array, ans: Array, x: Array, *, shape: tuple[int, ...]) -> Array:
    return np.reshape(g, x.shape)


RESHAPE = BatchRule(_reshape_value, _reshape_jvp, _reshape_vjp)


# ----------------------------------------------------------------- getitem
# Basic indexing only (integers and slices): the batch axis is kept in front by
# a leading full slice, and the selection has no repeated entries.

def _basic(index: Any) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (int, np.integer, slice)) for p in parts)


def _batched_index(index: Any) -> tuple[Any, ...]:
    return (slice(None),) + (index if isinstance(index, tuple) else (index,))


def _getitem_value(x: Array, *, index: Any) -> Array:
    return np.asarray(x)[_batched_index(index)]


def _getitem_jvp(k: int, t: Array, ans: Array, x: Array, *, index: Any) -> Array:
    return np.asarray(t)[_batched_index(index)]


def _getitem_vjp(k: int, g: Array, ans: Array, x: Array, *, index: Any) -> Array:
    out = np.zeros(np.shape(x))
    out[_batched_index(index)] = g
    return out


def _getitem_accepts(*, index: Any) -> bool:
    return _basic(index)


GETITEM = BatchRule(_getitem_value, _getitem_jvp, _getitem_vjp, _getitem_accepts)
