"""More of numpy on traced values: the primitives behind ``lagrad.square``,
``lagrad.max``, ``lagrad.prod``, ``lagrad.cumsum``, ``lagrad.einsum``, batched
``matmul`` and the comparison masks.

Each primitive is defined here once, with the same :class:`Primitive` class as
:mod:`lagrad.ir.primitives` (elementwise ones give ``partials``, structural
ones ``vjp``, ``jvp`` and ``jacobian``); the user-facing functions that check
arguments are in :mod:`lagrad.ir.ops`.

Conventions, where the derivative is not unique:

* ``max`` and ``min`` reductions split the derivative equally among the
  entries that tie for the extremum, as JAX and autograd do (and as the
  elementwise ``maximum`` / ``minimum`` split ties in halves).
* ``prod``'s derivative is the product of the other entries, computed with
  exclusive cumulative products: exact where entries are zero (no ``ans / x``).
* Comparisons (``greater``, ``equal``, ...) give 0/1 masks with derivative
  zero, as JAX's boolean results; ``select`` (``where`` with a traced
  condition) passes derivatives to the chosen operand only, and none to the
  condition. ``sign`` has derivative zero, also at 0.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from lagrad.ir.cumulative import cumprod_p
from lagrad.ir.primitives import (
    Entries,
    Primitive,
    bilinear_jvp,
    elementwise_primitive,
    expand_reduced,
    linear_second_vjp,
    positions,
    reduced_shape,
    reduction_rows,
    selection,
    unbroadcast,
)
from lagrad.ir.sorting import sort_p

__all__ = ["ELEMENTWISE", "MASKS", "STRUCTURAL", "parse_einsum", "matmul_shape"]

Array = NDArray[np.float64]
Shape = tuple[int, ...]


# ----------------------------------------------------- elementwise rules

def _square_partials(k: int, ans: Array, x: Array) -> Array:
    return 2.0 * np.asarray(x, dtype=float)


def _log1p_partials(k: int, ans: Array, x: Array) -> Array:
    return 1.0 / (1.0 + np.asarray(x, dtype=float))


def _expm1_partials(k: int, ans: Array, x: Array) -> Array:
    return ans + 1.0


def _arctan_partials(k: int, ans: Array, x: Array) -> Array:
    return 1.0 / (1.0 + np.square(x))


def _sinh_partials(k: int, ans: Array, x: Array) -> Array:
    return np.cosh(x)


def _cosh_partials(k: int, ans: Array, x: Array) -> Array:
    return np.sinh(x)


def _logaddexp_partials(k: int, ans: Array, x: Array, y: Array) -> Array:
    # d log(e^x + e^y) / dx = e^x / (e^x + e^y) = exp(x - ans)
    return np.exp((x if k == 0 else y) - ans)


def _arctan2_partials(k: int, ans: Array, y: Array, x: Array) -> Array:
    # d atan2(y, x) = (x dy - y dx) / (x^2 + y^2)
    return (x if k == 0 else -np.asarray(y, dtype=float)) / (np.square(x) + np.square(y))


def _hypot_partials(k: int, ans: Array, x: Array, y: Array) -> Array:
    return (x if k == 0 else y) / ans


def _zero_partials(k: int, ans: Array, *args: Array) -> Array:
    return np.zeros_like(ans)


def _sign_value(x: Array) -> Array:
    return np.sign(x).astype(float)


# Second partials d^2 f / d arg_k d arg_m (see lagrad.ir.primitives), total
# derivatives where a rule is written with ``ans``.

def _zero_second(k: int, m: int, ans: Array, *args: Array) -> Array:
    return np.zeros_like(ans)


def _square_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return np.full_like(ans, 2.0)


def _log1p_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return -1.0 / np.square(1.0 + np.asarray(x, dtype=float))


def _expm1_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return ans + 1.0


def _arctan_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return -2.0 * np.asarray(x) / np.square(1.0 + np.square(x))


def _sinh_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return ans


def _cosh_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return ans


def _logaddexp_second(k: int, m: int, ans: Array, x: Array, y: Array) -> Array:
    # with p = exp(x - ans): f_x = p, f_y = 1 - p, and dp = p (1 - p) (dx - dy)
    p = np.exp(x - ans)
    return p * (1.0 - p) * (1.0 if k == m else -1.0)


def _arctan2_second(k: int, m: int, ans: Array, y: Array, x: Array) -> Array:
    # f_yy = -2xy / r^4 = -f_xx, f_xy = (y^2 - x^2) / r^4, r^2 = x^2 + y^2
    r2 = np.square(x) + np.square(y)
    if k != m:
        return (np.square(y) - np.square(x)) / np.square(r2)
    return (-2.0 if k == 0 else 2.0) * x * y / np.square(r2)


def _hypot_second(k: int, m: int, ans: Array, x: Array, y: Array) -> Array:
    # f_xx = y^2 / h^3, f_yy = x^2 / h^3, f_xy = -xy / h^3
    cube = ans ** 3
    if k != m:
        return -x * y / cube
    return np.square(y if k == 0 else x) / cube


square = elementwise_primitive("square", np.square, _square_partials, second=_square_second)
log1p = elementwise_primitive("log1p", np.log1p, _log1p_partials, second=_log1p_second)
expm1 = elementwise_primitive("expm1", np.expm1, _expm1_partials, second=_expm1_second)
arctan = elementwise_primitive("arctan", np.arctan, _arctan_partials, second=_arctan_second)
sinh = elementwise_primitive("sinh", np.sinh, _sinh_partials, second=_sinh_second)
cosh = elementwise_primitive("cosh", np.cosh, _cosh_partials, second=_cosh_second)
logaddexp = elementwise_primitive("logaddexp", np.logaddexp, _logaddexp_partials,
                                  second=_logaddexp_second)
arctan2 = elementwise_primitive("arctan2", np.arctan2, _arctan2_partials, second=_arctan2_second,
                                doc="the angle of (x, y): arctan(y / x) in the right quadrant")
hypot = elementwise_primitive("hypot", np.hypot, _hypot_partials, second=_hypot_second,
                              doc="sqrt(x^2 + y^2) without overflow")
# piecewise constant: derivative zero everywhere, also at 0 (as JAX)
sign = elementwise_primitive("sign", _sign_value, _zero_partials, constant=(0.0,))


# Comparisons: 0/1 masks of the current values, re-evaluated at every solve;
# piecewise constant, so their derivative is zero (JAX's boolean results).

def _greater(x: Array, y: Array) -> Array:
    return np.greater(x, y).astype(float)


def _greater_equal(x: Array, y: Array) -> Array:
    return np.greater_equal(x, y).astype(float)


def _less(x: Array, y: Array) -> Array:
    return np.less(x, y).astype(float)


def _less_equal(x: Array, y: Array) -> Array:
    return np.less_equal(x, y).astype(float)


def _equal(x: Array, y: Array) -> Array:
    return np.equal(x, y).astype(float)


def _not_equal(x: Array, y: Array) -> Array:
    return np.not_equal(x, y).astype(float)


def _mask(name: str, value: Any) -> Primitive:
    return elementwise_primitive(name, value, _zero_partials, constant=(0.0, 0.0),
                                 doc="a 0/1 mask of the current values, derivative zero")


greater = _mask("greater", _greater)
greater_equal = _mask("greater_equal", _greater_equal)
less = _mask("less", _less)
less_equal = _mask("less_equal", _less_equal)
equal = _mask("equal", _equal)
not_equal = _mask("not_equal", _not_equal)


def _select_value(c: Array, x: Array, y: Array) -> Array:
    return np.where(np.asarray(c) != 0, x, y)


def _select_partials(k: int, ans: Array, c: Array, x: Array, y: Array) -> Array:
    if k == 0:  # the condition is piecewise constant
        return np.zeros_like(ans)
    chosen = np.asarray(c) != 0 if k == 1 else np.asarray(c) == 0
    return np.broadcast_to(chosen, np.shape(ans)).astype(float)


# where(c, x, y) with a traced condition c (nonzero is true, as numpy reads a
# float condition): derivative to the chosen operand, none to the condition
select = elementwise_primitive("select", _select_value, _select_partials, second=_zero_second)

MASKS: tuple[Primitive, ...] = (greater, greater_equal, less, less_equal, equal, not_equal)
ELEMENTWISE: tuple[Primitive, ...] = (
    square, log1p, expm1, arctan, sinh, cosh, logaddexp, arctan2, hypot, sign, select) + MASKS


# ------------------------------------------ reductions with weights
# max, min and prod reduce x over ``axis`` with a derivative d ans / d x = W
# (W of x's shape): the VJP is g W (g broadcast back), the JVP sum(t W), and
# the local Jacobian W laid out on the reduction's rows.

def _weighted_vjp(weights: Any, k: int, g: Array, ans: Array, x: Array, *,
                  axis: Shape | None, keepdims: bool) -> Array:
    return expand_reduced(g, x, axis) * weights(ans, x, axis)


def _weighted_jvp(weights: Any, ts: Sequence[Array | None], ans: Array, x: Array, *,
                  axis: Shape | None, keepdims: bool) -> Array:
    return np.sum(ts[0] * weights(ans, x, axis), axis=axis, keepdims=keepdims)


def _weighted_jacobian(weights: Any, k: int, ans: Array, x: Array, *, axis: Shape | None,
                       keepdims: bool) -> Entries:
    rows = reduction_rows(x, axis)
    vals = np.broadcast_to(weights(ans, x, axis), np.shape(x)).ravel()
    return selection(rows, np.arange(rows.size), (np.size(ans), rows.size), vals)


def _tie_weights(ans: Array, x: Array, axis: Shape | None) -> Array:
    # ties share the derivative equally (JAX's and autograd's convention)
    hit = (np.asarray(x) == expand_reduced(ans, x, axis)).astype(float)
    return hit / np.sum(hit, axis=axis, keepdims=True)


def _slices(x: Array, axis: Shape | None) -> tuple[Array, Any]:
    """x with the reduced axes moved last and flattened into one, and the map back."""
    x = np.asarray(x, dtype=float)
    axes = tuple(range(x.ndim)) if axis is None else axis
    perm = [i for i in range(x.ndim) if i not in axes] + list(axes)
    moved = np.transpose(x, perm)

    def restore(flat: Array) -> Array:
        return np.transpose(flat.reshape(moved.shape), np.argsort(perm))
    return moved.reshape(moved.shape[:x.ndim - len(axes)] + (-1,)), restore


def _exclusive(flat: Array, op: Any, unit: float) -> Array:
    """op over the other entries of each row (last axis): the exclusive cumulative
    op from the left times (or plus) the one from the right; no inverse op is used,
    so it is exact where entries are 0 (products) and does not cancel (sums)."""
    if flat.shape[-1] == 0:
        return np.array(flat)
    pad = np.full(flat.shape[:-1] + (1,), unit)
    cumulative = np.cumprod if op is np.multiply else np.cumsum
    left = cumulative(np.concatenate([pad, flat[..., :-1]], axis=-1), axis=-1)
    right = cumulative(np.concatenate([pad, flat[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    return op(left, right)


def _prod_weights(ans: Array, x: Array, axis: Shape | None) -> Array:
    # the product of the other entries of each slice, exact where entries are 0
    flat, restore = _slices(x, axis)
    return restore(_exclusive(flat, np.multiply, 1.0))


def _prod_second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array, x: Array, *,
                     axis: Shape | None, keepdims: bool) -> Array | None:
    # The VJP is g W with W_i = prod_{j != i} x_j; along t it moves by g dW with
    # dW_i = sum_{m != i} t_m prod_{j not in {i, m}} x_j. With x' = x where x != 0
    # and 1 where x == 0, W'_i = prod_{j != i} x'_j, and c_i the number of zeros
    # among the other entries j != i:
    #   c_i = 0:  dW_i = W'_i sum_{m != i} t_m / x_m   (every x_m there is nonzero)
    #   c_i = 1:  dW_i = W'_i t_q                      (only m = q, the zero, remains)
    #   c_i > 1:  dW_i = 0                             (every term keeps a zero)
    # All sums are exclusive (left and right), none subtracts a term: exact at zeros.
    t = ts[0]
    if t is None:
        return None
    flat, restore = _slices(x, axis)
    tflat = _slices(np.broadcast_to(t, np.shape(x)), axis)[0]
    zero = flat == 0
    safe = np.where(zero, 1.0, flat)
    others = _exclusive(safe, np.multiply, 1.0)
    zeros_other = _exclusive(zero.astype(float), np.add, 0.0)
    ratio_sum = _exclusive(np.where(zero, 0.0, tflat / safe), np.add, 0.0)
    zero_tangent = _exclusive(np.where(zero, tflat, 0.0), np.add, 0.0)
    dw = others * np.where(zeros_other == 0, ratio_sum,
                           np.where(zeros_other == 1, zero_tangent, 0.0))
    return expand_reduced(g, x, axis) * restore(dw)


def _extremum_shape(s: Shape, *, axis: Shape | None, keepdims: bool) -> Shape:
    axes = range(len(s)) if axis is None else axis
    if any(s[a] == 0 for a in axes):
        raise ValueError(f"the array of shape {s} has no entries along the reduced axes, so "
                         "it has no maximum or minimum (numpy raises too)")
    return reduced_shape(s, axis=axis, keepdims=keepdims)


def _max_value(x: Array, *, axis: Shape | None, keepdims: bool) -> Array:
    return np.max(x, axis=axis, keepdims=keepdims)


def _min_value(x: Array, *, axis: Shape | None, keepdims: bool) -> Array:
    return np.min(x, axis=axis, keepdims=keepdims)


def _prod_value(x: Array, *, axis: Shape | None, keepdims: bool) -> Array:
    return np.prod(x, axis=axis, keepdims=keepdims)


def _weighted_reduction(name: str, value: Any, weights: Any, shape: Any, doc: str,
                        second_vjp: Any = None) -> Primitive:
    return Primitive(name, value, shape, vjp=partial(_weighted_vjp, weights),
                     jvp=partial(_weighted_jvp, weights),
                     jacobian=partial(_weighted_jacobian, weights), doc=doc,
                     second_vjp=second_vjp)


# max and min are piecewise linear (their weights are locally constant): no
# second-order term; prod's is the zero-safe rule above.
amax = _weighted_reduction("max", _max_value, _tie_weights, _extremum_shape,
                           "largest entry; ties share the derivative equally", linear_second_vjp)
amin = _weighted_reduction("min", _min_value, _tie_weights, _extremum_shape,
                           "smallest entry; ties share the derivative equally", linear_second_vjp)
prod = _weighted_reduction("prod", _prod_value, _prod_weights, reduced_shape,
                           "product of the entries", _prod_second_vjp)


# ------------------------------------------------------------- cumsum

def _cumsum_value(x: Array, *, axis: int) -> Array:
    return np.cumsum(x, axis=axis)


def _cumsum_shape(s: Shape, *, axis: int) -> Shape:
    if not 0 <= axis < len(s):
        raise ValueError(f"axis {axis} is out of bounds for an array of dimension {len(s)}")
    return s


def _cumsum_vjp(k: int, g: Array, ans: Array, x: Array, *, axis: int) -> Array:
    # out_i = sum_{j <= i} x_j, so x_j's cotangent is sum_{i >= j} g_i
    return np.flip(np.cumsum(np.flip(g, axis), axis=axis), axis)


def _cumsum_jvp(ts: Sequence[Array | None], ans: Array, x: Array, *, axis: int) -> Array:
    return np.cumsum(ts[0], axis=axis)


def _cumsum_jacobian(k: int, ans: Array, x: Array, *, axis: int) -> sp.csr_matrix:
    s = np.shape(x)
    before, after = math.prod(s[:axis]), math.prod(s[axis + 1:])
    lower = sp.csr_matrix(np.tril(np.ones((s[axis], s[axis]))))
    inner = sp.kron(lower, sp.identity(after), format="csr")
    return sp.kron(sp.identity(before), inner, format="csr")


cumsum = Primitive("cumsum", _cumsum_value, _cumsum_shape, vjp=_cumsum_vjp, jvp=_cumsum_jvp,
                   jacobian=_cumsum_jacobian, doc="cumulative sum along one axis",
                   second_vjp=linear_second_vjp)


# --------------------------------------------------------------- einsum

def parse_einsum(subscripts: str, shapes: Sequence[Shape]) -> str:
    """Check ``subscripts`` against the operands' shapes and return them in
    explicit form (``"ij,jk->ik"``); raises ValueError naming the problem."""
    text = subscripts.replace(" ", "")
    ins_text, arrow, out = text.partition("->")
    ins = ins_text.split(",")
    if "." in text:
        raise ValueError("ellipsis ('...') subscripts are not supported; name every axis")
    if len(ins) != len(shapes):
        raise ValueError(f"{len(ins)} operand subscripts for {len(shapes)} operands")
    sizes: dict[str, int] = {}
    for term, shape in zip(ins, shapes):
        if not all(c in string.ascii_letters for c in term):
            raise ValueError(f"subscript {term!r} has a character that is not a letter")
        if len(set(term)) != len(term):
            raise ValueError(f"subscript {term!r} repeats an axis label (a diagonal or trace); "
                             "not supported; use np.diagonal or np.trace")
        if len(term) != len(shape):
            raise ValueError(f"subscript {term!r} names {len(term)} axes, the operand has "
                             f"shape {shape}")
        for c, n in zip(term, shape):
            if sizes.setdefault(c, n) != n:
                raise ValueError(f"axis {c!r} has sizes {sizes[c]} and {n} (no broadcasting "
                                 "of size-1 axes)")
    if not arrow:  # implicit mode: the labels that appear once, in alphabetical order
        counts = "".join(ins)
        out = "".join(sorted(c for c in sizes if counts.count(c) == 1))
    if len(set(out)) != len(out) or any(c not in sizes for c in out):
        raise ValueError(f"output subscript {out!r} repeats a label or names one that no "
                         "operand has")
    return ",".join(ins) + "->" + out


def _split(subscripts: str) -> tuple[list[str], str]:
    ins, out = subscripts.split("->")
    return ins.split(","), out


def _einsum_value(*xs: Array, subscripts: str) -> Array:
    return np.asarray(np.einsum(subscripts, *xs), dtype=float)


def _einsum_shape(*shapes: Shape, subscripts: str) -> Shape:
    ins, out = _split(parse_einsum(subscripts, shapes))
    sizes = {c: n for term, s in zip(ins, shapes) for c, n in zip(term, s)}
    return tuple(sizes[c] for c in out)


def _einsum_vjp(k: int, g: Array, ans: Array, *xs: Array, subscripts: str) -> Array:
    # out = einsum(x_1, ..., x_n): x_k's cotangent contracts g with the others
    # onto x_k's labels; a label of x_k alone (summed only over x_k) is constant
    # along that axis, so the contraction is broadcast over it
    ins, out = _split(subscripts)
    others = [t for j, t in enumerate(ins) if j != k]
    kept = "".join(c for c in ins[k] if c in out or any(c in t for t in others))
    spec = ",".join([out] + others) + "->" + kept
    ct = np.einsum(spec, g, *(x for j, x in enumerate(xs) if j != k))
    shape = np.shape(xs[k])
    ct = np.reshape(ct, [n if c in kept else 1 for c, n in zip(ins[k], shape)])
    return np.array(np.broadcast_to(ct, shape), dtype=float)


def _einsum_jvp(ts: Sequence[Array | None], ans: Array, *xs: Array, subscripts: str) -> Array:
    out = np.zeros(np.shape(ans))
    for k, t in enumerate(ts):
        if t is not None:
            out = out + np.einsum(subscripts, *xs[:k], t, *xs[k + 1:])
    return out


def _on_labels(a: Array, term: str, labels: str) -> Array:
    """``a`` (axes labelled by ``term``) transposed to the order of ``labels``,
    with size-1 axes for the labels it lacks: broadcastable over all labels."""
    order = sorted(range(len(term)), key=lambda i: labels.index(term[i]))
    moved = np.transpose(a, order)
    sizes = dict(zip(term, np.shape(a)))
    return np.reshape(moved, [sizes.get(c, 1) for c in labels])


def _einsum_jacobian(k: int, ans: Array, *xs: Array, subscripts: str) -> sp.csr_matrix:
    # over the product of all labels, d out[out labels] / d x_k[x_k labels] is
    # the product of the other operands there; repeated (row, col) pairs add up
    ins, out = _split(subscripts)
    labels = "".join(dict.fromkeys("".join(ins)))
    sizes = {c: n for term, x in zip(ins, xs) for c, n in zip(term, np.shape(x))}
    full = tuple(sizes[c] for c in labels)
    rows = np.broadcast_to(_on_labels(positions(np.shape(ans)), out, labels), full)
    cols = np.broadcast_to(_on_labels(positions(np.shape(xs[k])), ins[k], labels), full)
    vals = np.ones(full)
    for j, (term, x) in enumerate(zip(ins, xs)):
        if j != k:
            vals = vals * _on_labels(np.asarray(x, dtype=float), term, labels)
    return sp.csr_matrix((vals.ravel(), (rows.ravel(), cols.ravel())),
                         shape=(np.size(ans), np.size(xs[k])))


def _einsum_second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array, *xs: Array,
                       subscripts: str) -> Array | None:
    # multilinear: x_k's cotangent moves with every other operand, linearly, so
    # its derivative along t_m is the same contraction with x_m replaced by t_m
    out: Array | None = None
    for m, t in enumerate(ts):
        if m != k and t is not None:
            moved = list(xs)
            moved[m] = t
            term = _einsum_vjp(k, g, ans, *moved, subscripts=subscripts)
            out = term if out is None else out + term
    return out


einsum = Primitive("einsum", _einsum_value, _einsum_shape, vjp=_einsum_vjp, jvp=_einsum_jvp,
                   jacobian=_einsum_jacobian, doc="Einstein summation, explicit subscripts",
                   second_vjp=_einsum_second_vjp)


# ----------------------------------------------------- batched matmul
# numpy's matmul on stacks of matrices: a (..., n, k) @ b (..., k, m), the
# leading axes broadcast; a 1-D a is (1, k) and a 1-D b is (k, 1), the added
# axis dropped from the result. The 1-D and 2-D cases are primitives.matmul.

def _as_stacks(a: Array, b: Array) -> tuple[Array, Array]:
    a2 = np.reshape(a, (1, -1)) if np.ndim(a) == 1 else np.asarray(a, dtype=float)
    b2 = np.reshape(b, (-1, 1)) if np.ndim(b) == 1 else np.asarray(b, dtype=float)
    return a2, b2


def matmul_shape(sa: Shape, sb: Shape) -> Shape:
    """The shape of ``a @ b`` under numpy's rules; ValueError if they do not fit."""
    if not sa or not sb:
        raise ValueError("operands must not be scalars; use * instead")
    a2 = (1,) + sa if len(sa) == 1 else sa
    b2 = sb + (1,) if len(sb) == 1 else sb
    if a2[-1] != b2[-2]:
        raise ValueError(f"inner dimensions differ, shapes {sa} and {sb}")
    try:
        batch = tuple(np.broadcast_shapes(a2[:-2], b2[:-2]))
    except ValueError as err:
        raise ValueError(f"the stacks of shapes {sa} and {sb} do not broadcast") from err
    return batch + sa[-2:-1] + sb[-1:] if len(sb) > 1 else batch + sa[-2:-1]


def _bmm_vjp(k: int, g: Array, ans: Array, a: Array, b: Array) -> Array:
    a2, b2 = _as_stacks(a, b)
    batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    g2 = np.reshape(g, batch + (a2.shape[-2], b2.shape[-1]))
    # out = a b per matrix: da = g b^T, db = a^T g, summed over broadcast stacks
    if k == 0:
        return unbroadcast(g2 @ np.swapaxes(b2, -1, -2), a2.shape).reshape(np.shape(a))
    return unbroadcast(np.swapaxes(a2, -1, -2) @ g2, b2.shape).reshape(np.shape(b))


def _bmm_jacobian(k: int, ans: Array, a: Array, b: Array) -> sp.csr_matrix:
    # over (..., i, l, j): d out[..., i, j] / d a[..., i, l] = b[..., l, j] and
    # d out[..., i, j] / d b[..., l, j] = a[..., i, l]
    a2, b2 = _as_stacks(a, b)
    batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    full = batch + (a2.shape[-2], a2.shape[-1], b2.shape[-1])
    rows = positions(batch + (a2.shape[-2], b2.shape[-1]))[..., :, None, :]
    if k == 0:
        cols, vals = positions(a2.shape)[..., :, :, None], b2[..., None, :, :]
    else:
        cols, vals = positions(b2.shape)[..., None, :, :], a2[..., :, :, None]
    return sp.csr_matrix((np.broadcast_to(vals, full).ravel(),
                          (np.broadcast_to(rows, full).ravel(),
                           np.broadcast_to(cols, full).ravel())),
                         shape=(np.size(ans), np.size(a if k == 0 else b)))



def _bmm_second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array, a: Array,
                    b: Array) -> Array | None:
    # bilinear, as primitives.matmul: da = g b^T moves with b, db = a^T g with a
    other = ts[1 - k]
    if other is None:
        return None
    return _bmm_vjp(k, g, ans, a, other) if k == 0 else _bmm_vjp(k, g, ans, other, b)

batched_matmul = Primitive("batched_matmul", np.matmul, matmul_shape, vjp=_bmm_vjp,
                           jvp=bilinear_jvp, jacobian=_bmm_jacobian,
                           doc="matmul of stacks of matrices, numpy's broadcasting",
                           second_vjp=_bmm_second_vjp)

STRUCTURAL: tuple[Primitive, ...] = (amax, amin, prod, cumsum, einsum, batched_matmul, sort_p,
                                     cumprod_p)
