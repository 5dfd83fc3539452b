"""Batched tracing for :func:`lagrad.vmap`: one program for B instances.

A batched value is a traced variable of shape (B, *s) that the traced
function sees as one instance of shape s (JAX's ``BatchTracer``). Every
primitive applied to it is rewritten, while tracing, into the same primitive
on the whole batch: elementwise primitives align their batched arguments as
(B, 1, ..., 1, *s), so that numpy broadcasts the instance axes and never the
batch axis; structural ones (reductions, reshape, transpose, indexing,
concatenate, cumsum, cumprod, sort, matmul) shift their axes past the batch
axis or are rewritten (``W @ x`` as ``x_b @ W^T``; stacks of matrices with
the batch first; einsum with a new label for the batch axis); eigvalsh,
eigh, svdvals, svd, pinv and expm take the batch as one more stack axis, and the dense
linalg of one matrix (solve, det, ...) records one equation per instance.
So does every other primitive without a rule of its own (custom_vjp and
custom_jvp functions, ``coo_matvec``, a nested ``grad``, an index or a
product no rule covers), as JAX's sequential fallback: exact, at B equations
where a rule would make one.

The recorded program is an ordinary one over (B, *s) variables: each
instance's equations touch only its own row, so the local Jacobians are block
diagonal, and a ``fixed_point`` under vmap is one cyclic block over a (B, *s)
unknown whose Newton matrix is block diagonal (no coupling between instances).
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from lagrad.ir import linalg as L
from lagrad.ir import numpy_prims as N
from lagrad.ir import ops
from lagrad.ir import primitives as P
from lagrad.ir.cumulative import cumprod_p
from lagrad.ir.eigen import eigvalsh_p, eigvecsh_p, pinv_p, svdvals_p
from lagrad.ir.expm import expm_p
from lagrad.ir.program import Variable
from lagrad.ir.sorting import sort_p
from lagrad.ir.svd import svd_u_p, svd_vh_p

__all__ = ["BatchedVariable", "batch_of", "materialize"]

Shape = tuple[int, ...]


class BatchedVariable(Variable):
    """One instance's view (shape s) of a batched variable ``inner`` (B, *s)."""

    __slots__ = ("inner",)
    priority = 1

    def __init__(self, inner: Variable) -> None:
        super().__init__(inner.program, inner.index, inner.shape[1:], inner.kind, inner.name)
        self.inner = inner

    @property
    def batch(self) -> int:
        return self.inner.shape[0]

    def __repr__(self) -> str:
        return (f"BatchedVariable({self.name!r}, shape={self.shape}, "
                f"batch={self.batch})")

    def record(self, prim: P.Primitive, args: Sequence[Any], params: Mapping[str, Any]) -> Any:
        return _apply(prim, args, params, self.batch)


def batch_of(values: Sequence[Any]) -> int | None:
    """The batch size of the first batched value among ``values`` (None: none)."""
    for v in values:
        if isinstance(v, BatchedVariable):
            return v.batch
    return None


def _shape(x: Any) -> Shape:
    return x.shape if isinstance(x, P.Tracer) else np.shape(x)


def materialize(x: Any, batch: int) -> Any:
    """``x`` as a (B, *s) batched value: its inner variable, or a traced
    variable or constant repeated over the batch."""
    if isinstance(x, BatchedVariable):
        return x.inner
    if isinstance(x, Variable):
        return P.add(np.zeros((batch,) + x.shape), x)
    arr = np.asarray(x, dtype=float)
    return np.broadcast_to(arr, (batch,) + arr.shape)


def _align(x: Any, rank: int) -> Any:
    """A batched value's inner variable as (B, 1, ..., 1, *s) with ``rank`` instance axes."""
    if not isinstance(x, BatchedVariable):
        return x
    missing = rank - len(x.shape)
    if missing <= 0:
        return x.inner
    return P.reshape(x.inner, shape=(x.batch,) + (1,) * missing + x.shape)


def _apply(prim: P.Primitive, args: Sequence[Any], params: Mapping[str, Any],
           batch: int) -> BatchedVariable:
    if prim.elementwise:
        ranks = [len(_shape(a)) for a in args]
        if "condition" in params:  # where's constant mask broadcasts with the operands
            ranks.append(np.ndim(params["condition"]))
        rank = max(ranks)
        return BatchedVariable(prim(*(_align(a, rank) for a in args), **params))
    rule = _RULES.get(prim, _one_by_one)
    return BatchedVariable(rule(prim, args, params, batch))


def _shifted(axes: Any, ndim: int) -> tuple[int, ...]:
    """Instance axes (None: all of ``ndim``) as axes of the batched array."""
    if axes is None:
        return tuple(range(1, ndim + 1))
    axes = (axes,) if isinstance(axes, (int, np.integer)) else axes
    return tuple(int(a) % max(ndim, 1) + 1 for a in axes)


def _reduction(prim: P.Primitive, args: Sequence[Any], params: Mapping[str, Any],
               batch: int) -> Variable:
    (x,) = args
    return prim(x.inner, **{**params, "axis": _shifted(params["axis"], len(x.shape))})


def _stacked(prim: P.Primitive, args: Sequence[Any], params: Mapping[str, Any],
             batch: int) -> Variable:
    """eigh, svdvals, pinv, expm: they take stacks of matrices, the batch is one more axis."""
    (x,) = args
    return prim(x.inner, **params)


def _one_by_one(prim: P.Primitive, args: Sequence[Any], params: Mapping[str, Any],
                batch: int) -> Variable:
    """The dense linear algebra of one matrix (solve, inv, det, slogdet,
    cholesky, spsolve, qr), and any primitive without a rule: one equation
    per instance, stacked. Exact, and B equations where a stacked primitive
    would make one."""
    parts = []
    for b in range(batch):
        one = [P.getitem(a.inner, index=(b,)) if isinstance(a, BatchedVariable) else a
               for a in args]
        out = prim(*one, **params)
        parts.append(P.reshape(out, shape=(1,) + _shape(out)))
    return P.concatenate(*parts, axis=0)


def _einsum(prim: P.Primitive, args: Sequence[Any], params: Mapping[str, Any],
            batch: int) -> Variable:
    """A new label for the batch axis, leading every batched operand and the output."""
    spec = params["subscripts"]
    label = next((c for c in string.ascii_letters if c not in spec), None)
    if label is None:
        return _one_by_one(prim, args, params, batch)  # no label left for the batch
    ins, out = spec.split("->")
    terms = [label + t if isinstance(a, BatchedVariable) else t
             for t, a in zip(ins.split(","), args)]
    operands = [a.inner if isinstance(a, BatchedVariable) else a for a in args]
    return prim(*operands, subscripts=",".join(terms) + "->" + label + out)


def _along_axis(prim: P.Primitive, args: Sequence[Any], params: Mapping[str, Any],
                batch: int) -> Variable:
    """cumsum, cumprod and sort: one instance axis, shifted past the batch axis."""
    (x,) = args
    return prim(x.inner, **{**params, "axis": _shifted(params["axis"], len(x.shape))[0]})


def _reshape(prim: P.Primitive, args: Sequence[Any], params: Mapping[str, Any],
             batch: int) -> Variable:
    (x,) = args
    return P.reshape(x.inner, shape=(batch,) + tuple(params["shape"]))


def _transpose(prim: P.Primitive, args: Sequence[Any], params: Mapping[str, Any],
               batch: int) -> Variable:
    (x,) = args
    return P.transpose(x.inner, axes=(0,) + tuple(a + 1 for a in params["axes"]))


def _getitem(prim: P.Primitive, args: Sequence[Any], params: Mapping[str, Any],
             batch: int) -> Variable:
    # numpy keeps a leading full slice in front unless advanced indices
    # (arrays, and integers next to them) are split by a slice: then their
    # axes move to the front and the batch axis would not be first
    (x,) = args
    index = params["index"]
    parts = index if isinstance(index, tuple) else (index,)
    if any(isinstance(p, np.ndarray) for p in parts):
        advanced = [k for k, p in enumerate(parts)
                    if isinstance(p, (np.ndarray, int, np.integer))]
        if advanced != list(range(advanced[0], advanced[-1] + 1)):
            return _one_by_one(prim, args, params, batch)  # numpy would move their axes first
    return P.getitem(x.inner, index=(slice(None),) + tuple(parts))


def _concatenate(prim: P.Primitive, args: Sequence[Any], params: Mapping[str, Any],
                 batch: int) -> Variable:
    return P.concatenate(*(materialize(a, batch) for a in args), axis=params["axis"] + 1)


def _matmul(prim: P.Primitive, args: Sequence[Any], params: Mapping[str, Any],
            batch: int) -> Any:
    a, b = args
    sa, sb = _shape(a), _shape(b)
    a_batched, b_batched = isinstance(a, BatchedVariable), isinstance(b, BatchedVariable)
    if a_batched and not b_batched and len(sb) <= 2:
        return ops.matmul(a.inner, b)  # (B, ..., k) @ (k, ...): the batch leads already
    if b_batched and not a_batched and len(sa) <= 2:
        if len(sb) == 1:  # A x_b = x_b A^T
            return ops.matmul(b.inner, ops.transpose(a) if len(sa) == 2 else a)
        return ops.matmul(a, b.inner)  # (m, k) @ (B, k, n): a stack of products
    if a_batched and b_batched:
        if len(sa) == 1 and len(sb) == 1:
            return ops.sum(P.mul(a.inner, b.inner), axis=1)
        if len(sa) == 2 and len(sb) == 1:
            col = P.reshape(b.inner, shape=(batch, sb[0], 1))
            return P.reshape(ops.matmul(a.inner, col), shape=(batch, sa[0]))
        if len(sa) == 1 and len(sb) == 2:
            row = P.reshape(a.inner, shape=(batch, 1, sa[0]))
            return P.reshape(ops.matmul(row, b.inner), shape=(batch, sb[1]))
        if len(sa) == 2 and len(sb) == 2:
            return ops.matmul(a.inner, b.inner)
    return _one_by_one(prim, args, params, batch)  # (shapes no rewrite above covers)


def _batched_matmul(prim: P.Primitive, args: Sequence[Any], params: Mapping[str, Any],
                    batch: int) -> Any:
    """A product of stacks: vectors made matrices (as numpy does), each
    batched operand's stack padded with ones after the batch axis so that
    numpy's broadcast of the stacks (aligned from the right) keeps the batch
    axis first, then the vectors' axes taken out again."""
    a, b = args
    sa, sb = _shape(a), _shape(b)
    ranks = [max(len(s), 2) - 2 for s in (sa, sb)]
    stack = max(ranks)

    def matrix(x: Any, shape: Shape, rank: int, vector: Shape) -> Any:
        mat = shape if len(shape) >= 2 else vector
        if not isinstance(x, BatchedVariable):
            return x if len(shape) >= 2 else P.reshape(x, shape=mat)
        return P.reshape(x.inner, shape=(batch,) + (1,) * (stack - rank) + mat)
    left = matrix(a, sa, ranks[0], (1,) + sa)
    right = matrix(b, sb, ranks[1], sb + (1,))
    out = ops.matmul(left, right)
    shape = _shape(out)
    if len(sa) == 1:  # the row the vector became
        shape = shape[:-2] + shape[-1:]
    if len(sb) == 1:  # the column
        shape = shape[:-1]
    return P.reshape(out, shape=shape) if shape != _shape(out) else out


def _sparse_matmul(prim: P.Primitive, args: Sequence[Any], params: Mapping[str, Any],
                   batch: int) -> Any:
    (x,) = args
    if len(x.shape) != 1:
        return _one_by_one(prim, args, params, batch)
    return ops.transpose(prim(ops.transpose(x.inner), **params))  # (A X^T)^T


Rule = Callable[[P.Primitive, Sequence[Any], Mapping[str, Any], int], Any]

_RULES: dict[P.Primitive, Rule] = {
    P.sum_: _reduction, P.logsumexp: _reduction, N.amax: _reduction, N.amin: _reduction,
    N.prod: _reduction, N.einsum: _einsum,
    N.cumsum: _along_axis, sort_p: _along_axis, cumprod_p: _along_axis,
    eigvalsh_p: _stacked, eigvecsh_p: _stacked, svdvals_p: _stacked, pinv_p: _stacked,
    expm_p: _stacked, svd_u_p: _stacked, svd_vh_p: _stacked,
    **dict.fromkeys((L.solve_p, L.spsolve_p, L.det_p, L.logabsdet_p, L.sign_det_p,
                     L.cholesky_p, L.qr_q_p, L.qr_r_p), _one_by_one),
    P.reshape: _reshape, P.transpose: _transpose, P.getitem: _getitem,
    P.concatenate: _concatenate, P.matmul: _matmul, P.sparse_matmul: _sparse_matmul,
    N.batched_matmul: _batched_matmul,
}
"""The structural primitives' batching rules (elementwise ones need none)."""
