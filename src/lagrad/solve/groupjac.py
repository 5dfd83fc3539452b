"""The Jacobian of a group's map G in one sweep with all its seeds.

dG/dU of a group of same-structure blocks (solve/grouped.py) has, per
element, the n_U x n_U diagonal block D_k and the coupling columns (an
element reading the unknowns of an earlier one). Both come from one forward
sweep over the element's equations carrying every seed at once: the n_U unit
seeds of the element's own unknowns and one per column of each cross read.
A tangent is stored with the seeds on a trailing axis, (B, *shape, m); its
variable's entries are flattened in C order, as the group's values and z
are (an F-order reshape, once used here to keep B contiguous, transposed the
entries of every unknown or result of two or more dimensions), and it is kept
only for the seeds that can reach it (an equation reached by three of eight
seeds computes three columns), so the sweep costs a few numpy calls per
equation whatever B and the number of seeds are:

* an elementwise primitive multiplies its partials (computed once per
  evaluation of G) by the tangents of all seeds;
* a matrix product is one ``einsum`` with the seeds as an extra axis;
* sum, reshape and getitem act on the leading axes and keep the seeds';
* any other primitive runs its batch rule once per seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.ir.batching import GETITEM, MATMUL, RESHAPE, SUM, align
from lagrad.numeric import broadcast
from lagrad.solve.chain import Coupling, as_index

__all__ = ["group_jacobian", "seeded_jvp"]

Array = NDArray[np.float64]
Live = tuple[int, int]  # the range of seeds a tangent carries


def seeded_jvp(prim: Any, a: int, t: Array, ans: Array, args: list[Array],
               params: dict[str, Any], partial: Any = None) -> Array:
    """Output tangents (B, *out, m) of a batched equation for the tangents
    ``t`` (B, *shape_a, m) of its argument ``a``; ``partial`` is the
    elementwise partial when already computed."""
    m = t.shape[-1]
    out_shape = ans.shape + (m,)
    if prim.batch is None and prim.partials is not None:
        rank = ans.ndim - 1
        arg_rank = t.ndim - 2
        t_al = t.reshape((t.shape[0],) + (1,) * (rank - arg_rank) + t.shape[1:], order="F")
        if prim.constant_partials is not None:
            c = prim.constant_partials[a]
            out = t_al if c == 1.0 else c * t_al
        else:
            d = partial if partial is not None else prim.partials(
                a, ans, *(align(x, rank) for x in args), **params)
            out = np.asarray(d)[..., None] * t_al
        return broadcast(out, out_shape)
    if prim.batch is MATMUL:
        return _matmul(a, t, args[0], args[1])
    if prim.batch is SUM:
        axes = _inner_axes(t.ndim - 1, params["axis"])
        return np.sum(t, axis=axes, keepdims=params["keepdims"])
    if prim.batch is RESHAPE:
        return np.reshape(t, ans.shape + (m,))
    if prim.batch is GETITEM:
        index = params["index"]
        return t[(slice(None),) + (index if isinstance(index, tuple) else (index,))]
    cols = [np.reshape(prim.batched_jvp(a, t[..., s], ans, args, params), ans.shape)
            for s in range(m)]
    return np.stack(cols, axis=-1)


def _inner_axes(ndim: int, axis: Any) -> tuple[int, ...]:
    """The axes a batched sum over ``axis`` reduces, for ``ndim`` axes
    (batch included; the seeds' trailing axis is not counted)."""
    if axis is None:
        return tuple(range(1, ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return tuple(1 + (int(i) % (ndim - 1)) for i in axes)


def _matmul(k: int, t: Array, a: Array, b: Array) -> Array:
    """(a @ b)' for the seeded tangent t of a (k = 0) or b (k = 1)."""
    a2 = a if a.ndim == 3 else a[:, None, :]
    b2 = b if b.ndim == 3 else b[:, :, None]
    if k == 1 and b.ndim == 2 and _unit_seeds(t):  # A times the unit seeds: A
        return a2 if a.ndim == 3 else a2[:, 0]
    if k == 0:
        t2 = t if a.ndim == 3 else t[:, None]
        out = np.einsum("brpm,bpq->brqm", t2, b2)
    else:
        t2 = t if b.ndim == 3 else t[:, :, None]
        out = np.einsum("brp,bpqm->brqm", a2, t2)
    if b.ndim == 2:
        out = out[:, :, 0]
    if a.ndim == 2:
        out = out[:, 0]
    return out


def _unit_seeds(t: Array) -> bool:
    """``t`` (B, p, p) is the same identity for every element (a vector's own seeds)."""
    return t.ndim == 3 and t.strides[0] == 0 and t.shape[1] == t.shape[2] \
        and np.array_equal(t[0], np.eye(t.shape[1]))


def _merge(parts: list[tuple[Array, Live]], shape: tuple[int, ...]) -> tuple[Array, Live]:
    """The sum of tangents carrying different seeds, over the hull of their
    seed ranges (a seed in the hull that none carries is a zero column)."""
    if len(parts) == 1:
        return parts[0]
    lo, hi = min(p[1][0] for p in parts), max(p[1][1] for p in parts)
    total = np.empty(shape + (hi - lo,), order="F")
    covered = np.zeros(hi - lo, dtype=bool)
    for value, (a, b) in sorted(parts, key=lambda p: p[1]):
        span = slice(a - lo, b - lo)
        seen = covered[span]
        if not seen.any():  # the first to carry these seeds: a copy, not a zero fill and a sum
            total[..., span] = value
        else:  # (partly) carried before: the seeds new here start from zero
            if not seen.all():
                total[..., span][..., ~seen] = 0.0
            total[..., span] += value
        covered[span] = True
    if not covered.all():
        total[..., ~covered] = 0.0
    return total, (lo, hi)


def group_jacobian(gm: Any, n: int | None = None) -> tuple[Array, list[Coupling]]:
    """D (B, n, n) and C's columns of a GroupMap after a call (at its current
    values), from one seeded sweep; over U's first ``n`` columns (the group's
    core, groupcarry: the steps it does not need are skipped), all by default."""
    group, b = gm.group, gm.b
    n_w, n_u = group.n_w, group.n_u if n is None else n
    needed = None if n_u == group.n_u else gm.core.needed
    seeds: dict[int, tuple[Array, Live]] = {}  # local slot start -> tangent
    for p, step in enumerate(group.steps):  # the unknowns' own unit seeds
        if needed is not None and not needed[p]:
            continue
        for arg in step.args:
            if arg[0] == "local" and n_w <= arg[1].start < n_w + n_u \
                    and arg[1].start not in seeds:
                s = arg[1]
                size = s.stop - s.start
                seeds[s.start] = (np.broadcast_to(np.eye(size), (b, size, size)),
                                  (s.start - n_w, s.stop - n_w))
    cross_seed: dict[tuple[int, int], tuple[int, Any]] = {}
    m = n_u
    for p, step in enumerate(group.steps):
        if needed is not None and not needed[p]:
            continue
        for a, arg in enumerate(step.args):
            if arg[0] == "outer" and arg[3] is not None:
                cross_seed[(p, a)] = (m, arg[3])
                m += arg[3].u.stop - arg[3].u.start
    jac = np.zeros((b, n_u, m), order="F")
    for p, step in enumerate(group.steps):
        if needed is not None and not needed[p]:
            continue
        parts = []
        for a, arg in enumerate(step.args):
            t = _tangent(seeds, cross_seed, p, a, arg, b, group.cache)
            if t is None:
                continue
            partial = gm.partials.get((p, a))
            value = seeded_jvp(step.primitive, a, t[0], gm.ans[p], gm.args[p], step.params,
                               partial)
            width = t[1][1] - t[1][0]
            parts.append((value.reshape((b, -1, width)), t[1]))
        if not parts:
            continue
        size = step.out.stop - step.out.start
        value, (lo, hi) = _merge(parts, (b, size))
        if step.closing:
            jac[:, step.out.start:step.out.stop, lo:hi] += value
        else:
            seeds[step.out.start] = (value, (lo, hi))
    d = jac[:, :, :n_u]  # a view (B, n, n), Fortran-ordered
    coupling = []
    for (p, a), (first, cross) in cross_seed.items():
        k = np.flatnonzero(cross.mask)
        rows = as_index(k)
        for c in range(cross.u.stop - cross.u.start):
            col = jac[rows, :, first + c]
            coupling.append(Coupling(k, cross.source[k], cross.u.start + c, col, (p, a, c)))
    return d, coupling


def _tangent(seeds: dict[int, tuple[Array, Live]], cross_seed: dict[tuple[int, int], Any],
             p: int, a: int, arg: tuple[Any, ...], b: int, cache: dict[Any, Any]
             ) -> tuple[Array, Live] | None:
    """The seeded tangent of argument ``a`` of step ``p`` (None: zero); the
    cross reads' seeds are kept in ``cache`` (the group's)."""
    if arg[0] == "local":
        found = seeds.get(arg[1].start)
        if found is None:
            return None
        value, live = found
        return value.reshape((b,) + arg[2] + (live[1] - live[0],)), live
    if arg[0] != "outer" or (p, a) not in cross_seed:
        return None
    first, cross = cross_seed[(p, a)]
    width = cross.u.stop - cross.u.start
    key = ("cross seed", p, a)
    t = cache.get(key)
    if t is None:  # the same at every call: unit seeds where the read is inside
        t = np.zeros((b, width, width), order="F")
        t[cross.mask] = np.eye(width)
        t.flags.writeable = False
        cache[key] = t
    return t.reshape((b,) + arg[2] + (width,)), (first, first + width)
