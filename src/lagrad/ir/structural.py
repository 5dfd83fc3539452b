"""Structural primitives (reshape, transpose, indexing, reductions,
concatenation, matrix products): each gives its VJP, JVP and local Jacobian
directly, and its second-order VJP."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from lagrad.ir import batching
from lagrad.ir.accumulate import matmul_vjp_add
from lagrad.ir.primitive import Entries, Primitive, positions, selection

Array = NDArray[np.float64]
Shape = tuple[int, ...]

__all__ = ["linear_second_vjp", "reshape", "transpose", "getitem", "reduced_shape",
           "expand_reduced", "reduction_rows", "sum_", "logsumexp", "concatenate", "bilinear_jvp",
           "matmul", "STRUCTURAL", "sparse_matmul"]


# ------------------------------------------------------ structural rules
# Linear structural maps (reshape, transpose, indexing, concatenation) are
# selections: their Jacobian is found by applying the map to the array of flat
# positions, which says where each output element was read from. Being linear,
# their VJP does not move with the arguments: their second_vjp is None.

def linear_second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array,
                      *args: Any, **params: Any) -> None:
    """The second-order rule of a linear map: its VJP is constant, the term is zero."""
    return None


def _reshape_vjp(k: int, g: Array, ans: Array, x: Array, *, shape: Shape) -> Array:
    return np.reshape(g, np.shape(x))


def _reshape_jvp(ts: Sequence[Array | None], ans: Array, x: Array, *, shape: Shape) -> Array:
    return np.reshape(ts[0], shape)  # type: ignore[arg-type]


def _reshape_jacobian(k: int, ans: Array, x: Array, *, shape: Shape) -> Entries:
    at = np.arange(np.size(x))
    return selection(at, at, (at.size, at.size))


def _reshape_value(x: Array, *, shape: Shape) -> Array:
    return np.reshape(x, shape)


def _reshape_shape(s: Shape, *, shape: Shape) -> Shape:
    return tuple(shape)


reshape = Primitive("reshape", _reshape_value, _reshape_shape, vjp=_reshape_vjp,
                    jvp=_reshape_jvp, jacobian=_reshape_jacobian, batch=batching.RESHAPE,
                     second_vjp=linear_second_vjp)


def _transpose_vjp(k: int, g: Array, ans: Array, x: Array, *, axes: Shape) -> Array:
    return np.transpose(g, np.argsort(axes))


def _transpose_jvp(ts: Sequence[Array | None], ans: Array, x: Array, *, axes: Shape) -> Array:
    return np.transpose(ts[0], axes)


def _transpose_jacobian(k: int, ans: Array, x: Array, *, axes: Shape) -> Entries:
    cols = np.transpose(positions(np.shape(x)), axes).ravel()
    return selection(np.arange(cols.size), cols, (cols.size, np.size(x)))


def _transpose_value(x: Array, *, axes: Shape) -> Array:
    return np.transpose(x, axes)


def _transpose_shape(s: Shape, *, axes: Shape) -> Shape:
    return tuple(s[a] for a in axes)


transpose = Primitive("transpose", _transpose_value, _transpose_shape, vjp=_transpose_vjp,
                      jvp=_transpose_jvp, jacobian=_transpose_jacobian,
                       second_vjp=linear_second_vjp)


def _getitem_shape(s: Shape, *, index: Any) -> Shape:
    return np.broadcast_to(np.empty(()), s)[index].shape


def _getitem_vjp(k: int, g: Array, ans: Array, x: Array, *, index: Any) -> Array:
    if (np.ndim(x) == 1 and isinstance(index, np.ndarray) and index.ndim == 1
            and index.dtype.kind in "iu" and (index.size == 0 or index.min() >= 0)):
        # a gather's adjoint is a scatter-add: bincount is about 2x np.add.at
        return np.bincount(index, weights=np.ravel(g), minlength=np.shape(x)[0])
    out = np.zeros(np.shape(x))
    np.add.at(out, index, g)  # repeated integer indices accumulate
    return out


def _getitem_jvp(ts: Sequence[Array | None], ans: Array, x: Array, *, index: Any) -> Array:
    return np.asarray(ts[0])[index]


def _getitem_jacobian(k: int, ans: Array, x: Array, *, index: Any) -> Entries:
    cols = np.ravel(positions(np.shape(x))[index])
    return selection(np.arange(cols.size), cols, (cols.size, np.size(x)))


def _getitem_value(x: Array, *, index: Any) -> Array:
    return np.asarray(x)[index]


getitem = Primitive("getitem", _getitem_value, _getitem_shape,
                    vjp=_getitem_vjp, jvp=_getitem_jvp, jacobian=_getitem_jacobian,
                    batch=batching.GETITEM,
                     second_vjp=linear_second_vjp)


def reduced_shape(s: Shape, *, axis: Shape | None, keepdims: bool) -> Shape:
    """The shape rule of reductions over ``axis`` (None: all axes)."""
    axes = range(len(s)) if axis is None else axis
    if keepdims:
        return tuple(1 if i in axes else n for i, n in enumerate(s))
    return tuple(n for i, n in enumerate(s) if i not in axes)


def expand_reduced(g: Array, x: Array, axis: Shape | None) -> Array:
    """Reshape a reduced array so that it broadcasts against ``x``."""
    return np.reshape(g, reduced_shape(np.shape(x), axis=axis, keepdims=True))


def _sum_vjp(k: int, g: Array, ans: Array, x: Array, *, axis: Shape | None,
             keepdims: bool) -> Array:
    return np.broadcast_to(expand_reduced(g, x, axis), np.shape(x))


def _sum_jvp(ts: Sequence[Array | None], ans: Array, x: Array, *, axis: Shape | None,
             keepdims: bool) -> Array:
    return np.sum(ts[0], axis=axis, keepdims=keepdims)


def reduction_rows(x: Array, axis: Shape | None) -> NDArray[np.intp]:
    """The row (output position) of each input element of a reduction, flat."""
    out = positions(reduced_shape(np.shape(x), axis=axis, keepdims=True))
    return np.broadcast_to(out, np.shape(x)).ravel()


def _sum_jacobian(k: int, ans: Array, x: Array, *, axis: Shape | None,
                  keepdims: bool) -> Entries:
    rows = reduction_rows(x, axis)
    return selection(rows, np.arange(rows.size), (np.size(ans), rows.size))


def _sum_vjp_set(k: int, out: Array, g: Array, ans: Array, x: Array, *,
                 axis: Shape | None, keepdims: bool) -> bool:
    """The cotangent broadcast straight into ``out`` (no broadcast_to view)."""
    np.copyto(out, g if axis is None or keepdims else expand_reduced(g, x, axis))
    return True


def _sum_vjp_add(k: int, out: Array, g: Array, ans: Array, x: Array, *,
                 axis: Shape | None, keepdims: bool) -> bool:
    np.add(out, g if axis is None or keepdims else expand_reduced(g, x, axis), out=out)
    return True


def _sum_value(x: Array, *, axis: Shape | None, keepdims: bool) -> Array:
    return np.add.reduce(x, axis=axis, keepdims=keepdims)  # np.sum without its dispatch


sum_ = Primitive("sum", _sum_value, reduced_shape, vjp=_sum_vjp, jvp=_sum_jvp,
                 jacobian=_sum_jacobian, batch=batching.SUM,
                 vjp_set=_sum_vjp_set, vjp_add=_sum_vjp_add,
                  second_vjp=linear_second_vjp)


def _softmax_weights(ans: Array, x: Array, axis: Shape | None) -> Array:
    return np.exp(x - expand_reduced(ans, x, axis))


def _lse_vjp(k: int, g: Array, ans: Array, x: Array, *, axis: Shape | None,
             keepdims: bool) -> Array:
    return expand_reduced(g, x, axis) * _softmax_weights(ans, x, axis)


def _lse_jvp(ts: Sequence[Array | None], ans: Array, x: Array, *, axis: Shape | None,
             keepdims: bool) -> Array:
    return np.sum(ts[0] * _softmax_weights(ans, x, axis), axis=axis, keepdims=keepdims)


def _lse_jacobian(k: int, ans: Array, x: Array, *, axis: Shape | None,
                  keepdims: bool) -> Entries:
    rows = reduction_rows(x, axis)
    vals = _softmax_weights(ans, x, axis).ravel()
    return selection(rows, np.arange(rows.size), (np.size(ans), rows.size), vals)


def _lse_value(x: Array, *, axis: Shape | None, keepdims: bool) -> Array:
    # log sum exp(x - m) + m with m the largest entry (no overflow); a slice whose
    # maximum is not finite (all -inf, or an inf or nan) is not shifted, so it gives
    # -inf, inf or nan as it should. Plain numpy: scipy's version costs ~0.3 ms of
    # array-API dispatch per call, more than the arithmetic on a batch of logits.
    x = np.asarray(x, dtype=float)
    m = np.max(x, axis=axis, keepdims=True) if x.size else np.zeros((1,) * x.ndim)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return np.reshape(out, reduced_shape(np.shape(x), axis=axis, keepdims=keepdims))


def _lse_second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array, x: Array, *,
                    axis: Shape | None, keepdims: bool) -> Array | None:
    # vjp = g s with s = softmax(x); along t, ds = s (t - sum(s t)) over the axis
    t = ts[0]
    if t is None:
        return None
    s = _softmax_weights(ans, x, axis)
    mean = np.sum(s * t, axis=axis, keepdims=True)
    return expand_reduced(g, x, axis) * s * (t - mean)


logsumexp = Primitive("logsumexp", _lse_value, reduced_shape, vjp=_lse_vjp, jvp=_lse_jvp,
                      jacobian=_lse_jacobian, second_vjp=_lse_second_vjp)


def _concat_shape(*shapes: Shape, axis: int) -> Shape:
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return tuple(out)


def _concat_part(k: int, arr: Array, args: Sequence[Any], axis: int) -> Array:
    start = sum(np.shape(a)[axis] for a in args[:k])
    stop = start + np.shape(args[k])[axis]
    index = (slice(None),) * axis + (slice(start, stop),)
    return arr[index]


def _concat_vjp(k: int, g: Array, ans: Array, *args: Array, axis: int) -> Array:
    return _concat_part(k, g, args, axis)


def _concat_jvp(ts: Sequence[Array | None], ans: Array, *args: Array, axis: int) -> Array:
    parts = [np.zeros(np.shape(a)) if t is None else t for t, a in zip(ts, args)]
    return np.concatenate(parts, axis=axis)


def _concat_jacobian(k: int, ans: Array, *args: Array, axis: int) -> Entries:
    rows = np.ravel(_concat_part(k, positions(np.shape(ans)), args, axis))
    return selection(rows, np.arange(rows.size), (np.size(ans), rows.size))


def _concat_value(*xs: Array, axis: int) -> Array:
    return np.concatenate(xs, axis=axis)


concatenate = Primitive("concatenate", _concat_value,
                        _concat_shape, vjp=_concat_vjp, jvp=_concat_jvp,
                        jacobian=_concat_jacobian,
                         second_vjp=linear_second_vjp)


def _as_matrices(a: Array, b: Array) -> tuple[Array, Array]:
    # promote vectors as numpy's matmul does: a (k,) -> (1, k), b (k,) -> (k, 1)
    a2 = np.reshape(a, (1, -1)) if np.ndim(a) == 1 else np.asarray(a)
    b2 = np.reshape(b, (-1, 1)) if np.ndim(b) == 1 else np.asarray(b)
    return a2, b2


def _matmul_shape(sa: Shape, sb: Shape) -> Shape:
    if not (1 <= len(sa) <= 2 and 1 <= len(sb) <= 2):
        raise ValueError(f"matmul supports 1-D and 2-D operands, got shapes {sa} and {sb}")
    if sa[-1] != sb[0]:
        raise ValueError(f"matmul: inner dimensions differ, shapes {sa} and {sb}")
    return sa[:-1] + sb[1:]


def _matmul_vjp(k: int, g: Array, ans: Array, a: Array, b: Array) -> Array:
    a2, b2 = _as_matrices(a, b)
    g2 = np.reshape(g, (a2.shape[0], b2.shape[1]))
    # out = a b  gives  da = g b^T  and  db = a^T g; a rank-one product (a
    # matrix-vector layer) is an outer product, several times faster than gemm
    if k == 0:
        grad = np.multiply.outer(g2[:, 0], b2[:, 0]) if g2.shape[1] == 1 else g2 @ b2.T
        return grad.reshape(np.shape(a))
    grad = np.multiply.outer(a2[0], g2[0]) if a2.shape[0] == 1 else a2.T @ g2
    return grad.reshape(np.shape(b))


def bilinear_jvp(ts: Sequence[Array | None], ans: Array, a: Array, b: Array) -> Array:
    """Tangent of a @ b (any matmul, batched too): ta @ b + a @ tb."""
    ta, tb = ts
    out = np.zeros(np.shape(ans))
    if ta is not None:
        out = out + np.matmul(ta, b)
    if tb is not None:
        out = out + np.matmul(a, tb)
    return out


def _matmul_jacobian(k: int, ans: Array, a: Array, b: Array) -> Entries:
    a2, b2 = _as_matrices(a, b)
    (m, inner), n = a2.shape, b2.shape[1]
    # row-major: d out[i, j] / d a[i, p] = b[p, j];  d out[i, j] / d b[p, j] = a[i, p],
    # over (i, j, p) (broadcast by arithmetic and assignment: np.broadcast_to costs
    # more than the rest for small operands); the other factor's zeros are no entries
    i, j, p = np.arange(m)[:, None, None], np.arange(n)[None, :, None], np.arange(inner)
    vals = np.empty((m, n, inner))
    vals[...] = b2.T if k == 0 else a2[:, None, :]
    rows = (i * n + j + 0 * p).ravel()
    cols = (i * inner + p + 0 * j if k == 0 else p * n + j + 0 * i).ravel()
    vals = vals.ravel()
    if not vals.all():
        keep = np.flatnonzero(vals)
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
    return Entries(rows, cols, vals, (m * n, (m if k == 0 else n) * inner))


def _matmul_vjp_add(k: int, out: Array, g: Array, ans: Array, a: Array, b: Array) -> bool:
    return matmul_vjp_add(k, out, g, a, b)


def _matmul_vjp_set(k: int, out: Array, g: Array, ans: Array, a: Array, b: Array) -> bool:
    return matmul_vjp_add(k, out, g, a, b, beta=0.0)


def _matmul_second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array, a: Array,
                       b: Array) -> Array | None:
    # bilinear: da = g b^T moves only with b (g tb^T), db = a^T g only with a (ta^T g)
    other = ts[1 - k]
    if other is None:
        return None
    return _matmul_vjp(k, g, ans, a, other) if k == 0 else _matmul_vjp(k, g, ans, other, b)


matmul = Primitive("matmul", np.matmul, _matmul_shape, vjp=_matmul_vjp, jvp=bilinear_jvp,
                   jacobian=_matmul_jacobian, vjp_add=_matmul_vjp_add,
                   vjp_set=_matmul_vjp_set, batch=batching.MATMUL,
                   second_vjp=_matmul_second_vjp)

STRUCTURAL: tuple[Primitive, ...] = (
    reshape, transpose, getitem, sum_, logsumexp, concatenate, matmul)


# A constant scipy.sparse matrix times a variable vector or matrix: linear, so
# its Jacobian is the matrix itself (kron'd with I for matrix right-hand sides).

def _spmm_value(x: Array, *, matrix: Any) -> Array:
    return np.asarray(matrix @ x)


def _spmm_shape(s: Shape, *, matrix: Any) -> Shape:
    if not 1 <= len(s) <= 2 or s[0] != matrix.shape[1]:
        raise ValueError(f"sparse matmul: matrix of shape {matrix.shape} cannot multiply "
                         f"an operand of shape {s}")
    return (matrix.shape[0],) + s[1:]


def _spmm_vjp(k: int, g: Array, ans: Array, x: Array, *, matrix: Any) -> Array:
    return np.asarray(matrix.T @ g)


def _spmm_jvp(ts: Sequence[Array | None], ans: Array, x: Array, *, matrix: Any) -> Array:
    return np.asarray(matrix @ ts[0])


def _spmm_jacobian(k: int, ans: Array, x: Array, *, matrix: Any) -> sp.csr_matrix:
    if np.ndim(x) == 1:
        return sp.csr_matrix(matrix)
    return sp.kron(sp.csr_matrix(matrix), sp.identity(np.shape(x)[1]), format="csr")


sparse_matmul = Primitive("sparse_matmul", _spmm_value, _spmm_shape, vjp=_spmm_vjp,
                          jvp=_spmm_jvp, jacobian=_spmm_jacobian,
                           second_vjp=linear_second_vjp)

STRUCTURAL = STRUCTURAL + (sparse_matmul,)
