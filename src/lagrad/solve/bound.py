"""A cyclic block's steps bound to the vectors of one solve.

An iterative block solve runs the same steps, on the same flat vectors, once
per iteration: the forward map G (every equation of the block) and, in the
adjoint, the VJP sweep through it. :meth:`Single.run` and
:meth:`Single.pullback` rebuild their argument views from the flat vector at
each call; on a DEQ layer of width 1000, whose iteration is one product with
W (about 0.1 ms), that bookkeeping is a further 15-30 us per iteration. Here
the views are made once per solve and each step becomes one call with its
arguments bound. The vectors must not be reallocated while the bound calls
are in use (they never are within one block solve).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.compile.schedule import Single
from lagrad.ir.accumulate import matmul_vjp_bound
from lagrad.ir.elementwise import _identity_value

__all__ = ["bind_runs", "bind_pullbacks", "run_all", "Sharing", "uncovered"]

Array = NDArray[np.float64]
Call = Callable[[], Any]


Borrowed = Mapping[tuple[int, int], Array]  # input spans of z -> the caller's flat arrays


def _views(step: Single, z: Array, slots: Sequence[tuple[int, int, int, tuple[int, ...]]],
           borrowed: Borrowed | None = None) -> list[Any]:
    args = list(step.template)
    for pos, a, b, shape in slots:
        x = borrowed.get((a, b)) if borrowed else None
        args[pos] = (z[a:b] if x is None else x).reshape(shape)
    return args


def bind_runs(steps: Sequence[Single], z: Array, out: Array | None = None,
              borrowed: Borrowed | None = None) -> list[Call]:
    """One call per step writing f_i(z) into ``out`` (default z), as
    :meth:`Single.run` does; an input in ``borrowed`` (see
    :mod:`lagrad.solve.borrow`) is read from the caller's array."""
    calls: list[Call] = []
    for step in steps:
        target = (z if out is None else out)[step.start:step.stop].reshape(step.shape)
        if step.ufunc:  # straight into place, arguments bound
            calls.append(partial(step.eq.primitive.value,
                                 *_views(step, z, step.vslots, borrowed), out=target))
        elif step.eq.primitive.value is _identity_value and len(step.template) == 1:
            # a copy (a block's closing equation z = t): one C call, no temporary
            calls.append(partial(np.copyto, target,
                                 *_views(step, z, step.vslots, borrowed)))
        else:  # arguments bound too: no gather per call
            calls.append(partial(_run_into, step, _views(step, z, step.vslots, borrowed),
                                 target))
    return calls


def _run_into(step: Single, args: list[Any], target: Array) -> None:
    val = step.eq.primitive.value(*args, **step.eq.params)
    if isinstance(val, np.ndarray) and val.shape != target.shape and val.size == target.size:
        val = val.reshape(target.shape)  # (as Single.run's ravel; a scalar broadcasts)
    target[...] = val


def bind_pullbacks(steps: Sequence[Single], z: Array, lam: Array,
                   into: Array | None = None, borrowed: Borrowed | None = None,
                   skip: frozenset[tuple[int, int]] = frozenset(),
                   written: set[tuple[int, int]] | None = None,
                   sharing: Sharing | None = None) -> list[Call]:
    """One call per differentiated argument of each step, adding lambda_i
    df_i/dz_j into ``into`` (default lam), as :meth:`Single.pullback` does;
    an input in ``borrowed`` is read from the caller's array. Arguments whose
    span of z is in ``skip`` get no call. With ``written`` (the spans of
    ``into`` already written by earlier calls of the same sweep), the first
    call into any other span writes it instead of adding (nothing of it is
    read, so it need not be cleared) and adds the span to ``written``. With
    ``sharing`` too, a multiplier that is passed on unchanged (a copy or an
    addition, its only contribution) gets no call: it is read where it lives.

    z must keep its values while the calls are in use (a linear solve at one
    solution): an elementwise step's partials are then computed here, once,
    and its call is one or two numpy calls; a step whose partial is 1 (an
    addition, a copy) adds (or copies) lambda_i straight in."""
    into = lam if into is None else into
    calls: list[Call] = []
    for step in steps:
        if not step.dslots:
            continue
        eq = step.eq
        g = lam[step.start:step.stop].reshape(step.shape)
        if sharing is not None and lam is into:
            g = sharing.views.get((step.start, step.stop), g).reshape(step.shape)
        ans = z[step.start:step.stop].reshape(step.shape)
        args = _views(step, z, step.vslots, borrowed)
        for pos, a, b, shape in step.dslots:
            if (a, b) in skip:
                continue
            target = into[a:b].reshape(shape)
            first = False
            if written is not None and (a, b) not in written:
                first = True
                written.add((a, b))
                if sharing is not None and sharing.share(step, pos, (a, b), g, target, lam):
                    continue
            rule = eq.primitive.pullback_set if first else eq.primitive.pullback_add
            direct = matmul_vjp_bound(pos, target, g, *args, beta=0.0) \
                if first and eq.primitive.value is np.matmul and not eq.params and \
                len(args) == 2 else None
            calls.append(direct or _linear_pullback(step, pos, target, g, ans, args, first) or
                         partial(rule, pos, target, g, ans, args, eq.params))
    return calls


class Sharing:
    """Multipliers read where they live instead of copied (a sweep of
    :func:`bind_pullbacks` with ``written``): lambda_j = lambda_i when the
    step i -> j has partial 1 and is j's only contribution; then the calls
    after it read lambda_j from lambda_i's place. ``single``: the spans that
    may be shared, those with exactly one contribution in the sweep and not
    read by the caller afterwards (the unknowns' multipliers are). A shared
    span is never written, and its source is complete before its step runs
    (the sweep is in reverse order), so reading it there is exact; each
    source is shared by one span at most, to keep that argument simple."""

    def __init__(self, single: frozenset[tuple[int, int]]) -> None:
        self.single = single
        self.views: dict[tuple[int, int], Array] = {}  # span -> where its values live
        self.sources: set[tuple[int, int, int]] = set()

    def share(self, step: Single, pos: int, span: tuple[int, int], g: Array, target: Array,
              lam: Array) -> bool:
        """Record ``span`` as read from ``g`` when it may be (True: no call)."""
        prim = step.eq.primitive
        source = (id(lam), step.start, step.stop)
        if span not in self.single or source in self.sources or prim.vjp_add is not None \
                or prim.constant_partials is None or prim.constant_partials[pos] != 1.0 \
                or target.shape != g.shape:
            return False
        self.sources.add(source)
        self.views[span] = g
        return True


def _linear_pullback(step: Single, pos: int, out: Array, g: Array, ans: Array,
                     args: list[Any], first: bool = False) -> Call | None:
    """``out += g * df/d arg_pos`` (``first``: ``out =``) with that partial
    fixed (z is), for a step with constant or elementwise partials and no
    broadcasting; None otherwise (a structural rule, such as a matrix
    product's, or a reduction)."""
    prim = step.eq.primitive
    if prim.vjp_add is not None or out.shape != g.shape or not out.flags.writeable:
        return None
    if prim.constant_partials is not None:
        if prim.constant_partials[pos] != 1.0:
            return None
        return partial(np.copyto, out, g) if first else partial(np.add, out, g, out=out)
    if prim.partials is None:
        return None
    d = np.asarray(prim.partials(pos, ans, *args, **step.eq.params), dtype=float)
    if d.shape != g.shape and np.broadcast_shapes(d.shape, g.shape) != g.shape:
        return None  # (the test of equal shapes first: broadcast_shapes costs 3 us)
    if first:
        return partial(np.multiply, g, d, out=out)
    return partial(_add_product, out, g, d, np.empty(g.shape))


def _add_product(out: Array, g: Array, d: Array, scratch: Array) -> None:
    np.multiply(g, d, out=scratch)
    np.add(out, scratch, out=out)


def run_all(calls: Sequence[Call]) -> None:
    """Make every bound call, in order."""
    for call in calls:
        call()


def uncovered(runs: Any, spans: set[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``runs`` ((start, stop) pairs) outside every span of ``spans``."""
    out: list[tuple[int, int]] = []
    cuts = sorted(spans)
    for a, b in runs:
        for c, d in cuts:
            if d <= a or c >= b:
                continue
            if c > a:
                out.append((a, c))
            a = max(a, d)
        if a < b:
            out.append((a, b))
    return out
