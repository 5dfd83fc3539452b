"""numpy's stacking and array-making helpers on traced values: hstack,
vstack, dstack, column_stack, atleast_1d / 2d / 3d, append, copy, and
zeros_like / ones_like / full_like / empty_like (which give constants: the
shape of a traced value is known while tracing, its values are not needed).

All are reshapes and concatenations (:mod:`lagrad.ir.ops`), as numpy
writes them.

>>> import numpy as np, lagrad
>>> lagrad.grad(lambda x: np.sum(np.vstack([x, 2.0 * x]) ** 2))(np.ones(2))
array([10., 10.])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lagrad.errors import ProgramError
from lagrad.ir import ops
from lagrad.ir import primitives as P
from lagrad.ir.arrayops import shape_of

__all__ = ["hstack", "vstack", "dstack", "column_stack", "atleast_1d", "atleast_2d",
           "atleast_3d", "append", "copy", "zeros_like", "ones_like", "full_like",
           "empty_like"]


def _at_least(a: Any, new: Any) -> Any:
    shape = shape_of(a)
    target = new(shape)
    return ops.reshape(a, target) if target != shape else a


def _one(shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape if shape else (1,)


def _two(shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape if len(shape) >= 2 else (1,) + _one(shape)


def _three(shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) >= 3:
        return shape
    if len(shape) == 2:
        return shape + (1,)
    return (1,) + _one(shape) + (1,)


def _each(new: Any, arys: Sequence[Any]) -> Any:
    out = tuple(_at_least(a, new) for a in arys)
    return out[0] if len(out) == 1 else out


def atleast_1d(*arys: Any) -> Any:
    """Each array with one dimension at least, as :func:`numpy.atleast_1d`."""
    return _each(_one, arys)


def atleast_2d(*arys: Any) -> Any:
    """Each array with two dimensions at least (a vector as a row), as
    :func:`numpy.atleast_2d`."""
    return _each(_two, arys)


def atleast_3d(*arys: Any) -> Any:
    """Each array with three dimensions at least, as :func:`numpy.atleast_3d`."""
    return _each(_three, arys)


def _arrays(name: str, tup: Any) -> list[Any]:
    if isinstance(tup, P.Tracer) or not isinstance(tup, (list, tuple)) or not tup:
        raise ProgramError(f"{name}: give a non-empty list or tuple of arrays")
    return list(tup)


def hstack(tup: Sequence[Any]) -> Any:
    """Join along the second axis (the first for vectors), as :func:`numpy.hstack`."""
    arrays = [atleast_1d(a) for a in _arrays("hstack", tup)]
    return ops.concatenate(arrays, axis=0 if len(shape_of(arrays[0])) == 1 else 1)


def vstack(tup: Sequence[Any]) -> Any:
    """Join along the first axis, vectors as rows, as :func:`numpy.vstack`."""
    return ops.concatenate([atleast_2d(a) for a in _arrays("vstack", tup)], axis=0)


def dstack(tup: Sequence[Any]) -> Any:
    """Join along the third axis, as :func:`numpy.dstack`."""
    return ops.concatenate([atleast_3d(a) for a in _arrays("dstack", tup)], axis=2)


def column_stack(tup: Sequence[Any]) -> Any:
    """Vectors as columns, joined with matrices along the second axis, as
    :func:`numpy.column_stack`."""
    arrays = _arrays("column_stack", tup)
    columns = [ops.reshape(a, (shape_of(a)[0], 1)) if len(shape_of(a)) == 1 else atleast_2d(a)
               for a in arrays]
    return ops.concatenate(columns, axis=1)


def append(arr: Any, values: Any, axis: Any = None) -> Any:
    """``values`` after ``arr`` (both flattened when ``axis`` is None), as
    :func:`numpy.append`."""
    if axis is None:
        flat = [ops.reshape(a, (int(np.prod(shape_of(a))),)) for a in (arr, values)]
        return ops.concatenate(flat, axis=0)
    return ops.concatenate([arr, values], axis=axis)


def copy(a: Any, order: str = "K", subok: bool = False) -> Any:
    """A new variable equal to ``a``, as :func:`numpy.copy`."""
    return P.identity(a)


def _like(a: Any, fill: Any, dtype: Any, shape: Any) -> np.ndarray:
    out_shape = shape_of(a) if shape is None else \
        ((int(shape),) if isinstance(shape, (int, np.integer)) else tuple(shape))
    return np.full(out_shape, fill, dtype=float if dtype is None else dtype)


def zeros_like(a: Any, dtype: Any = None, order: str = "K", subok: bool = True,
               shape: Any = None) -> np.ndarray:
    """A constant array of zeros of ``a``'s shape, as :func:`numpy.zeros_like`."""
    return _like(a, 0.0, dtype, shape)


def ones_like(a: Any, dtype: Any = None, order: str = "K", subok: bool = True,
              shape: Any = None) -> np.ndarray:
    """A constant array of ones of ``a``'s shape, as :func:`numpy.ones_like`."""
    return _like(a, 1.0, dtype, shape)


def empty_like(prototype: Any, dtype: Any = None, order: str = "K", subok: bool = True,
               shape: Any = None) -> np.ndarray:
    """A constant array of ``prototype``'s shape (zeros), as :func:`numpy.empty_like`."""
    return _like(prototype, 0.0, dtype, shape)


def full_like(a: Any, fill_value: Any, dtype: Any = None, order: str = "K", subok: bool = True,
              shape: Any = None) -> np.ndarray:
    """A constant array of ``fill_value`` of ``a``'s shape, as :func:`numpy.full_like`
    (``fill_value`` must be a number: a traced one would be ``a * 0 + value``)."""
    if isinstance(fill_value, P.Tracer):
        raise ProgramError("full_like: fill_value is a traced value; write "
                           "np.zeros_like(a) + value to fill with it")
    return _like(a, fill_value, dtype, shape)
