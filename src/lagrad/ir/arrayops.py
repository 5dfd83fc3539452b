"""numpy's array manipulation on traced values: flip, roll, take, diagonal,
trace, triu / tril, diff, repeat, tile, split, pad, kron, cross, squeeze,
expand_dims, broadcast_to, swapaxes and moveaxis.

Each is written with indexing (constant index arrays), reshapes, transposes,
``where`` with a constant mask and the arithmetic primitives, so it needs no
derivative rule of its own: a gather's derivative is a scatter-add, which
sums the contributions of an entry read more than once (``repeat``,
``tile``, ``take`` with repeated indices). Every index depends on shapes
only, never on values, so a traced program stays right at any later input.
On plain arrays they compute, as numpy's functions do.

>>> import numpy as np, lagrad
>>> lagrad.grad(lambda x: np.sum(np.roll(x, 1) * np.arange(3.0)))(np.ones(3))
array([1., 2., 0.])
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from lagrad.errors import ProgramError
from lagrad.ir import primitives as P

__all__ = ["flip", "roll", "take", "diagonal", "trace", "triu", "tril", "diff", "repeat",
           "tile", "split", "array_split", "pad", "kron", "cross", "squeeze", "expand_dims",
           "broadcast_to", "swapaxes", "moveaxis"]

Shape = tuple[int, ...]


def shape_of(x: Any) -> Shape:
    return x.shape if isinstance(x, P.Tracer) else np.shape(x)


def is_int(a: Any) -> bool:
    """An int or numpy integer, not a bool."""
    return isinstance(a, (int, np.integer)) and not isinstance(a, (bool, np.bool_))


def axis_of(name: str, axis: Any, ndim: int) -> int:
    """One axis in [-ndim, ndim) as a non-negative int."""
    if not is_int(axis):
        raise ProgramError(f"{name}: axis {axis!r} is not an axis; give an int")
    if not -ndim <= int(axis) < ndim:
        raise ProgramError(f"{name}: axis {axis} is out of bounds for an array of "
                           f"dimension {ndim}")
    return int(axis) % ndim


def axes_of(name: str, axis: Any, ndim: int) -> tuple[int, ...]:
    """``axis`` (an int or a sequence of ints) as distinct non-negative axes,
    in the order given."""
    if is_int(axis):
        return (axis_of(name, axis, ndim),)
    if not isinstance(axis, (tuple, list)):
        raise ProgramError(f"{name}: axis {axis!r} is not an axis; give an int or a tuple")
    out = tuple(axis_of(name, a, ndim) for a in axis)
    if len(set(out)) != len(out):
        raise ProgramError(f"{name}: repeated axis in {axis!r}")
    return out


def _reshape(x: Any, shape: Shape) -> Any:
    return P.reshape(x, shape=tuple(shape)) if tuple(shape) != shape_of(x) else x


def _transpose(x: Any, order: Sequence[int]) -> Any:
    return P.transpose(x, axes=tuple(order)) if list(order) != sorted(order) else x


def _along(x: Any, axis: int, index: Any) -> Any:
    """``x`` indexed by ``index`` (a slice, an int or a constant integer
    array) on one axis."""
    return P.getitem(x, index=(slice(None),) * axis + (index,))


def _flat(x: Any) -> Any:
    return _reshape(x, (math.prod(shape_of(x)),))


def moveaxis(a: Any, source: Any, destination: Any) -> Any:
    """Move axes to new positions, as :func:`numpy.moveaxis`."""
    ndim = len(shape_of(a))
    src, dst = axes_of("moveaxis", source, ndim), axes_of("moveaxis", destination, ndim)
    if len(src) != len(dst):
        raise ProgramError("moveaxis: source and destination must have the same number of "
                           f"axes, got {source!r} and {destination!r}")
    order = [n for n in range(ndim) if n not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return _transpose(a, tuple(order))


def swapaxes(a: Any, axis1: int, axis2: int) -> Any:
    """Interchange two axes, as :func:`numpy.swapaxes`."""
    ndim = len(shape_of(a))
    i, j = axis_of("swapaxes", axis1, ndim), axis_of("swapaxes", axis2, ndim)
    order = list(range(ndim))
    order[i], order[j] = j, i
    return _transpose(a, tuple(order))


def squeeze(a: Any, axis: Any = None) -> Any:
    """Remove axes of length one, as :func:`numpy.squeeze`."""
    shape = shape_of(a)
    drop = [n for n, s in enumerate(shape) if s == 1] if axis is None else \
        axes_of("squeeze", axis, len(shape))
    for n in drop:
        if shape[n] != 1:
            raise ProgramError(f"squeeze: axis {n} of shape {shape} has length {shape[n]}, "
                               "not one; only axes of length one can be removed")
    return _reshape(a, tuple(s for n, s in enumerate(shape) if n not in drop))


def expand_dims(a: Any, axis: Any) -> Any:
    """Insert axes of length one, as :func:`numpy.expand_dims`."""
    shape = shape_of(a)
    new = axes_of("expand_dims", axis, len(shape) + (1 if is_int(axis) else len(axis)))
    rest = iter(shape)
    return _reshape(a, tuple(1 if n in new else next(rest)
                                for n in range(len(shape) + len(new))))


def broadcast_to(array: Any, shape: Any) -> Any:
    """``array`` broadcast to ``shape``, as :func:`numpy.broadcast_to` (a new
    array, not a read-only view; the derivative sums over the copies)."""
    shape = (int(shape),) if is_int(shape) else tuple(int(s) for s in shape)
    old = shape_of(array)
    try:
        fits = np.broadcast_shapes(old, shape) == shape
    except ValueError:
        fits = False
    if not fits:
        raise ProgramError(f"broadcast_to: an array of shape {old} cannot be broadcast to "
                           f"{shape}")
    return P.mul(array, np.ones(shape))


def flip(m: Any, axis: Any = None) -> Any:
    """Reverse the order of entries along ``axis`` (None: every axis), as
    :func:`numpy.flip`."""
    ndim = len(shape_of(m))
    axes = range(ndim) if axis is None else axes_of("flip", axis, ndim)
    index = [slice(None)] * ndim
    for n in axes:
        index[n] = slice(None, None, -1)
    return P.getitem(m, index=tuple(index)) if ndim else P.identity(m)


def roll(a: Any, shift: Any, axis: Any = None) -> Any:
    """Shift entries cyclically along ``axis`` (None: the flattened array, then
    the shape back), as :func:`numpy.roll`: shifts and axes broadcast
    against each other, and shifts of one axis add up."""
    shape = shape_of(a)
    if axis is None:
        return _reshape(roll(_flat(a), shift, 0), shape)
    try:
        shifts, axes = np.broadcast_arrays(np.atleast_1d(shift), np.atleast_1d(axis))
    except ValueError:
        raise ProgramError(f"roll: {np.size(shift)} shifts do not pair with axes "
                           f"{axis!r}") from None
    if shifts.ndim != 1 or not np.issubdtype(shifts.dtype, np.integer):
        raise ProgramError(f"roll: shift {shift!r} must be an int or a sequence of ints")
    total: dict[int, int] = {}
    for n, s in zip(axes.tolist(), shifts.tolist()):
        n = axis_of("roll", n, len(shape))
        total[n] = total.get(n, 0) + s
    out = a
    for n, s in total.items():
        out = _along(out, n, (np.arange(shape[n]) - s) % builtins.max(shape[n], 1))
    return out if out is not a else P.identity(a)


def take(a: Any, indices: Any, axis: Any = None) -> Any:
    """Entries at constant ``indices`` along ``axis`` (None: of the flattened
    array), as :func:`numpy.take`; repeated indices add up in the derivative."""
    index = np.asarray(indices)
    if not np.issubdtype(index.dtype, np.integer):
        raise ProgramError(f"take: indices must be integers, got {index.dtype}")
    shape = shape_of(a)
    if axis is None:
        return P.getitem(_flat(a), index=index)
    return _along(a, axis_of("take", axis, len(shape)), index)


def diagonal(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
    """The diagonal at ``offset`` of the matrices on (axis1, axis2), put last,
    as :func:`numpy.diagonal`."""
    shape = shape_of(a)
    if len(shape) < 2:
        raise ProgramError(f"diagonal: needs at least two dimensions, got shape {shape}")
    i, j = axis_of("diagonal", axis1, len(shape)), axis_of("diagonal", axis2, len(shape))
    if i == j:
        raise ProgramError("diagonal: axis1 and axis2 cannot be the same")
    k = int(offset)
    length = builtins.max(0, builtins.min(shape[i] + builtins.min(k, 0),
                                          shape[j] - builtins.max(k, 0)))
    rows = np.arange(length) + builtins.max(-k, 0)
    cols = np.arange(length) + builtins.max(k, 0)
    front = moveaxis(a, (i, j), (0, 1))
    return moveaxis(P.getitem(front, index=(rows, cols)), 0, -1)


def trace(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
    """Sum of the diagonal at ``offset``, as :func:`numpy.trace`."""
    d = diagonal(a, offset, axis1, axis2)
    return P.sum_(d, axis=(len(shape_of(d)) - 1,), keepdims=False)


def _triangle(m: Any, keep: Any) -> Any:
    shape = shape_of(m)
    if len(shape) < 2:  # numpy's rule: a vector is every row of the matrix
        shape = keep.shape
    return P.where(m, 0.0, condition=np.broadcast_to(keep, shape))


def triu(m: Any, k: int = 0) -> Any:
    """The upper triangle from diagonal ``k`` on, zeros below (exact zeros,
    whatever is there), as :func:`numpy.triu` (a 1-D ``m`` is every row)."""
    return _triangle(m, np.triu(np.ones(_square(m), dtype=bool), int(k)))


def tril(m: Any, k: int = 0) -> Any:
    """The lower triangle up to diagonal ``k``, zeros above, as :func:`numpy.tril`
    (a 1-D ``m`` is every row)."""
    return _triangle(m, np.tril(np.ones(_square(m), dtype=bool), int(k)))


def _square(m: Any) -> tuple[int, int]:
    """The (rows, columns) of the matrices of ``m``; a vector of n is n x n."""
    shape = shape_of(m)
    if not shape:
        raise ProgramError("triu / tril: a zero-dimensional array has no triangle; give a "
                           "vector or matrices")
    return (shape[-2], shape[-1]) if len(shape) >= 2 else (shape[0], shape[0])


def diff(a: Any, n: int = 1, axis: int = -1) -> Any:
    """The ``n``-th difference along ``axis``, as :func:`numpy.diff`."""
    shape = shape_of(a)
    if not is_int(n) or n < 0:
        raise ProgramError(f"diff: order n={n!r} must be a non-negative int")
    ax = axis_of("diff", axis, len(shape))
    out = a
    for _ in range(n):
        out = P.sub(_along(out, ax, slice(1, None)), _along(out, ax, slice(None, -1)))
    return out if n else P.identity(a)


def repeat(a: Any, repeats: Any, axis: Any = None) -> Any:
    """Each entry repeated ``repeats`` times along ``axis`` (None: of the
    flattened array), as :func:`numpy.repeat`."""
    if axis is None:
        return repeat(_flat(a), repeats, 0)
    shape = shape_of(a)
    ax = axis_of("repeat", axis, len(shape))
    counts = np.asarray(repeats)
    if not np.issubdtype(counts.dtype, np.integer) or (counts < 0).any() or \
            counts.ndim > 1 or counts.size not in (1, shape[ax]):
        raise ProgramError(f"repeat: repeats must be one non-negative int or one per entry "
                           f"along the axis ({shape[ax]}), got {repeats!r}")
    return _along(a, ax, np.repeat(np.arange(shape[ax]), counts))


def tile(A: Any, reps: Any) -> Any:  # noqa: N803 (numpy's name)
    """``A`` repeated ``reps`` times along each axis, as :func:`numpy.tile`."""
    reps = (int(reps),) if is_int(reps) else tuple(int(r) for r in reps)
    if builtins.any(r < 0 for r in reps):
        raise ProgramError(f"tile: negative repetitions {reps}")
    shape = shape_of(A)
    ndim = builtins.max(len(shape), len(reps))
    shape = (1,) * (ndim - len(shape)) + shape
    reps = (1,) * (ndim - len(reps)) + reps
    out = _reshape(A, shape)
    for ax, (s, r) in enumerate(zip(shape, reps)):
        if r != 1:
            out = _along(out, ax, np.tile(np.arange(s), r))
    return out if out is not A else P.identity(A)


def array_split(ary: Any, indices_or_sections: Any, axis: int = 0) -> list[Any]:
    """Pieces along ``axis``, as :func:`numpy.array_split`: n pieces whose
    lengths differ by one at most, or pieces between sorted indices."""
    shape = shape_of(ary)
    ax = axis_of("array_split", axis, len(shape))
    length = shape[ax]
    if is_int(indices_or_sections):
        n = int(indices_or_sections)
        if n <= 0:
            raise ProgramError(f"array_split: the number of sections must be > 0, got {n}")
        sizes = [length // n + 1] * (length % n) + [length // n] * (n - length % n)
        cuts = np.cumsum([0] + sizes).tolist()
    else:
        cuts = [0] + [int(i) for i in indices_or_sections] + [length]
    return [_along(ary, ax, slice(a, b)) for a, b in zip(cuts[:-1], cuts[1:])]


def split(ary: Any, indices_or_sections: Any, axis: int = 0) -> list[Any]:
    """Pieces along ``axis``, as :func:`numpy.split`: n equal pieces, or
    pieces between sorted indices."""
    if is_int(indices_or_sections):
        length = shape_of(ary)[axis_of("split", axis, len(shape_of(ary)))]
        if indices_or_sections <= 0 or length % int(indices_or_sections):
            raise ProgramError(f"split: an axis of length {length} does not split into "
                               f"{indices_or_sections} equal pieces; use array_split")
    return array_split(ary, indices_or_sections, axis)


PAD_INDEX_MODES = ("edge", "reflect", "symmetric", "wrap")
"""np.pad's modes whose borders copy entries: written as one gather."""


def pad(array: Any, pad_width: Any, mode: str = "constant", **kwargs: Any) -> Any:
    """``array`` with borders, as :func:`numpy.pad` in mode "constant" (one
    ``constant_values`` for every border) or in a mode whose borders copy
    entries: "edge", "reflect", "symmetric", "wrap" (``reflect_type="even"``,
    numpy's default)."""
    shape = shape_of(array)
    try:
        widths = np.broadcast_to(np.asarray(pad_width, dtype=int), (len(shape), 2))
    except ValueError:
        raise ProgramError(f"pad: pad_width {pad_width!r} does not fit an array of "
                           f"{len(shape)} dimensions") from None
    if (widths < 0).any():
        raise ProgramError(f"pad: negative pad_width {pad_width!r}")
    if mode in PAD_INDEX_MODES:
        return _pad_by_index(array, shape, widths, mode, kwargs)
    if mode != "constant":
        raise ProgramError(f"pad: mode {mode!r} is not supported on traced values; give "
                           f"'constant' or one of {list(PAD_INDEX_MODES)}")
    constant_values = kwargs.pop("constant_values", 0)
    if kwargs:
        raise ProgramError(f"pad: mode 'constant' takes no {sorted(kwargs)}")
    if np.ndim(constant_values) != 0:
        raise ProgramError("pad: give one constant_values for every border")
    out, now = array, list(shape)
    for ax, (before, after) in enumerate(widths.tolist()):
        parts = []
        for width in (before, after):
            now_ax = now.copy()
            now_ax[ax] = width
            parts.append(np.full(now_ax, float(constant_values)))
        if before or after:
            out = P.concatenate(parts[0], out, parts[1], axis=ax)
            now[ax] += before + after
    return out if out is not array else P.identity(array)


def _pad_by_index(array: Any, shape: Shape, widths: Any, mode: str,
                  kwargs: dict[str, Any]) -> Any:
    """np.pad in an index mode as one gather: numpy pads the array of flat
    positions, so which entry each border copies is numpy's own choice; an
    entry copied several times gets each copy's derivative."""
    if kwargs.get("reflect_type", "even") != "even":  # 'odd' is not a copy: 2 edge - entry
        raise ProgramError(f"pad: mode {mode!r} on traced values takes only "
                           f"reflect_type='even', got {kwargs['reflect_type']!r}")
    try:  # (numpy checks the keywords each mode takes)
        index = np.pad(np.arange(math.prod(shape)).reshape(shape), widths, mode=mode, **kwargs)
    except ValueError as err:
        raise ProgramError(f"pad: {err}") from None
    if not widths.any():
        return P.identity(array)
    return P.getitem(_flat(array), index=index)


def kron(a: Any, b: Any) -> Any:
    """The Kronecker product, as :func:`numpy.kron`."""
    sa, sb = shape_of(a), shape_of(b)
    ndim = builtins.max(len(sa), len(sb))
    sa, sb = (1,) * (ndim - len(sa)) + sa, (1,) * (ndim - len(sb)) + sb
    spread_a = _reshape(a, tuple(n for s in sa for n in (s, 1)))
    spread_b = _reshape(b, tuple(n for s in sb for n in (1, s)))
    return _reshape(P.mul(spread_a, spread_b), tuple(x * y for x, y in zip(sa, sb)))


def cross(a: Any, b: Any, axis: int = -1) -> Any:
    """Cross product of 3-vectors along ``axis`` (the other axes broadcast),
    as :func:`numpy.cross` with ``axis``."""
    sa, sb = shape_of(a), shape_of(b)
    ia, ib = axis_of("cross", axis, len(sa)), axis_of("cross", axis, len(sb))
    if sa[ia] != 3 or sb[ib] != 3:
        raise ProgramError(f"cross: vectors of length 3 only along axis {axis}, got shapes "
                           f"{sa} and {sb}")
    u = [_along(a, ia, k) for k in range(3)]
    v = [_along(b, ib, k) for k in range(3)]
    parts = [P.sub(P.mul(u[(k + 1) % 3], v[(k + 2) % 3]), P.mul(u[(k + 2) % 3], v[(k + 1) % 3]))
             for k in range(3)]
    shape = shape_of(parts[0])
    out = P.concatenate(*(_reshape(p, shape + (1,)) for p in parts), axis=len(shape))
    return moveaxis(out, -1, axis_of("cross", axis, len(shape) + 1))
