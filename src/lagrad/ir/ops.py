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
import scipy.special

from lagrad.errors import ProgramError
from lagrad.ir import arrayops as A
from lagrad.ir import numpy_prims as N
from lagrad.ir import primitives as P
from lagrad.ir import ufuncs as U
from lagrad.ir.primitives import Tracer
from lagrad.ir.sorting import sort

__all__ = [
    "exp", "log", "sin", "cos", "tanh", "sigmoid", "relu", "sqrt", "abs", "maximum",
    "minimum", "sum", "mean", "reshape", "transpose", "concatenate", "stack", "where",
    "logsumexp", "softmax", "dot", "matmul", "getitem",
    "square", "log1p", "expm1", "arctan", "sinh", "cosh", "sign", "logaddexp", "expit",
    "max", "min", "prod", "cumsum", "var", "std", "einsum", "outer", "tensordot", "clip",
    "arctan2", "hypot", "sort", "tan", "arcsin", "arccos", "arcsinh", "arccosh", "arctanh",
    "log2", "log10", "exp2", "cbrt", "reciprocal", "floor", "ceil", "trunc", "rint",
    "deg2rad", "rad2deg", "logaddexp2", "remainder", "fmod", "copysign",
    "greater", "greater_equal", "less", "less_equal", "equal", "not_equal",
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
square = N.square
log1p = N.log1p
expm1 = N.expm1
arctan = N.arctan
sinh = N.sinh
cosh = N.cosh
sign = N.sign  # derivative zero, also at 0
logaddexp = N.logaddexp
tan, arcsin, arccos, arcsinh, arccosh = U.tan, U.arcsin, U.arccos, U.arcsinh, U.arccosh
arctanh, log2, log10, exp2, cbrt = U.arctanh, U.log2, U.log10, U.exp2, U.cbrt
reciprocal, floor, ceil, trunc, rint = U.reciprocal, U.floor, U.ceil, U.trunc, U.rint
deg2rad, rad2deg, logaddexp2 = U.deg2rad, U.rad2deg, U.logaddexp2
remainder, fmod, copysign = U.remainder, U.fmod, U.copysign
arctan2 = N.arctan2
hypot = N.hypot
expit = P.sigmoid  # scipy.special's name
# comparisons: 0/1 masks of the current values, derivative zero (as JAX's booleans)
greater = N.greater
greater_equal = N.greater_equal
less = N.less
less_equal = N.less_equal
equal = N.equal
not_equal = N.not_equal


def _shape_of(x: Any) -> tuple[int, ...]:
    return x.shape if isinstance(x, Tracer) else np.shape(x)


def _axes(axis: Any, ndim: int) -> tuple[int, ...] | None:
    """Normalize ``axis`` (None, int or tuple) to sorted non-negative ints."""
    if axis is None:
        return None
    axes = (axis,) if A.is_int(axis) else axis
    if not isinstance(axes, (tuple, list)) or not builtins.all(A.is_int(a) for a in axes):
        raise ProgramError(f"axis {axis!r} is not an axis; give an int or a tuple of ints")
    out = []
    for a in axes:
        # numpy lets a 0-d array be reduced over axis 0 or -1, as over all (no) axes
        if not (a in (0, -1) if ndim == 0 else -ndim <= a < ndim):
            raise ProgramError(f"axis {a} is out of bounds for an array of dimension {ndim}")
        out.append(int(a) % builtins.max(ndim, 1))
    if len(set(out)) != len(out):
        raise ProgramError(f"repeated axis in {axis!r}")
    return tuple(sorted(out)) if ndim else None


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
    perm = tuple(reversed(range(ndim))) if axes is None else \
        tuple(A.axis_of("transpose", a, ndim) for a in axes)
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
    ax = A.axis_of("concatenate", axis, ndim)
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
    ax = A.axis_of("stack", axis, len(shape) + 1)
    # check here: the reshapes below would otherwise record into a foreign program
    traced = [a for a in arrays if isinstance(a, Tracer)]
    for a in traced:
        if a.program is not traced[0].program:
            raise ProgramError(f"stack: argument {a.name!r} belongs to another program; "
                               "variables cannot be shared between programs")
    new = shape[:ax] + (1,) + shape[ax:]
    return concatenate([reshape(a, new) for a in arrays], axis=ax)


def where(condition: Any, x: Any, y: Any) -> Any:
    """``x`` where ``condition`` else ``y``, as :func:`numpy.where` (three arguments).

    The condition is a constant boolean array, or a traced mask such as
    ``x > 0``: a 0/1 variable evaluated from the current values at every solve
    (any traced value counts as true where it is nonzero, as numpy reads a
    float condition). The derivative flows to ``x`` and ``y`` only.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> relu = lambda x: np.where(x > 0, x, 0.0).sum()
    >>> lagrad.grad(relu)(np.array([-1.0, 2.0, 3.0]))
    array([0., 1., 1.])
    """
    if isinstance(condition, Tracer):
        return N.select(condition, x, y)
    return P.where(x, y, condition=np.asarray(condition, dtype=bool))


def matmul(a: Any, b: Any) -> Any:
    """Matrix product as the ``@`` operator and :func:`numpy.matmul`.

    1-D and 2-D operands, and stacks of matrices (3-D and more) whose leading
    axes broadcast as in numpy. Either operand may be a constant
    ``scipy.sparse`` matrix (1-D or 2-D other operand): its product with a
    traced value stays sparse (no dense copy of the matrix is made).

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> a, b = np.ones((4, 2, 3)), np.ones((3, 5))
    >>> lagrad.matmul(a, b).shape
    (4, 2, 5)
    >>> lagrad.grad(lambda a: lagrad.matmul(a, b).sum())(a)[0]
    array([[5., 5., 5.],
           [5., 5., 5.]])
    """
    if scipy.sparse.issparse(a):
        return P.sparse_matmul(b, matrix=scipy.sparse.csr_matrix(a))
    sa, sb = _shape_of(a), _shape_of(b)
    if len(sa) == 0 or len(sb) == 0:
        raise ProgramError("matmul: operands must not be scalars; use * instead")
    if scipy.sparse.issparse(b):  # x A = (A^T x^T)^T
        at = scipy.sparse.csr_matrix(b.T)
        if len(sa) > 2:
            raise ProgramError(f"matmul: a stack of shape {sa} times a sparse matrix is not "
                               "supported; give a 1-D or 2-D operand")
        return P.sparse_matmul(a, matrix=at) if len(sa) == 1 else \
            transpose(P.sparse_matmul(transpose(a), matrix=at))
    if len(sa) > 2 or len(sb) > 2:
        return N.batched_matmul(a, b)
    return P.matmul(a, b)


def dot(a: Any, b: Any) -> Any:
    """Dot product as :func:`numpy.dot` (1-D and 2-D operands, or a scalar)."""
    if len(_shape_of(a)) == 0 or len(_shape_of(b)) == 0:
        return P.mul(a, b)
    return matmul(a, b)  # which routes a scipy.sparse ``a`` to sparse_matmul


# ------------------------------------------- more numpy (ir/numpy_prims.py)

def _op_axes(name: str, x: Any, axis: Any) -> tuple[int, ...] | None:
    """``_axes`` with the operation's name in its error message."""
    try:
        return _axes(axis, len(_shape_of(x)))
    except ProgramError as err:
        raise ProgramError(f"{name}: {err}") from None


def max(x: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    """Largest entry over ``axis`` (None: all), as :func:`numpy.max`.

    Entries that tie for the maximum share its derivative equally (as JAX and
    autograd); an empty slice raises :class:`lagrad.ProgramError`.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> lagrad.grad(lambda x: lagrad.max(x))(np.array([1.0, 3.0, 3.0]))
    array([0. , 0.5, 0.5])
    """
    return N.amax(x, axis=_op_axes("max", x, axis), keepdims=bool(keepdims))


def min(x: Any, axis: Any = None, keepdims: bool = False) -> Any:  # noqa: A001
    """Smallest entry over ``axis`` (None: all), as :func:`numpy.min`; ties
    share the derivative equally, as in :func:`max`."""
    return N.amin(x, axis=_op_axes("min", x, axis), keepdims=bool(keepdims))


def prod(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    """Product over ``axis`` (None: all), as :func:`numpy.prod`.

    The derivative with respect to an entry is the product of the others,
    computed without dividing by the entry, so it is exact at zeros.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> lagrad.grad(lagrad.prod)(np.array([2.0, 0.0, 5.0]))
    array([ 0., 10.,  0.])
    """
    return N.prod(x, axis=_op_axes("prod", x, axis), keepdims=bool(keepdims))


def cumsum(x: Any, axis: Any = None) -> Any:
    """Cumulative sum along ``axis`` (None: of the flattened array), as
    :func:`numpy.cumsum`.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> lagrad.grad(lambda x: lagrad.cumsum(x)[-2])(np.ones(3))
    array([1., 1., 0.])
    """
    shape = _shape_of(x)
    if axis is None:
        return N.cumsum(reshape(x, (math.prod(shape),)), axis=0)
    if not shape:
        raise ProgramError(f"cumsum: axis {axis!r} given for a 0-d array; use axis=None")
    return N.cumsum(x, axis=A.axis_of("cumsum", axis, len(shape)))


def var(x: Any, axis: Any = None, ddof: int = 0, keepdims: bool = False) -> Any:
    """Variance over ``axis``, as :func:`numpy.var`: the mean squared
    deviation from the mean, divided by ``N - ddof`` instead of ``N``.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> float(lagrad.var(np.array([1.0, 2.0, 3.0, 4.0])))
    1.25
    """
    shape = _shape_of(x)
    axes = _op_axes("var", x, axis)
    count = math.prod(shape) if axes is None else math.prod(shape[a] for a in axes)
    if not A.is_int(ddof) or count - ddof <= 0:
        raise ProgramError(f"var: ddof={ddof!r} with {count} entries per slice of shape "
                           f"{shape}; ddof must be an int below the number of entries")
    deviation = P.sub(x, mean(x, axis=axes, keepdims=True))
    return P.mul(sum(N.square(deviation), axis=axes, keepdims=keepdims), 1.0 / (count - ddof))


def std(x: Any, axis: Any = None, ddof: int = 0, keepdims: bool = False) -> Any:
    """Standard deviation, ``sqrt(var(x, axis, ddof, keepdims))``, as
    :func:`numpy.std` (its derivative is infinite where the variance is 0)."""
    try:
        return sqrt(var(x, axis=axis, ddof=ddof, keepdims=keepdims))
    except ProgramError as err:
        raise ProgramError(str(err).replace("var:", "std:", 1)) from None


def einsum(subscripts: str, *operands: Any, optimize: Any = False) -> Any:
    """Einstein summation, as :func:`numpy.einsum`, with explicit labels.

    Any number of operands; ``"ij,jk->ik"`` or the implicit ``"ij,jk"``; a
    label repeated within one operand (``"ii->"``, ``"ii->i"``) reads its
    diagonal. Not supported (raise :class:`lagrad.ProgramError`): ``...``
    and size-1 axes broadcast against longer ones. ``optimize`` is accepted
    and ignored.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> a, b = np.arange(6.0).reshape(2, 3), np.ones((3, 2))
    >>> lagrad.einsum("ij,jk->ik", a, b)
    array([[ 3.,  3.],
           [12., 12.]])
    >>> lagrad.grad(lambda a: lagrad.einsum("ij,ij->", a, a))(a)  # 2 a
    array([[ 0.,  2.,  4.],
           [ 6.,  8., 10.]])
    """
    if not isinstance(subscripts, str):
        raise ProgramError("einsum: give the subscripts as a string ('ij,jk->ik'); the "
                           "interleaved form einsum(a, [0, 1], b, [1, 2]) is not supported")
    if not operands:
        raise ProgramError("einsum needs at least one operand")
    text, operands = _diagonals(subscripts, list(operands))
    try:
        spec = N.parse_einsum(text, [_shape_of(a) for a in operands])
    except ValueError as err:
        raise ProgramError(f"einsum({subscripts!r}): {err}") from None
    return N.einsum(*operands, subscripts=spec)


def _diagonals(subscripts: str, operands: list[Any]) -> tuple[str, list[Any]]:
    """The subscripts in explicit form with each operand whose term repeats a
    label replaced by its diagonal on those axes (one axis, put last), as
    numpy reads a repeated label; unchanged when no term repeats one (or the
    terms do not fit the operands: :func:`parse_einsum` says how)."""
    text = subscripts.replace(" ", "")
    ins_text, arrow, out = text.partition("->")
    ins = ins_text.split(",")
    if "." in text or len(ins) != len(operands) or \
            builtins.all(len(set(t)) == len(t) for t in ins) or \
            builtins.any(len(t) != len(_shape_of(a)) for t, a in zip(ins, operands)):
        return subscripts, operands
    if not arrow:  # implicit: the labels that appear once, alphabetically
        out = "".join(sorted(c for c in set(ins_text) if ins_text.count(c) == 1 and c != ","))
    for k, (term, a) in enumerate(zip(ins, operands)):
        while len(set(term)) != len(term):
            c = next(c for c in term if term.count(c) > 1)
            i = term.index(c)
            j = term.index(c, i + 1)
            if _shape_of(a)[i] != _shape_of(a)[j]:
                raise ProgramError(f"einsum({subscripts!r}): label {c!r} repeats on axes of "
                                   f"sizes {_shape_of(a)[i]} and {_shape_of(a)[j]}")
            a = A.diagonal(a, 0, i, j)
            term = term[:i] + term[i + 1:j] + term[j + 1:] + c
        ins[k], operands[k] = term, a
    return ",".join(ins) + "->" + out, operands


def outer(a: Any, b: Any) -> Any:
    """Outer product of the flattened ``a`` and ``b``, as :func:`numpy.outer`."""
    na, nb = math.prod(_shape_of(a)), math.prod(_shape_of(b))
    return P.mul(reshape(a, (na, 1)), reshape(b, (1, nb)))


def tensordot(a: Any, b: Any, axes: Any = 2) -> Any:
    """Sum of products over the given axes, as :func:`numpy.tensordot`
    (an int n: the last n axes of ``a`` with the first n of ``b``).

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> lagrad.tensordot(np.ones((2, 3)), np.ones((3, 4)), axes=1).shape
    (2, 4)
    """
    sa, sb = _shape_of(a), _shape_of(b)
    try:
        if A.is_int(axes):
            if not 0 <= axes <= builtins.min(len(sa), len(sb)):
                raise ProgramError(f"axes={axes} for operands of shapes {sa} and {sb}")
            pairs_a, pairs_b = list(range(len(sa) - axes, len(sa))), list(range(axes))
        else:
            pairs_a, pairs_b = ([A.axis_of("tensordot", i, len(s))
                                 for i in ([p] if A.is_int(p) else p)]
                                for p, s in zip(axes, (sa, sb)))
    except (ProgramError, TypeError, ValueError) as err:
        raise ProgramError(f"tensordot: axes={axes!r} do not name axes of shapes {sa} and "
                           f"{sb}: {err}") from None
    if len(pairs_a) != len(pairs_b):
        raise ProgramError(f"tensordot: axes={axes!r} pair {len(pairs_a)} axes of a with "
                           f"{len(pairs_b)} of b")
    letters = iter("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    la = [next(letters) for _ in sa]
    lb = [next(letters) for _ in sb]
    for i, j in zip(pairs_a, pairs_b):
        lb[j] = la[i]
    out = [c for i, c in enumerate(la) if i not in pairs_a] + \
        [c for j, c in enumerate(lb) if j not in pairs_b]
    try:
        spec = N.parse_einsum(f"{''.join(la)},{''.join(lb)}->{''.join(out)}", [sa, sb])
    except ValueError as err:
        raise ProgramError(f"tensordot: shapes {sa} and {sb} do not match on axes={axes!r} "
                           f"({err})") from None
    return N.einsum(a, b, subscripts=spec)


def clip(x: Any, a_min: Any = None, a_max: Any = None) -> Any:
    """``x`` limited to [a_min, a_max], as :func:`numpy.clip` (None: no bound).

    Written as ``minimum(maximum(x, a_min), a_max)``, as ``jax.numpy.clip``:
    at a bound the derivative is split in halves between ``x`` and the bound.
    """
    out = x
    if a_min is not None:
        out = P.maximum(out, a_min)
    if a_max is not None:
        out = P.minimum(out, a_max)
    return P.identity(out) if out is x else out
