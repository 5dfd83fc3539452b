"""``sort`` on traced values: a primitive whose value is numpy's sort along
one axis and whose derivative is the permutation that sorted the current
values (numpy's stable argsort), found again at every evaluation, so a
traced program stays right when a later input sorts differently.

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

__all__ = ["sort", "sort_p"]

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
    if order is not None:
        raise ProgramError("sort: order= names fields of a structured array; traced values "
                           "have none")
    if axis is None:
        a, axis = P.reshape(a, shape=(math.prod(shape_of(a)),)), 0
    shape = shape_of(a)
    if not shape:
        raise ProgramError("sort: a zero-dimensional array cannot be sorted along an axis; "
                           "give axis=None")
    return sort_p(a, axis=axis_of("sort", axis, len(shape)))
