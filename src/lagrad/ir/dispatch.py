"""numpy's dispatch on traced values: the tables that route numpy's ufuncs
(``Tracer.__array_ufunc__``) and functions (``Tracer.__array_function__``)
to lagrad's operations, and the errors for what is not routed.

A module of its own, above the operations it routes (:mod:`lagrad.ir.ops`,
:mod:`lagrad.ir.arrayops`, :mod:`lagrad.ir.ufuncs`, ...), so that those can
be written with each other without an import cycle.

>>> import numpy as np, lagrad
>>> lagrad.grad(lambda x: np.sum(np.flip(np.tan(x))))(np.zeros(2))
array([1., 1.])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.special

from lagrad.errors import ProgramError
from lagrad.ir import arrayops as A
from lagrad.ir import (
    linalg,
    numpy_api,
    ops,
    products,
    sequences,
    sorting,
    special,
    stacking,
    statistics,
)
from lagrad.ir import primitives as P
from lagrad.ir import ufuncs as U
from lagrad.ir.cumulative import cumprod
from lagrad.ir.interpolate import interp
from lagrad.ir.primitives import Tracer

__all__ = ["apply_ufunc", "apply_function", "UFUNCS", "FUNCTIONS"]

UFUNCS: dict[np.ufunc, Any] = {
    np.add: P.add, np.subtract: P.sub, np.multiply: P.mul, np.true_divide: P.div,
    np.power: P.power, np.negative: P.neg, np.exp: P.exp, np.log: P.log, np.sin: P.sin,
    np.cos: P.cos, np.tanh: P.tanh, np.sqrt: P.sqrt, np.absolute: P.absolute,
    np.maximum: P.maximum, np.minimum: P.minimum, np.matmul: ops.matmul,
    np.positive: lambda x: x, np.square: ops.square, np.log1p: ops.log1p,
    np.expm1: ops.expm1, np.arctan: ops.arctan, np.sinh: ops.sinh, np.cosh: ops.cosh,
    np.sign: ops.sign, np.logaddexp: ops.logaddexp, np.arctan2: ops.arctan2,
    np.hypot: ops.hypot, scipy.special.expit: ops.expit,
    np.greater: ops.greater, np.greater_equal: ops.greater_equal, np.less: ops.less,
    np.less_equal: ops.less_equal, np.equal: ops.equal, np.not_equal: ops.not_equal,
    np.fabs: P.absolute, np.fmax: P.maximum, np.fmin: P.minimum, np.float_power: P.power,
    **U.UFUNCS, **special.UFUNCS, np.vecdot: numpy_api.vecdot, np.conjugate: lambda x: x,
}
"""numpy's ufunc -> the operation it records (called with the ufunc's inputs)."""

FUNCTIONS: dict[Any, Any] = {
    np.sum: ops.sum, np.mean: ops.mean, np.reshape: ops.reshape, np.transpose: ops.transpose,
    np.concatenate: ops.concatenate, np.stack: ops.stack, np.where: ops.where, np.dot: ops.dot,
    np.shape: lambda x: x.shape, np.ndim: lambda x: x.ndim, np.size: lambda x: x.size,
    np.linalg.solve: linalg.solve, np.linalg.inv: linalg.inv, np.linalg.det: linalg.det,
    np.linalg.slogdet: linalg.slogdet, np.linalg.cholesky: linalg.cholesky,
    np.linalg.norm: linalg.norm, np.linalg.multi_dot: linalg.multi_dot,
    np.linalg.matrix_power: linalg.matrix_power, np.linalg.eigvalsh: linalg.eigvalsh,
    np.linalg.eigh: linalg.eigh, np.linalg.pinv: linalg.pinv, np.linalg.qr: linalg.qr,
    np.linalg.svd: linalg.svd, np.linalg.svdvals: linalg.svdvals, np.linalg.lstsq: linalg.lstsq,
    np.linalg.vector_norm: linalg.vector_norm, np.linalg.matrix_norm: linalg.matrix_norm,
    np.max: ops.max, np.amax: ops.max, np.min: ops.min, np.amin: ops.min, np.prod: ops.prod,
    np.cumsum: ops.cumsum, np.var: ops.var, np.std: ops.std, np.einsum: ops.einsum,
    np.outer: ops.outer, np.tensordot: ops.tensordot, np.clip: ops.clip, np.sort: ops.sort,
    np.cumprod: cumprod, np.argsort: sorting.argsort, np.argmax: sorting.argmax,
    np.argmin: sorting.argmin, np.round: U.round_, np.around: U.round_, np.interp: interp,
    np.searchsorted: sorting.searchsorted, np.sinc: U.sinc,
    np.matrix_transpose: numpy_api.matrix_transpose, np.linalg.vecdot: numpy_api.vecdot,
    np.linalg.matrix_transpose: numpy_api.matrix_transpose, np.linalg.outer: ops.outer,
    np.linalg.trace: numpy_api.linalg_trace, np.linalg.diagonal: numpy_api.linalg_diagonal,
    np.linalg.cross: numpy_api.linalg_cross, np.linalg.tensordot: numpy_api.linalg_tensordot,
    np.linalg.matmul: ops.matmul, np.linalg.cond: numpy_api.cond,
    np.linalg.matrix_rank: linalg.matrix_rank, np.fix: numpy_api.fix,
    np.nan_to_num: numpy_api.nan_to_num, np.real: numpy_api.real, np.imag: numpy_api.imag,
    np.all: numpy_api.all_, np.any: numpy_api.any_, np.count_nonzero: numpy_api.count_nonzero,
    **{getattr(np, name): getattr(sequences, name) for name in sequences.__all__},
    np.ravel: lambda x: ops.reshape(x, (math.prod(A.shape_of(x)),)),
    **{getattr(np, name): getattr(module, name) for module in (A, products, stacking, statistics)
       for name in module.__all__},
}
"""numpy's function -> lagrad's operation of the same signature."""

NAN_SKIPPING = ("sum", "prod", "max", "min", "mean", "var", "std", "cumsum", "cumprod",
                "median", "quantile", "percentile")
"""numpy's nan-functions (``np.nansum``, ...) take their plain counterpart's
operation: a solve refuses non-finite values (:class:`lagrad.NonFiniteError`
names the equation), so a traced value has no NaN to skip."""

FUNCTIONS.update({getattr(np, "nan" + name): FUNCTIONS[getattr(np, name)]
                  for name in NAN_SKIPPING})


def apply_ufunc(ufunc: np.ufunc, method: str, inputs: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """``Tracer.__array_ufunc__``: route supported ufuncs to primitives."""
    op = UFUNCS.get(ufunc)
    if op is None or method != "__call__" or kwargs:
        extra = f" with {sorted(kwargs)}" if kwargs else ""
        names = [a.name for a in inputs if isinstance(a, Tracer)]
        raise ProgramError(f"numpy.{ufunc.__name__}{extra} is not supported on traced "
                           f"variables (here {names}); supported ufuncs: "
                           f"{sorted(u.__name__ for u in UFUNCS)}")
    return op(*inputs)


def apply_function(func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """``Tracer.__array_function__``: route supported numpy functions."""
    op = FUNCTIONS.get(func)
    if op is None:
        raise ProgramError(f"numpy.{func.__name__} is not supported on traced variables; "
                           f"supported: {sorted(f.__name__ for f in FUNCTIONS)} and ufuncs")
    try:
        return op(*args, **kwargs)
    except TypeError as err:
        raise ProgramError(f"numpy.{func.__name__}: unsupported arguments ({err})") from err
