"""A few primitives written out in the generated code (lagrad.solve.codegen)
as the numpy calls their rules make, instead of a call of the rule.

A rule such as logsumexp's value goes through a dozen Python-level calls
(``np.max``'s dispatch, an errstate, a reshape of its shape rule) around a
handful of ufunc calls on a batch of logits; for small arrays the calls cost
more than the arithmetic. Here the same ufunc calls, in the same order on the
same operands, are emitted straight into the generated source, the output
written in place: the results are the rules' bit for bit (the generated code
is checked against the flat plan when it is made, which would reject it
otherwise).

Written out:

* a sum's value (over axes), reduced straight into its slice of z;
* logsumexp's value: $m = \\max x$ (over the axes; 0 where not finite), then
  $\\log \\sum \\exp(x - m) + m$, into the output's slice of z;
* logsumexp's cotangent, $g \\exp(x - \\mathrm{lse})$ (the softmax weights);
* the cotangent of an argument broadcast by a sum (a bias added to a batch):
  $g$ (or $c g$) summed over the broadcast axes, written straight into the
  argument's multiplier;
* the cotangent of tanh, sigmoid, sin or cos written first into its argument's
  multiplier, its partial made in that array ($1 - y^2$, $(1 - y) y$,
  $\\cos x$, $-\\sin x$) and then scaled by $g$ there: the rule's
  ``g * partial`` makes two or three temporaries the size of the batch and
  passes over them once more (an MLP's gradient is a few percent faster:
  ``benchmarks/bench_mlp_parts.py`` times both ways; where the heap gives
  such a temporary back to the system each time, its pages are faulted in
  again at every call);
* a factor's cotangent of a product of matrices, $g b^T$ or $a^T g$, by the
  BLAS call :func:`lagrad.ir.accumulate.matmul_vjp_add` makes for them (its
  checks of the operands' layout are made once, here: the generated code's
  operands are views of z and of the multipliers, the caller's C-ordered
  float64 arrays, and the program's frozen constants).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from scipy.linalg import blas

from lagrad.compile.schedule import Single
from lagrad.ir import elementwise
from lagrad.ir.structural import logsumexp, matmul, reduced_shape, sum_

__all__ = ["NAMES", "forward_step", "reverse_step"]

NAMES = {"maxreduce": np.maximum.reduce, "sumreduce": np.add.reduce, "where": np.where,
         "npfinite": np.isfinite, "exp": np.exp, "log": np.log, "dgemm": blas.dgemm}
"""The numpy functions the emitted lines call, by the names they use."""


class Source(Protocol):
    """What the emitters need of the generated module's source."""

    def name(self, obj: Any, prefix: str) -> str: ...

    def emit(self, line: str) -> None: ...

    @property
    def names(self) -> dict[str, Any]: ...


def _lse_axes(step: Single) -> tuple[tuple[int, ...] | None, tuple[int, ...]] | None:
    """logsumexp's axes and its keepdims shape, when written out here: one
    variable argument of at least one entry."""
    if step.eq.primitive is not logsumexp or len(step.vslots) != 1 or len(step.template) != 1:
        return None
    shape = step.vslots[0][3]
    if not int(np.prod(shape)):
        return None
    axis = step.eq.params.get("axis")
    return (None if axis is None else tuple(axis)), reduced_shape(shape, axis=axis,
                                                                    keepdims=True)


def forward_step(src: Source, step: Single, args: list[str], out: str) -> bool:
    """Emit the step's value into ``out`` (the name of its view of z, of its
    shape) if it is written out here; whether it was."""
    eq = step.eq
    if eq.primitive is sum_ and len(step.vslots) == 1 and len(step.template) == 1:
        axis = eq.params.get("axis")
        axis = None if axis is None else tuple(axis)
        src.emit(f"sumreduce({args[0]}, axis={axis}, keepdims={bool(eq.params.get('keepdims'))},"
                 f" out={out})")
        return True
    found = _lse_axes(step)
    if found is None:
        return False
    axis, kshape = found
    x = args[0]
    outk = out if tuple(kshape) == tuple(step.shape) else f"{out}.reshape({kshape})"
    src.emit(f"t = maxreduce({x}, axis={axis}, keepdims=True)")
    src.emit("t = where(npfinite(t), t, 0.0)")
    src.emit(f"add(log(sumreduce(exp({x} - t), axis={axis}, keepdims=True)), t, out={outk})")
    return True


def reverse_step(src: Source, step: Single, pos: int, o: str, shape: tuple[int, ...], g: str,
                 names: tuple[str, list[str]], first: bool) -> bool:
    """Emit the cotangent of argument ``pos`` written (``first``) or added
    into ``o`` (of ``shape``) if it is written out here; whether it was.
    ``names``: the step's output and arguments in z (names of views)."""
    ans, args = names
    if _product(src, step, pos, o, g, args, first):
        return True
    if first and _partial_in_place(src, step, o, g, ans, args):
        return True
    found = _lse_axes(step)
    if found is not None:
        kshape = found[1]
        same = tuple(kshape) == tuple(step.shape)
        gk, ansk = (g, ans) if same else (f"{g}.reshape({kshape})", f"{ans}.reshape({kshape})")
        term = f"{gk} * exp({args[0]} - {ansk})"
        src.emit(f"multiply({gk}, exp({args[0]} - {ansk}), out={o})" if first else
                 f"add({o}, {term}, out={o})")
        return True
    prim = step.eq.primitive
    c = prim.constant_partials
    if c is None or prim.vjp_set is not None or prim.vjp_add is not None or \
            tuple(shape) == tuple(step.shape):
        return False
    lead = len(step.shape) - len(shape)
    if lead < 0:
        return False
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape)
                                      if n == 1 and step.shape[lead + i] != 1)
    scaled = g if c[pos] == 1.0 else f"{src.name(c[pos], 'k')} * {g}"
    rshape = tuple(n for i, n in enumerate(step.shape) if i not in axes)
    if first:
        src.emit(f"sumreduce({scaled}, axis={axes}, out={o}.reshape({rshape}))")
    else:
        src.emit(f"add({o}, sumreduce({scaled}, axis={axes}).reshape({shape}), out={o})")
    return True


def _product(src: Source, step: Single, pos: int, o: str, g: str, args: list[str],
             first: bool) -> bool:
    """Emit matmul_vjp_add's general branch (both factors matrices, the
    product of more than one row and column): ``o`` (+)= g b^T or a^T g by
    one dgemm into ``o``'s transpose (Fortran order: no copy); whether it
    was emitted. A constant factor must be a C-ordered float64 matrix."""
    if step.eq.primitive is not matmul or len(step.template) != 2 or step.eq.params:
        return False
    shapes = [np.shape(x) for x in step.template]
    for p, _, _, shape in step.vslots:
        shapes[p] = shape
    for x in step.template:
        if x is not None and not (type(x) is np.ndarray and x.dtype == np.float64
                                  and x.flags.c_contiguous and not x.flags.writeable):
            return False
    if not all(len(s) == 2 and min(s) > 0 for s in shapes):
        return False
    m, n = shapes[0][0], shapes[1][1]
    if m == 1 or n == 1:
        return False
    beta = 0.0 if first else 1.0
    a, b = args
    if pos == 0:  # (l, m) (+)= b (l, n) @ g^T (n, m)
        src.emit(f"t = {o}.reshape({m}, -1).T")
        src.emit(f"r = dgemm(1.0, {b}.T, {g}.T, beta={beta}, c=t, trans_a=1, overwrite_c=1)")
    else:  # (n, l) (+)= g^T (n, m) @ a (m, l)
        src.emit(f"t = {o}.reshape(-1, {n}).T")
        src.emit(f"r = dgemm(1.0, {g}.T, {a}.T, beta={beta}, c=t, trans_b=1, overwrite_c=1)")
    src.emit("if r is not t:")  # (f2py worked on a copy: never for these layouts)
    src.emit("    t[...] = r")
    return True


PARTIALS_IN_PLACE = elementwise.PARTIALS_INTO
"""The functions that write a primitive's partial into ``o`` (see
:data:`lagrad.ir.elementwise.PARTIALS_INTO`, this very table): the product
with ``g`` that follows gives the rule's cotangent bit for bit."""


def _partial_in_place(src: Source, step: Single, o: str, g: str, ans: str,
                      args: list[str]) -> bool:
    """Emit the cotangent of a primitive of :data:`PARTIALS_IN_PLACE`,
    written first into ``o``, its partial made in ``o`` (see the module
    notes); whether it was. Only when ``o`` cannot share memory with ``g``:
    a fresh local array, or a bound view of other entries."""
    prim = step.eq.primitive
    write = PARTIALS_IN_PLACE.get(id(prim))
    if write is None or step.eq.params or len(args) != 1 or len(step.vslots) != 1 \
            or tuple(step.vslots[0][3]) != tuple(step.shape):
        return False
    names = src.names
    if g not in names or (o in names and np.shares_memory(names[o], names[g])):
        return False
    src.emit(f"{src.name(write, 'I')}({o}, {ans}, {args[0]})")
    src.emit(f"multiply({o}, {g}, out={o})")
    return True
