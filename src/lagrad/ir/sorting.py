"""``sort`` on traced values: a primitive whose value is numpy's sort along
one axis and whose derivative is the permutation that sorted the current
values (numpy's stable argsort), found again at every evaluation, so a
traced program stays right when a later input sorts differently. And the
index functions ``argsort``, ``argmax`` and ``argmin``: on traced values,
numpy's indices of the current values, found again at every evaluation,
held as floats (a program's values are float64) with derivative zero, as
JAX's integer results have none, so ``np.argmax(logits, 1) == labels`` is a
0/1 mask; on numbers, numpy's integer indices.

Sorting is piecewise linear: within a region of one order it is a fixed
permutation (so no second-order term), and where entries tie the
derivative follows the stable order (each output entry takes the
derivative of the input entry placed there), as JAX's ``sort`` does.

>>> import numpy as np, lagrad
>>> lagrad.grad(lambda x: np.sort(x) @ np.array([1.0, 2.0, 3.0]))(np.array([5.0, 1.0, 3.0]))
array([3., 1., 2.])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from lagrad.errors import ProgramError
from lagrad.ir import primitives as P
from lagrad.ir.arrayops import axis_of, shape_of
from lagrad.ir.primitives import Primitive, linear_second_vjp

__all__ = ["sort", "sort_p", "argsort", "argmax", "argmin", "argsort_p", "argmax_p",
           "argmin_p", "searchsorted", "searchsorted_p"]

Array = NDArray[np.float64]
Shape = tuple[int, ...]


def _order(x: Array, axis: int) -> Array:
    return np.argsort(x, axis=axis, kind="stable")


def _value(x: Array, *, axis: int) -> Array:
    return np.sort(x, axis=axis, kind="stable")


def _shape(s: Shape, *, axis: int) -> Shape:
    if not 0 <= axis < len(s):
        raise ValueError(f"axis {axis} is out of bounds for an array of dimension {len(s)}")
    return s


def _vjp(k: int, g: Array, ans: Array, x: Array, *, axis: int) -> Array:
    out = np.zeros(np.shape(x))
    np.put_along_axis(out, _order(x, axis), g, axis=axis)
    return out


def _jvp(ts: Sequence[Array | None], ans: Array, x: Array, *, axis: int) -> Array:
    return np.take_along_axis(np.asarray(ts[0], dtype=float), _order(x, axis), axis=axis)


def _jacobian(k: int, ans: Array, x: Array, *, axis: int) -> sp.csr_matrix:
    size = np.size(x)
    flat = np.arange(size).reshape(np.shape(x))
    cols = np.take_along_axis(flat, _order(x, axis), axis=axis).ravel()
    return sp.csr_matrix((np.ones(size), (np.arange(size), cols)), shape=(size, size))


sort_p = Primitive("sort", _value, _shape, vjp=_vjp, jvp=_jvp, jacobian=_jacobian,
                   doc="sorted along one axis", second_vjp=linear_second_vjp)


def sort(a: Any, axis: Any = -1, kind: Any = None, order: Any = None, *,
         stable: Any = None) -> Any:
    """``a`` sorted along ``axis`` (None: flattened), as :func:`numpy.sort`
    (``kind`` and ``stable`` are accepted and ignored: every kind gives the
    same values, and the derivative always follows the stable order)."""
    a, ax = _sort_axis("sort", a, axis, order)
    return sort_p(a, axis=ax)


def _sort_axis(name: str, a: Any, axis: Any, order: Any) -> tuple[Any, int]:
    """``a`` (flattened for axis None) and the one axis sort or argsort runs along."""
    if order is not None:
        raise ProgramError(f"{name}: order= names fields of a structured array; traced values "
                           "have none")
    if axis is None:
        a, axis = P.reshape(a, shape=(math.prod(shape_of(a)),)), 0
    shape = shape_of(a)
    if not shape:
        raise ProgramError(f"{name}: a zero-dimensional array cannot be sorted along an axis; "
                           "give axis=None")
    return a, axis_of(name, axis, len(shape))


# ------------------------------------------------ indices, derivative zero

def _zero_vjp(k: int, g: Array, ans: Array, *args: Array, **params: Any) -> Array:
    return np.zeros(np.shape(args[k]))


def _zero_jvp(ts: Sequence[Array | None], ans: Array, *args: Array, **params: Any) -> Array:
    return np.zeros(np.shape(ans))


def _zero_jacobian(k: int, ans: Array, *args: Array, **params: Any) -> sp.csr_matrix:
    return sp.csr_matrix((np.size(ans), np.size(args[k])))


def _index_primitive(name: str, value: Any, shape: Any) -> Primitive:
    return Primitive(name, value, shape, vjp=_zero_vjp, jvp=_zero_jvp, jacobian=_zero_jacobian,
                     doc="indices of the current values as floats, derivative zero",
                     second_vjp=linear_second_vjp)


def _argsort_value(x: Array, *, axis: int, kind: Any, stable: Any) -> Array:
    return np.argsort(x, axis=axis, kind=kind, stable=stable).astype(float)


def _reduced(s: Shape, *, axis: int | None, keepdims: bool) -> Shape:
    if axis is None:
        return (1,) * len(s) if keepdims else ()
    return s[:axis] + (1,) * keepdims + s[axis + 1:]


def _arg_value(find: Any) -> Any:
    def value(x: Array, *, axis: int | None, keepdims: bool) -> Array:
        return np.asarray(find(x, axis=axis, keepdims=keepdims), dtype=float)
    return value


def _argsort_shape(s: Shape, *, axis: int, kind: Any, stable: Any) -> Shape:
    return _shape(s, axis=axis)


argsort_p = _index_primitive("argsort", _argsort_value, _argsort_shape)
argmax_p = _index_primitive("argmax", _arg_value(np.argmax), _reduced)
argmin_p = _index_primitive("argmin", _arg_value(np.argmin), _reduced)


def argsort(a: Any, axis: Any = -1, kind: Any = None, order: Any = None, *,
            stable: Any = None) -> Any:
    """The indices that sort ``a`` along ``axis`` (None: flattened), as
    :func:`numpy.argsort`, as floats with derivative zero."""
    if not isinstance(a, P.Tracer):  # numbers: numpy's integer indices
        return np.argsort(a, axis=axis, kind=kind, order=order, stable=stable)
    a, ax = _sort_axis("argsort", a, axis, order)
    return argsort_p(a, axis=ax, kind=kind, stable=stable)


def _arg(name: str, prim: Primitive, a: Any, axis: Any, out: Any, keepdims: Any) -> Any:
    if not isinstance(a, P.Tracer):  # numbers: numpy's integer indices
        return getattr(np, name)(a, axis=axis, out=out, keepdims=keepdims)
    if out is not None:
        raise ProgramError(f"{name}: out= cannot hold a traced value")
    shape = shape_of(a)
    if not math.prod(shape):
        raise ProgramError(f"{name} of an empty array (shape {shape}) is undefined")
    ax = None if axis is None else axis_of(name, axis, len(shape))
    return prim(a, axis=ax, keepdims=keepdims is True)


def argmax(a: Any, axis: Any = None, out: Any = None, *, keepdims: Any = False) -> Any:
    """The index of the largest entry along ``axis`` (None: of the flattened
    array; the first of tied entries), as :func:`numpy.argmax`, as floats with
    derivative zero."""
    return _arg("argmax", argmax_p, a, axis, out, keepdims)


def argmin(a: Any, axis: Any = None, out: Any = None, *, keepdims: Any = False) -> Any:
    """The index of the smallest entry along ``axis``, as :func:`numpy.argmin`,
    as floats with derivative zero."""
    return _arg("argmin", argmin_p, a, axis, out, keepdims)


def _searchsorted_value(a: Array, v: Array, *, side: str) -> Array:
    return np.asarray(np.searchsorted(a, v, side=side), dtype=float)


def _searchsorted_shape(sa: Shape, sv: Shape, *, side: str) -> Shape:
    if len(sa) != 1:
        raise ValueError(f"a must be 1-D, got shape {sa}")
    return sv


searchsorted_p = _index_primitive("searchsorted", _searchsorted_value, _searchsorted_shape)


def searchsorted(a: Any, v: Any, side: str = "left", sorter: Any = None) -> Any:
    """The indices where v's entries would be inserted into the sorted 1-D
    ``a``, as :func:`numpy.searchsorted`: on traced values, floats with
    derivative zero, found again at every solve."""
    if not isinstance(a, P.Tracer) and not isinstance(v, P.Tracer):
        return np.searchsorted(a, v, side=side, sorter=sorter)  # type: ignore[call-overload]
    if sorter is not None:
        raise ProgramError("searchsorted: sorter= is not supported on traced values; sort a")
    if side not in ("left", "right"):
        raise ProgramError(f"searchsorted: side must be 'left' or 'right', got {side!r}")
    if len(shape_of(a)) != 1:
        raise ProgramError(f"searchsorted: a must be 1-D, got shape {shape_of(a)}")
    return searchsorted_p(a, v, side=side)
