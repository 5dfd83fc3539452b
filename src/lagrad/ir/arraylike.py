"""The numpy-like surface of a traced variable: :class:`ArrayMethods`.

Operators (arithmetic, ``@``, indexing, comparisons), the array methods numpy
users call (``reshape``, ``sum``, ``T``, ...) and numpy's dispatch protocols
(``__array_ufunc__``, ``__array_function__``), each recording an equation in
the variable's program through :mod:`lagrad.ir.ops` or a primitive. A mixin
without state: :class:`lagrad.Variable` holds the data.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from lagrad.errors import ProgramError
from lagrad.ir import arrayops, cumulative, dispatch, ops, sorting
from lagrad.ir import primitives as P
from lagrad.ir import ufuncs as U

__all__ = ["ArrayMethods"]

Traced = Any  # a lagrad.Variable of the same program (not imported: program.py imports this)


class ArrayMethods:
    """Operators and numpy's array methods and protocols on a traced value
    (the ``name`` and ``size`` are its subclass's)."""

    __slots__ = ()
    __array_priority__ = 1000.0
    name: str
    size: int

    # comparisons: 0/1 masks, re-evaluated at every solve, derivative zero
    def __lt__(self, o: Any) -> Traced: return ops.less(self, o)
    def __le__(self, o: Any) -> Traced: return ops.less_equal(self, o)
    def __gt__(self, o: Any) -> Traced: return ops.greater(self, o)
    def __ge__(self, o: Any) -> Traced: return ops.greater_equal(self, o)
    def __eq__(self, o: Any) -> Traced: return ops.equal(self, o)  # type: ignore[override]
    def __ne__(self, o: Any) -> Traced: return ops.not_equal(self, o)  # type: ignore[override]
    __hash__ = object.__hash__  # variables are dict keys, by identity

    # arithmetic: each records one equation
    def __add__(self, o: Any) -> Traced: return P.add(self, o)
    def __radd__(self, o: Any) -> Traced: return P.add(o, self)
    def __sub__(self, o: Any) -> Traced: return P.sub(self, o)
    def __rsub__(self, o: Any) -> Traced: return P.sub(o, self)
    def __mul__(self, o: Any) -> Traced: return P.mul(self, o)
    def __rmul__(self, o: Any) -> Traced: return P.mul(o, self)
    def __truediv__(self, o: Any) -> Traced: return P.div(self, o)
    def __rtruediv__(self, o: Any) -> Traced: return P.div(o, self)
    def __pow__(self, o: Any) -> Traced: return P.power(self, o)
    def __rpow__(self, o: Any) -> Traced: return P.power(o, self)
    def __mod__(self, o: Any) -> Traced: return U.remainder(self, o)
    def __rmod__(self, o: Any) -> Traced: return U.remainder(o, self)
    def __matmul__(self, o: Any) -> Traced: return ops.matmul(self, o)
    def __rmatmul__(self, o: Any) -> Traced: return ops.matmul(o, self)
    def __neg__(self) -> Traced: return P.neg(self)
    def __pos__(self) -> Traced: return self
    def __abs__(self) -> Traced: return P.absolute(self)
    def __getitem__(self, index: Any) -> Traced: return ops.getitem(self, index)

    @property
    def T(self) -> Traced:  # noqa: N802 (numpy's name)
        return ops.transpose(self)

    def reshape(self, *shape: Any) -> Traced:
        return ops.reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes: Any) -> Traced:
        return ops.transpose(self, axes[0] if len(axes) == 1 else (axes or None))

    def sum(self, axis: Any = None, keepdims: bool = False) -> Traced:
        return ops.sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Traced:
        return ops.mean(self, axis=axis, keepdims=keepdims)

    def dot(self, other: Any) -> Traced:
        return ops.dot(self, other)

    def ravel(self) -> Traced:
        """The entries as a 1-D variable (``reshape(-1)``)."""
        return ops.reshape(self, (self.size,))

    flatten = ravel

    def astype(self, dtype: Any, copy: bool = True) -> Traced:
        """The variable itself for float64 (every variable is float64); other
        dtypes raise, as a traced variable cannot change its type."""
        if not _is_float64(dtype):
            raise ProgramError(f"{self.name}.astype({dtype!r}): traced variables are float64 "
                               "and cannot be cast; convert the result after solving")
        return self

    def max(self, axis: Any = None, keepdims: bool = False) -> Traced:
        return ops.max(self, axis=axis, keepdims=keepdims)

    def min(self, axis: Any = None, keepdims: bool = False) -> Traced:
        return ops.min(self, axis=axis, keepdims=keepdims)

    def prod(self, axis: Any = None, keepdims: bool = False) -> Traced:
        return ops.prod(self, axis=axis, keepdims=keepdims)

    def cumsum(self, axis: Any = None) -> Traced:
        return ops.cumsum(self, axis=axis)

    def cumprod(self, axis: Any = None) -> Traced:
        return cumulative.cumprod(self, axis=axis)

    def var(self, axis: Any = None, ddof: int = 0, keepdims: bool = False) -> Traced:
        return ops.var(self, axis=axis, ddof=ddof, keepdims=keepdims)

    def std(self, axis: Any = None, ddof: int = 0, keepdims: bool = False) -> Traced:
        return ops.std(self, axis=axis, ddof=ddof, keepdims=keepdims)

    def clip(self, min: Any = None, max: Any = None) -> Traced:  # noqa: A002 (numpy's)
        return ops.clip(self, min, max)

    def squeeze(self, axis: Any = None) -> Traced:
        return arrayops.squeeze(self, axis)

    def swapaxes(self, axis1: int, axis2: int) -> Traced:
        return arrayops.swapaxes(self, axis1, axis2)

    def diagonal(self, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Traced:
        return arrayops.diagonal(self, offset, axis1, axis2)

    def trace(self, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Traced:
        return arrayops.trace(self, offset, axis1, axis2)

    def repeat(self, repeats: Any, axis: Any = None) -> Traced:
        return arrayops.repeat(self, repeats, axis)

    def take(self, indices: Any, axis: Any = None) -> Traced:
        return arrayops.take(self, indices, axis)

    def argmax(self, axis: Any = None, out: Any = None, *, keepdims: bool = False) -> Traced:
        return sorting.argmax(self, axis, out, keepdims=keepdims)

    def argmin(self, axis: Any = None, out: Any = None, *, keepdims: bool = False) -> Traced:
        return sorting.argmin(self, axis, out, keepdims=keepdims)

    def argsort(self, axis: Any = -1, kind: Any = None, order: Any = None) -> Traced:
        return sorting.argsort(self, axis, kind, order)

    def round(self, decimals: int = 0, out: Any = None) -> Traced:
        return U.round_(self, decimals, out)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if _from_sparse_matmul(sys._getframe(1)):
            # scipy.sparse's A @ x reads x with np.asanyarray and returns
            # NotImplemented for a 0-d object array, so that Python then calls
            # x.__rmatmul__(A), which records lagrad.matmul(A, x)
            boxed = np.empty((), dtype=object)
            boxed[()] = self
            return boxed
        raise ProgramError(
            f"traced variable {self.name!r} has no value while tracing and cannot be "
            "converted to a numpy array; use lagrad's operations (or numpy ufuncs) on it")

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        return dispatch.apply_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return dispatch.apply_function(func, args, kwargs)


def _from_sparse_matmul(frame: Any) -> bool:
    """Whether ``frame`` is scipy.sparse's product dispatch (``A @ x``, ``A * x``)."""
    return (frame is not None and frame.f_code.co_name == "_matmul_dispatch"
            and str(frame.f_globals.get("__name__", "")).startswith("scipy.sparse"))


def _is_float64(dtype: Any) -> bool:
    try:
        return np.dtype(dtype) == np.float64
    except TypeError:
        return False
