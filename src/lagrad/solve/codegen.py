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
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.compile.schedule import Single
from lagrad.solve import codeinline
from lagrad.solve.borrow import Borrowed
from lagrad.solve.codecheck import (
    bounded_products,
    check_finite,
    check_product,
    finite_map_outputs,
    spread_by_constants,
)
from lagrad.solve.flatplan import FlatPlan, Lent

__all__ = ["CompiledGradient", "compile_gradient", "MAX_STEPS", "CompiledSweep", "compile_sweep",
           "sweep_gradient", "SWEEP_AFTER", "compile_forward", "forward_values"]

Array = NDArray[np.float64]
MAX_STEPS = 400
"""Programs of more steps are not compiled (the source grows with the steps,
and for them the per-step overhead is small against the arithmetic)."""


class _Source:
    """Generated lines and the objects they name."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {"add": np.add, "multiply": np.multiply, "copyto": np.copyto,
                                      "isfinite": math.isfinite, "vdot": np.vdot,
                                      "sqrt": math.sqrt, **codeinline.NAMES}
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
    check_finite(src, zn)
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
            o = src.name(lam[a:b].reshape(shape), "o")
            _reverse(src, step, pos, o, shape, g, views[id(step)], first)
    check_finite(src, ln)
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


def _reverse(src: _Source, step: Single, pos: int, o: str, shape: tuple[int, ...], g: str,
             names: tuple[str, str, list[str]], first: bool) -> None:
    """Emit one argument's cotangent written (``first``) or added into the
    array named ``o`` (of ``shape``): the branch of Primitive.pullback_set /
    pullback_add its shapes select."""
    prim, params = step.eq.primitive, step.eq.params
    ans, arglist, args = names
    if codeinline.reverse_step(src, step, pos, o, shape, g, (ans, args), first):
        return
    p = src.name(dict(params), "P")
    kw = f", **{p}" if params else ""
    rule = f"({pos}, {o}, {g}, {ans}, {', '.join(args)}{kw})"
    pullback = f"{src.name(prim.pullback, 'B')}({pos}, {g}, {ans}, {arglist}, {p})"
    same = shape == step.shape  # no broadcasting: pullback's unbroadcast is a no-op
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


# ------------------------------------------------------- a Solution's gradient

SWEEP_AFTER = 1
"""Default gradients of a program taken through its flat plan before its sweep
is generated (a program differentiated once never pays for the source)."""


class CompiledSweep:
    """The multiplier sweep of a flat plan's program, by generated code, at
    values computed elsewhere (a :class:`~lagrad.Solution`'s z).

    Calling it with z and the inputs left in the caller's arrays (``lent``,
    span -> flat array, see :mod:`lagrad.solve.borrow`) returns the gradient,
    one new array per input (a numpy scalar for a 0-d input), as
    ``Solution.grad`` gives it; or None when a multiplier is not finite or
    another thread is using the sweep's multiplier vector. The multipliers of
    the inputs are written straight into the arrays returned (none is copied
    out of the vector); the others live in one vector owned by the sweep,
    whose never-written entries are cleared once, when it is made.
    """

    def __init__(self, run: Callable[..., Any], source: str) -> None:
        self._run = run
        self.source = source
        self._lock = threading.Lock()

    def __call__(self, z: Array, lent: Lent) -> tuple[Any, ...] | None:
        if not self._lock.acquire(False):
            return None
        try:
            with np.errstate(all="ignore"):  # as the flat plan (its checks follow)
                return self._run(z, lent)
        finally:
            self._lock.release()


def compile_sweep(plan: FlatPlan) -> CompiledSweep | None:
    """The generated multiplier sweep of ``plan`` (see :class:`CompiledSweep`),
    or None when the plan has no multipliers, a cyclic block, or more than
    ``MAX_STEPS`` steps. The arithmetic is the plan's, operation for operation."""
    if plan.seed is None or plan.cyclic or len(plan.steps) > MAX_STEPS:
        return None
    schedule = plan.schedule
    lam = np.zeros(schedule.size)  # entries nothing writes stay 0
    lam[plan.seed] = 1.0  # (nothing writes the output's multiplier)
    src = _Source()
    src.names.update({"empty": np.empty, "zeros": np.zeros})
    zview = _ZViews(src, plan.lendable)
    sweep = _sweep(plan, len(plan.inputs))
    written = {slot[1:3] for _, slots in sweep for slot in slots}
    grads: dict[tuple[int, int], str] = {}
    for k, (a, b) in enumerate(plan.inputs):  # the gradient's arrays, new at each call
        grads[(a, b)] = f"d{k}"
        shape = schedule.inputs[k].shape
        src.emit(f"d{k} = {'empty' if (a, b) in written else 'zeros'}({shape})")
    untested = _emit_sweep(src, plan, sweep, lam, zview, grads)
    for a, b in _merged(sorted(untested - set(grads))):
        check_finite(src, src.name(lam[a:b], "r"))
    for span, name in grads.items():
        if span in untested:  # (an input nothing reaches: zeros)
            check_finite(src, name)
    out = [f"{grads[span]}[()]" if not v.shape else grads[span]
           for span, v in zip(plan.inputs, schedule.inputs)]
    src.emit(f"return ({', '.join(out)}{',' if len(out) == 1 else ''})")
    source = "def run(Z, lent):\n" + "\n".join(src.lines) + "\n"
    namespace = dict(src.names)
    exec(compile(source, f"<lagrad multipliers of {schedule.program.name or 'a program'}>",
                 "exec"), namespace)
    return CompiledSweep(namespace["run"], source)


def _emit_sweep(src: _Source, plan: FlatPlan, sweep: list[tuple[Single, list[Slot]]],
                lam: Array, zview: _ZViews, grads: dict[tuple[int, int], str]
                ) -> set[tuple[int, int]]:
    """Emit the steps of the sweep (inputs' multipliers into the arrays named
    in ``grads``, the others into ``lam``); with ``plan.stepwise``, each
    step's multiplier is tested right before it is read, while in cache.
    Return the spans written and not tested (to test at the end)."""
    schedule = plan.schedule
    shared = _shared(plan, sweep)
    places = _places(plan, sweep, shared, grads)

    def view(a: int, b: int, shape: tuple[int, ...], prefix: str) -> str:
        at = places.get((a, b), a)
        return src.name(lam[at:at + b - a].reshape(shape), prefix)

    written = {slot[1:3] for _, slots in sweep for slot in slots if slot[1:3] not in shared}
    tested: set[tuple[int, int]] = set()
    last = {slot[1:3]: (id(step), slot[0]) for step, slots in sweep for slot in slots}
    products = bounded_products(sweep, grads)
    squares: dict[str, str | None] = {}  # multiplier view -> name of its sum of squares
    for step, slots in sweep:
        span = (step.start, step.stop)
        ans = zview(step.start, step.stop, step.shape)
        args = zview.args(step)
        arglist = f"a{step.start}"  # (read only by a pullback's general branch)
        at = len(src.lines)
        g = shared.get(span) or view(step.start, step.stop, step.shape, "g")
        if plan.stepwise and span in written:  # (an input's span is no step's)
            squares[g] = check_finite(src, g, f"q{step.start}")
            tested.add(span)
        for pos, a, b, shape, first in slots:
            if shared.get((a, b)) == span:  # lambda_j is lambda_i (see _shared)
                shared[(a, b)] = g
                continue
            if (a, b) in grads:
                o = grads[(a, b)] if schedule.inputs[plan.inputs.index((a, b))].shape == shape \
                    else f"{grads[(a, b)]}.reshape({shape})"
            else:
                o = view(a, b, shape, "o")
            _reverse(src, step, pos, o, shape, g, (ans, arglist, args), first)
            other = products.get((a, b))
            if other is not None and other[0] is step:  # a product: its factors' bound
                check_product(src, step, (o, b - a), g, squares.get(g), other[1], args[other[1]])
                tested.add((a, b))
            elif plan.stepwise and (a, b) in grads and last[(a, b)] == (id(step), pos):
                check_finite(src, grads[(a, b)])  # complete: test it while in cache
                tested.add((a, b))
        if any(arglist in line for line in src.lines[at:]):
            src.lines.insert(at, f"    {arglist} = [{', '.join(args)}]")
    return written - tested


def _places(plan: FlatPlan, sweep: list[tuple[Single, list[Slot]]],
            shared: dict[tuple[int, int], Any], grads: dict[tuple[int, int], str]
            ) -> dict[tuple[int, int], int]:
    """Where in the sweep's vector each multiplier lives, when not at its own
    span: in that of a multiplier of the same size that is no longer read.
    With ``plan.stepwise`` only (each multiplier is then tested when read,
    none at the end): a program's multipliers then take a few regions that
    stay in cache (an MLP's four 128 x 256 multipliers take two) instead of
    one fresh region each. A multiplier that another one shares (see
    :func:`_shared`) lives until its last sharer is read."""
    if not plan.stepwise:
        return {}
    read = {(step.start, step.stop): i for i, (step, _) in enumerate(sweep)}
    end: dict[tuple[int, int], int] = {}
    for span, i in read.items():
        while span in shared:
            span = shared[span]
        end[span] = max(end.get(span, i), i)
    places: dict[tuple[int, int], int] = {}
    free: dict[int, list[int]] = {}  # size -> offsets of regions no longer read
    live: list[tuple[int, int, int]] = []  # (last step reading it, size, offset)
    for i, (_, slots) in enumerate(sweep):
        for _, n, at in [r for r in live if r[0] < i]:
            free.setdefault(n, []).append(at)
        live = [r for r in live if r[0] >= i]
        for _, a, b, _, first in slots:
            span = (a, b)
            if first and span in read and span not in grads and span not in shared:
                places[span] = free[b - a].pop() if free.get(b - a) else a
                live.append((end[span], b - a, places[span]))
    return places


def _shared(plan: FlatPlan, sweep: list[tuple[Single, list[Slot]]]
            ) -> dict[tuple[int, int], Any]:
    """The variables j whose multiplier is one equation i's, unchanged:
    j is an argument of i only, of partial 1 and i's shape (a sum's term), and
    no other equation reads it. The generated sweep reads lambda_i for
    lambda_j instead of copying it (value: i's span; the name of lambda_i's
    view once made); their entries of the vector stay 0 (never read)."""
    targets: dict[tuple[int, int], list[tuple[Single, int, tuple[int, ...]]]] = {}
    for step, slots in sweep:
        for pos, a, b, shape, _ in slots:
            targets.setdefault((a, b), []).append((step, pos, shape))
    owners = {(s.start, s.stop): s.shape for s in plan.steps}
    shared: dict[tuple[int, int], Any] = {}
    for span, found in targets.items():
        if len(found) != 1 or span not in owners:
            continue
        step, pos, shape = found[0]
        prim = step.eq.primitive
        if prim.vjp_set is None and prim.constant_partials is not None \
                and prim.constant_partials[pos] == 1.0 and shape == step.shape == owners[span]:
            shared[span] = (step.start, step.stop)
    return shared


class _ZViews:
    """Local views of z made by the generated code (once each per call), the
    caller's array for a lent input (an argument ``lent`` of the code)."""

    def __init__(self, src: _Source, lendable: frozenset[tuple[int, int]]) -> None:
        self.src = src
        self.lendable = lendable
        self.names: dict[tuple[int, int, tuple[int, ...]], str] = {}

    def __call__(self, a: int, b: int, shape: tuple[int, ...]) -> str:
        key = (a, b, shape)
        if key not in self.names:
            name = self.names[key] = f"z{len(self.names)}"
            emit = self.src.emit
            if (a, b) in self.lendable:
                emit(f"{name} = lent.get(({a}, {b}))")
                emit(f"{name} = Z[{a}:{b}] if {name} is None else {name}")
                emit(f"{name} = {name}.reshape({shape})")
            else:
                emit(f"{name} = Z[{a}:{b}].reshape({shape})")
        return self.names[key]

    def args(self, step: Single) -> list[str]:
        """The names of the step's arguments (constants bound in the module)."""
        vargs = {pos: self(a, b, shape) for pos, a, b, shape in step.vslots}
        return [vargs[pos] if pos in vargs else self.src.name(x, "c")
                for pos, x in enumerate(step.template)]


def compile_forward(plan: FlatPlan) -> Callable[[Array, Lent], bool | None]:
    """The steps of ``plan`` as one generated function (see
    :meth:`FlatPlan.run <lagrad.solve.flatplan.FlatPlan.run>`, its ``steps``):
    each step's primitive called into z, and, when the plan checks step by
    step (``plan.stepwise`` when made), every input's and step's values tested
    right after they are written, except those a sum's test covers (see
    :func:`_covered`), the outputs of finite maps (tanh of a tested value)
    and inputs spread by a constant factor of a matrix product (see
    :mod:`lagrad.solve.codecheck`); else it returns None (not checked)."""
    src = _Source()
    src.names["ravel"] = np.ravel
    zview = _ZViews(src, plan.lendable)
    check = plan.stepwise
    covered = _covered(plan) | finite_map_outputs(plan.steps) | \
        spread_by_constants(plan.steps, plan.inputs)
    if check:
        src.emit("ok = True")
        for k, (a, b) in enumerate(plan.inputs):
            if (a, b) not in covered:
                _and_finite(src, zview(a, b, plan.schedule.inputs[k].shape))
    for step in plan.steps:
        eq = step.eq
        args = ", ".join(zview.args(step))
        fn = src.name(eq.primitive.value, "F")
        out = zview(step.start, step.stop, step.shape)
        if step.ufunc:
            src.emit(f"{fn}({args}, out={out})")
        elif codeinline.forward_step(src, step, zview.args(step), out):
            pass
        else:
            kw = f", **{src.name(dict(eq.params), 'P')}" if eq.params else ""
            src.emit(f"Z[{step.start}:{step.stop}] = ravel({fn}({args}{kw}))")
        if check and (step.start, step.stop) not in covered:
            _and_finite(src, out)
    src.emit("return ok" if check else "return None")
    source = "def run(Z, lent):\n" + "\n".join(src.lines) + "\n"
    namespace = dict(src.names)
    name = plan.schedule.program.name or "a program"
    exec(compile(source, f"<lagrad values of {name}>", "exec"), namespace)
    run: Callable[[Array, Lent], bool | None] = namespace["run"]
    return run


def _covered(plan: FlatPlan) -> set[tuple[int, int]]:
    """The spans whose values need no test of their own: operands of a sum
    (a primitive with constant partials, none 0) with a non-empty output.
    Each entry of such an operand enters some entry of the sum with a nonzero
    factor, and inf or NaN there makes that entry inf or NaN: the sum's test
    (or, inductively, its own sum's) covers it. A failing test sends the call
    to the scan that names the first non-finite value in program order."""
    covered: set[tuple[int, int]] = set()
    for step in plan.steps:
        c = step.eq.primitive.constant_partials
        if c is not None and step.stop > step.start:
            covered.update((a, b) for pos, a, b, _ in step.vslots if c[pos] != 0.0 and b > a)
    return covered


def forward_values(plan: FlatPlan, inputs: Sequence[Any]) -> tuple[Array, Borrowed | None]:
    """:meth:`FlatPlan.run <lagrad.solve.flatplan.FlatPlan.run>` at
    ``inputs``, its steps by generated code once the program has been solved
    ``SWEEP_AFTER`` times (kept, cached on the schedule, only if it gives the
    plan's values bit for bit at the call that makes it)."""
    extras = plan.schedule.extras
    steps = extras.get("forward_code", False)  # False: not made yet; None: none
    if steps is False:
        uses = extras["forward_uses"] = extras.get("forward_uses", 0) + 1
        if uses <= SWEEP_AFTER or len(plan.steps) > MAX_STEPS:
            return plan.run(inputs)
        steps = compile_forward(plan)
        z, borrowed = plan.run(inputs, steps)
        reference = plan.forward(inputs)
        if borrowed is not None:
            borrowed.fill(z)
        same = np.array_equal(z, reference)
        extras["forward_code"] = steps if same else None
        return (z, None) if same else (reference, None)
    return plan.run(inputs, steps)


def _and_finite(src: _Source, vec: str) -> None:
    """Emit ``ok = ok and`` the flat plan's finiteness test of ``vec``."""
    src.emit(f"ok = ok and (isfinite(vdot({vec}, {vec})) or "
             f"bool({src.name(np.isfinite, 'f')}({vec}).all()))")


def sweep_gradient(plan: FlatPlan, z: Array, borrowed: Borrowed | None
                   ) -> tuple[Any, ...] | None:
    """The default gradient at ``z`` (one new array per input) by the plan's
    generated sweep, or None: the caller then takes the plan's own path (which
    also names the equation of a non-finite multiplier).

    The sweep is generated after ``SWEEP_AFTER`` gradients of the program and
    kept (cached on the schedule) only if it gives the plan's multipliers bit
    for bit at the call that makes it."""
    extras = plan.schedule.extras
    sweep = extras.get("sweep", False)  # False: not made yet; None: none
    lent = {} if borrowed is None else borrowed.arrays
    if sweep is False:
        uses = extras["sweep_uses"] = extras.get("sweep_uses", 0) + 1
        if uses <= SWEEP_AFTER:
            return None
        sweep = compile_sweep(plan)
        if sweep is None:
            extras["sweep"] = None
            return None
        found = sweep(z, lent)
        reference = plan.multipliers(z, None, borrowed)
        if found is None or reference is None:
            return None  # not finite here (or busy): made again at a later call
        expected = plan.schedule.index.take(reference[0], plan.schedule.inputs)
        same = all(np.array_equal(a, b) for a, b in zip(found, expected))
        extras["sweep"] = sweep if same else None
        return found if same else None
    return None if sweep is None else sweep(z, lent)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Adjacent spans merged (one finiteness test per run)."""
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if merged and merged[-1][1] == a:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged
