"""A flat plan compiled into one generated Python function: the value and
the gradient of a small acyclic program in a handful of Python frames.

A :class:`~lagrad.solve.flatplan.FlatPlan` runs each step through
:class:`~lagrad.compile.schedule.Single` and each multiplier through
:meth:`Primitive.pullback_set <lagrad.ir.primitives.Primitive.pullback_set>`:
a dozen Python calls per equation, which is most of the time of a program of
a few small arrays (a 3-element function: ~50 us against ~4 us for the same
numpy calls written by hand). :func:`compile_gradient` writes the same sweep
as straight-line source, built once per program and run with ``exec``:

* the values and multipliers live in two vectors owned by the compiled
  function, so every view of them (each step's output, arguments, cotangent)
  is made once and bound as a name of the generated module;
* each step is its primitive's numpy call (into its view with ``out=`` for a
  ufunc), and each multiplier the branch of ``pullback_set`` /
  ``pullback_add`` that the shapes select, decided when the source is built;
* the finiteness of values and multipliers is checked once per vector.

The arithmetic is the flat plan's, operation for operation, so results are
its results to the last bit; :class:`CompiledGradient` is checked against it
once when made (see ``lagrad.api.fastpath``). A call returns None when a value
or multiplier is not finite, or when another thread is using the vectors: the
caller then takes the general path, which names the equation at fault.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.compile.schedule import Single
from lagrad.solve.flatplan import FlatPlan

__all__ = ["CompiledGradient", "compile_gradient", "MAX_STEPS"]

Array = NDArray[np.float64]
MAX_STEPS = 400
"""Programs of more steps are not compiled (the source grows with the steps,
and for them the per-step overhead is small against the arithmetic)."""


class _Source:
    """Generated lines and the objects they name."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {"add": np.add, "multiply": np.multiply, "copyto": np.copyto,
                                      "isfinite": math.isfinite, "reduce": np.add.reduce}
        self._ids: dict[int, str] = {}

    def name(self, obj: Any, prefix: str) -> str:
        """A name bound to ``obj`` in the generated module (one per object)."""
        key = id(obj)
        if key not in self._ids:
            self._ids[key] = f"{prefix}{len(self._ids)}"
            self.names[self._ids[key]] = obj
        return self._ids[key]

    def emit(self, line: str) -> None:
        self.lines.append("    " + line)


class CompiledGradient:
    """The value and gradient of a flat plan's program, by generated code.

    Calling it with one value per program input (arrays of the inputs'
    shapes, or floats for 0-d inputs) returns ``(value, gradients)``: the
    output (a numpy float64 scalar) and one copy per input of its multiplier
    (a numpy scalar for a 0-d input), as ``Solution.output`` and
    ``Index.take`` give them; or None (see the module notes).
    """

    def __init__(self, run: Callable[..., Any], source: str) -> None:
        self._run = run
        self.source = source
        self._lock = threading.Lock()

    def __call__(self, *inputs: Any) -> tuple[Any, tuple[Any, ...]] | None:
        if not self._lock.acquire(False):
            return None
        try:
            with np.errstate(all="ignore"):  # as the flat plan (its checks follow)
                return self._run(*inputs)
        finally:
            self._lock.release()


def compile_gradient(plan: FlatPlan, differentiated: int | None = None
                     ) -> CompiledGradient | None:
    """The generated sweep of ``plan`` (value and gradient of its scalar
    output), or None when the plan has no multipliers (an output that is not
    a scalar) or more than ``MAX_STEPS`` steps.

    Only the first ``differentiated`` inputs (default: all) get a gradient;
    the others are data read at each call, and no multiplier that reaches
    only them is computed."""
    if plan.seed is None or len(plan.steps) > MAX_STEPS:
        return None
    schedule = plan.schedule
    n = len(plan.inputs) if differentiated is None else differentiated
    z, lam = np.empty(schedule.size), np.empty(schedule.size)
    src = _Source()
    zn, ln = src.name(z, "Z"), src.name(lam, "L")
    for k, (a, b) in enumerate(plan.inputs):
        src.emit(f"{src.name(z[a:b].reshape(schedule.inputs[k].shape), 'v')}[...] = x{k}")
    views = {id(step): _forward(src, step, z) for step in plan.steps}
    _check_finite(src, zn)
    sweep = _sweep(plan, n)
    offsets = schedule.index.offsets
    written = {slot[1:3] for _, slots in sweep for slot in slots} | {(plan.seed, plan.seed + 1)}
    for a, b in zip(offsets[:-1], offsets[1:]):
        if b > a and (int(a), int(b)) not in written:
            src.emit(f"{ln}[{a}:{b}] = 0.0")
    src.emit(f"{ln}[{plan.seed}] = 1.0")
    for step, slots in sweep:
        g = src.name(lam[step.start:step.stop].reshape(step.shape), "g")
        for pos, a, b, shape, first in slots:
            _reverse(src, step, pos, lam[a:b].reshape(shape), g, views[id(step)], first)
    _check_finite(src, ln)
    out = schedule.output_variable
    value = f"{zn}[{int(offsets[out.index])}]"
    grads = []
    for (a, b), v in zip(plan.inputs[:n], schedule.inputs[:n]):
        view = src.name(lam[a:b].reshape(v.shape), "v")
        grads.append(f"{view}[()]" if not v.shape else f"{view}.copy()")
    src.emit(f"return {value}, ({', '.join(grads)}{',' if len(grads) == 1 else ''})")
    params = ", ".join(f"x{k}" for k in range(len(plan.inputs)))
    source = f"def run({params}):\n" + "\n".join(src.lines) + "\n"
    namespace = dict(src.names)
    exec(compile(source, f"<lagrad gradient of {schedule.program.name or 'a program'}>",
                 "exec"), namespace)
    return CompiledGradient(namespace["run"], source)


Slot = tuple[int, int, int, tuple[int, ...], bool]


def _sweep(plan: FlatPlan, n: int) -> list[tuple[Single, list[Slot]]]:
    """The reverse steps with the argument slots to pass cotangents into:
    those of variables that depend on one of the first ``n`` inputs, the
    first contribution to each written (``True``) and the others added, as
    in the flat plan (whose sweep this is when every input counts)."""
    active = set(plan.inputs[:n])
    for step in plan.steps:
        if any((a, b) in active for _, a, b, _ in step.vslots):
            active.add((step.start, step.stop))
    written = {(plan.seed, plan.seed + 1)}
    sweep = []
    for rev in plan.reverse:
        slots = []
        for pos, a, b, shape, _ in rev.slots:
            if (a, b) in active:
                slots.append((pos, a, b, shape, (a, b) not in written))
                written.add((a, b))
        if slots:
            sweep.append((rev.step, slots))
    return sweep


def _check_finite(src: _Source, vec: str) -> None:
    """Emit flatplan's finiteness test of a whole vector (a sum, then each entry
    when the sum is not finite): None when an entry is not."""
    src.emit(f"if not isfinite(reduce({vec}, axis=None)) and not {src.name(np.isfinite, 'f')}"
             f"({vec}).all():")
    src.emit("    return None")


def _forward(src: _Source, step: Single, z: Array) -> tuple[str, str, list[str]]:
    """Emit one step's value; return the names of its output view, of its
    argument list and of each argument."""
    eq = step.eq
    out = src.name(z[step.start:step.stop].reshape(step.shape), "v")
    gathered = step.gather(z)
    args = [src.name(x, "c") for x in gathered]
    fn = src.name(eq.primitive.value, "F")
    if step.ufunc:
        src.emit(f"{fn}({', '.join(args)}, out={out})")
    else:
        kw = f", **{src.name(dict(eq.params), 'P')}" if eq.params else ""
        src.emit(f"{out}[...] = {fn}({', '.join(args)}{kw})")
    return out, src.name(gathered, "A"), args


def _reverse(src: _Source, step: Single, pos: int, into: Array, g: str,
             names: tuple[str, str, list[str]], first: bool) -> None:
    """Emit one argument's cotangent written (``first``) or added into ``into``:
    the branch of Primitive.pullback_set / pullback_add its shapes select."""
    prim, params = step.eq.primitive, step.eq.params
    ans, arglist, args = names
    o = src.name(into, "o")
    p = src.name(dict(params), "P")
    kw = f", **{p}" if params else ""
    rule = f"({pos}, {o}, {g}, {ans}, {', '.join(args)}{kw})"
    pullback = f"{src.name(prim.pullback, 'B')}({pos}, {g}, {ans}, {arglist}, {p})"
    same = into.shape == step.shape  # no broadcasting: pullback's unbroadcast is a no-op
    c = prim.constant_partials[pos] if prim.constant_partials is not None else None
    partial = f"{src.name(prim.partials, 'D')}({pos}, {ans}, {', '.join(args)}{kw})" \
        if prim.partials is not None else ""
    if first:
        if prim.vjp_set is not None:
            src.emit(f"if not {src.name(prim.vjp_set, 'S')}{rule}:")
            src.emit(f"    copyto({o}, {pullback})")
        elif c is not None and same:
            src.emit(f"copyto({o}, {g})" if c == 1.0 else
                     f"copyto({o}, {src.name(c, 'k')} * {g})")
        elif prim.constant_partials is None and partial and same:
            src.emit(f"multiply({g}, {partial}, out={o})")
        else:
            src.emit(f"copyto({o}, {pullback})")
    elif prim.vjp_add is not None:
        src.emit(f"if not {src.name(prim.vjp_add, 'S')}{rule}:")
        src.emit(f"    add({o}, {pullback}, out={o})")
    elif c is not None and same:
        src.emit(f"add({o}, {g}, out={o})" if c == 1.0 else
                 f"add({o}, {src.name(c, 'k')} * {g}, out={o})")
    elif prim.constant_partials is None and partial and same:
        src.emit(f"add({o}, {g} * {partial}, out={o})")
    else:
        src.emit(f"add({o}, {pullback}, out={o})")
