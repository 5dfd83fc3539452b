"""User-facing operations. On numbers they compute; on traced variables they
record equations. Composite operations (mean, softmax, stack, dot) are written
in terms of primitives, so they need no derivative rules of their own.

>>> import numpy as np, lagrad
>>> float(lagrad.logsumexp(np.zeros(4)))  # doctest: +ELLIPSIS
1.386294...
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse

from lagrad.errors import ProgramError
from lagrad.ir import linalg
from lagrad.ir import primitives as P
from lagrad.ir.primitives import Tracer

__all__ = [
    "exp", "log", "sin", "cos", "tanh", "sigmoid", "relu", "sqrt", "abs", "maximum",
    "minimum", "sum", "mean", "reshape", "transpose", "concatenate", "stack", "where",
    "logsumexp", "softmax", "dot", "matmul", "getitem",
]

exp = P.exp
log = P.log
sin = P.sin
cos = P.cos
tanh = P.tanh
sigmoid = P.sigmoid
relu = P.relu
sqrt = P.sqrt
abs = P.absolute  # noqa: A001 (numpy's name)
maximum = P.maximum
minimum = P.minimum


def _shape_of(x: Any) -> tuple[int, ...]:
    return x.shape if isinstance(x, Tracer) else np.shape(x)


def _axes(axis: Any, ndim: int) -> tuple[int, ...] | None:
    """Normalize ``axis`` (None, int or tuple) to sorted non-negative ints."""
    if axis is None:
        return None
    axes = (axis,) if _is_int(axis) else axis
    if not isinstance(axes, (tuple, list)) or not builtins.all(_is_int(a) for a in axes):
        raise ProgramError(f"axis {axis!r} is not an axis; give an int or a tuple of ints")
    out = []
    for a in axes:
        # numpy lets a 0-d array be reduced over axis 0 or -1, as over all (no) axes
        if not (a in (0, -1) if ndim == 0 else -ndim <= a < ndim):
            raise ProgramError(f"axis {a} is out of bounds for an array of dimension {ndim}")
        out.append(int(a) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ProgramError(f"repeated axis in {axis!r}")
    return tuple(sorted(out)) if ndim else None


def _axis(axis: Any, ndim: int) -> int:
    """One axis in [-ndim, ndim) as a non-negative int (numpy raises AxisError
    where a modulo would silently wrap around)."""
    if not _is_int(axis):
        raise ProgramError(f"axis {axis!r} is not an axis; give an int")
    if not -ndim <= int(axis) < ndim:
        raise ProgramError(f"axis {axis} is out of bounds for an array of dimension {ndim}")
    return int(axis) % ndim


def _is_int(a: Any) -> bool:
    return isinstance(a, (int, np.integer)) and not isinstance(a, (bool, np.bool_))


def sum(x: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    """Sum over ``axis`` (None: all), as :func:`numpy.sum`."""
    return P.sum_(x, axis=_axes(axis, len(_shape_of(x))), keepdims=bool(keepdims))


def mean(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Mean over ``axis`` (None: all), as :func:`numpy.mean`."""
    shape = _shape_of(x)
    axes = _axes(axis, len(shape))
    count = math.prod(shape) if axes is None else math.prod(shape[a] for a in axes)
    if count == 0:
        name = f" {x.name!r}" if isinstance(x, Tracer) else ""
        where = "" if axis is None else f" along axis {axis!r}"
        raise ProgramError(f"mean of an empty slice: array{name} of shape {shape} has no "
                           f"entries{where}, so the mean is undefined (numpy returns nan "
                           "with a warning); take the mean of a non-empty array or axis")
    return P.mul(sum(x, axis=axes, keepdims=keepdims), 1.0 / count)


def logsumexp(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """log(sum(exp(x))) over ``axis``, computed stably (scipy's convention)."""
    return P.logsumexp(x, axis=_axes(axis, len(_shape_of(x))), keepdims=bool(keepdims))


def softmax(x: Any, axis: Any = -1) -> Any:
    """exp(x) / sum(exp(x)) over ``axis`` (default: the last, as JAX)."""
    return exp(P.sub(x, logsumexp(x, axis=axis, keepdims=True)))


def reshape(x: Any, shape: Any) -> Any:
    """Reshape as :func:`numpy.reshape` (one entry may be -1)."""
    old = _shape_of(x)
    new = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)
    size = math.prod(old)
    if new.count(-1) == 1:
        rest = math.prod(n for n in new if n != -1)
        if rest == 0 or size % rest:
            raise ProgramError(f"cannot reshape array of shape {old} into {new}")
        new = tuple(size // rest if n == -1 else n for n in new)
    if math.prod(new) != size or builtins.any(n < 0 for n in new):
        raise ProgramError(f"cannot reshape array of shape {old} into {new}")
    return P.reshape(x, shape=new)


def transpose(x: Any, axes: Any = None) -> Any:
    """Permute axes as :func:`numpy.transpose` (default: reverse them)."""
    ndim = len(_shape_of(x))
    perm = tuple(reversed(range(ndim))) if axes is None else tuple(_axis(a, ndim) for a in axes)
    if sorted(perm) != list(range(ndim)):
        raise ProgramError(f"axes {axes!r} do not permute the {ndim} axes of the array")
    return P.transpose(x, axes=perm)


def getitem(x: Any, index: Any) -> Any:
    """``x[index]`` with basic slices and integer or boolean index arrays."""
    parts = index if isinstance(index, tuple) else (index,)
    for p in parts:
        if isinstance(p, Tracer):
            raise ProgramError(f"cannot index with traced variable {p.name!r}: indices must "
                               "be constants (ints, slices or integer arrays)")
    norm = tuple(np.asarray(p) if isinstance(p, (list, np.ndarray)) else p for p in parts)
    return P.getitem(x, index=norm if isinstance(index, tuple) else norm[0])


def concatenate(arrays: Sequence[Any], axis: int = 0) -> Any:
    """Join arrays along an existing axis, as :func:`numpy.concatenate`."""
    arrays = list(arrays)
    if not arrays:
        raise ProgramError("concatenate needs at least one array")
    shapes = [_shape_of(a) for a in arrays]
    ndim = len(shapes[0])
    if ndim == 0:
        raise ProgramError("zero-dimensional arrays cannot be concatenated")
    ax = _axis(axis, ndim)
    for s in shapes:
        if len(s) != ndim or s[:ax] + s[ax + 1:] != shapes[0][:ax] + shapes[0][ax + 1:]:
            raise ProgramError(f"concatenate: shapes {shapes} do not match off axis {axis}")
    return P.concatenate(*arrays, axis=ax)


def stack(arrays: Sequence[Any], axis: int = 0) -> Any:
    """Join arrays along a new axis, as :func:`numpy.stack`."""
    arrays = list(arrays)
    if not arrays:
        raise ProgramError("stack needs at least one array")
    shape = _shape_of(arrays[0])
    if builtins.any(_shape_of(a) != shape for a in arrays):
        raise ProgramError(f"stack: all arrays must have one shape, got "
                           f"{[_shape_of(a) for a in arrays]}")
    ax = _axis(axis, len(shape) + 1)
    # check here: the reshapes below would otherwise record into a foreign program
    traced = [a for a in arrays if isinstance(a, Tracer)]
    for a in traced:
        if a.program is not traced[0].program:
            raise ProgramError(f"stack: argument {a.name!r} belongs to another program; "
                               "variables cannot be shared between programs")
    new = shape[:ax] + (1,) + shape[ax:]
    return concatenate([reshape(a, new) for a in arrays], axis=ax)


def where(condition: Any, x: Any, y: Any) -> Any:
    """``x`` where ``condition`` else ``y``; the condition must be a constant."""
    if isinstance(condition, Tracer):
        raise ProgramError(f"where: the condition {condition.name!r} is traced; it must be a "
                           "constant boolean array computed outside the traced function")
    return P.where(x, y, condition=np.asarray(condition, dtype=bool))


def matmul(a: Any, b: Any) -> Any:
    """Matrix product of 1-D and 2-D operands, as the ``@`` operator.

    ``a`` may be a constant ``scipy.sparse`` matrix: its product with a traced
    vector or matrix stays sparse (no dense copy of the matrix is made).
    """
    if scipy.sparse.issparse(a):
        return P.sparse_matmul(b, matrix=scipy.sparse.csr_matrix(a))
    if len(_shape_of(a)) == 0 or len(_shape_of(b)) == 0:
        raise ProgramError("matmul: operands must not be scalars; use * instead")
    return P.matmul(a, b)


def dot(a: Any, b: Any) -> Any:
    """Dot product as :func:`numpy.dot` (1-D and 2-D operands, or a scalar)."""
    if len(_shape_of(a)) == 0 or len(_shape_of(b)) == 0:
        return P.mul(a, b)
    return matmul(a, b)  # which routes a scipy.sparse ``a`` to sparse_matmul


# --------------------------------------------------------- numpy dispatch

_UFUNCS: dict[np.ufunc, Any] = {
    np.add: P.add, np.subtract: P.sub, np.multiply: P.mul, np.true_divide: P.div,
    np.power: P.power, np.negative: P.neg, np.exp: P.exp, np.log: P.log, np.sin: P.sin,
    np.cos: P.cos, np.tanh: P.tanh, np.sqrt: P.sqrt, np.absolute: P.absolute,
    np.maximum: P.maximum, np.minimum: P.minimum, np.matmul: matmul,
    np.positive: lambda x: x,
}

_FUNCTIONS: dict[Any, Any] = {
    np.sum: sum, np.mean: mean, np.reshape: reshape, np.transpose: transpose,
    np.concatenate: concatenate, np.stack: stack, np.where: where, np.dot: dot,
    np.shape: lambda x: x.shape, np.ndim: lambda x: x.ndim, np.size: lambda x: x.size,
    np.linalg.solve: linalg.solve, np.linalg.inv: linalg.inv, np.linalg.det: linalg.det,
    np.linalg.slogdet: linalg.slogdet, np.linalg.cholesky: linalg.cholesky,
}


def apply_ufunc(ufunc: np.ufunc, method: str, inputs: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """``Tracer.__array_ufunc__``: route supported ufuncs to primitives."""
    op = _UFUNCS.get(ufunc)
    if op is None or method != "__call__" or kwargs:
        extra = f" with {sorted(kwargs)}" if kwargs else ""
        names = [a.name for a in inputs if isinstance(a, Tracer)]
        raise ProgramError(f"numpy.{ufunc.__name__}{extra} is not supported on traced "
                           f"variables (here {names}); supported ufuncs: "
                           f"{sorted(u.__name__ for u in _UFUNCS)}")
    return op(*inputs)


def apply_function(func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """``Tracer.__array_function__``: route supported numpy functions."""
    op = _FUNCTIONS.get(func)
    if op is None:
        raise ProgramError(f"numpy.{func.__name__} is not supported on traced variables; "
                           f"supported: {sorted(f.__name__ for f in _FUNCTIONS)} and ufuncs")
    try:
        return op(*args, **kwargs)
    except TypeError as err:
        raise ProgramError(f"numpy.{func.__name__}: unsupported arguments ({err})") from err
