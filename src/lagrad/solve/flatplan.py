"""Acyclic array programs run from a flat plan: the forward pass and the
default multiplier sweep without the general machinery, each multiplier
written once.

For a program with no cyclic block whose equations all run as single steps
(array programs: an MLP's loss, a small vector function), the default
multiplier solve is one back-substitution through the steps in reverse. The
general sweep (:class:`lagrad.solve.linsolve.Substitution`) starts from the
seed e_n in a vector cleared in full and *adds* each equation's contribution
lambda_i df_i/dz_j into lambda_j. Here, with the order of the steps known
when the plan is made, the first contribution to each variable is *written*
(a BLAS product with beta = 0, a ufunc with ``out=``) and only later ones are
added; only variables that no equation reaches are cleared. That saves a pass
over the whole vector, a pass over each multiplier (the add), and the
temporary of each product.

The multipliers are the general sweep's to the last digit (x + 0 = x; only
the sign of a zero may differ). A sweep whose result is not finite gives
None: the caller then runs the general path, which guards the sweep and names
the equation at fault.

Programs with cyclic blocks (a DEQ layer) have the same multiplier plan
(:func:`multiplier_plan`): each block is solved in place by the default block
method, as the general sweep does, and what it passes on to its parents
outside the block is written the same way, first contribution set, later ones
added. The multipliers of a parameter read inside a block (W of
z = tanh(W z + U x + b)) are then written once, by one outer product, and
never cleared nor read back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.compile.groups import grouped_steps
from lagrad.compile.guards import first_nonfinite
from lagrad.compile.schedule import CyclicBlock, Schedule, Single
from lagrad.options import LinearOptions
from lagrad.solve import borrow as borrowing
from lagrad.solve.blocksolve import Workspace, substitute_block
from lagrad.solve.borrow import Borrowed, finite_outside, lend
from lagrad.solve.buffers import pool_of, write_flat
from lagrad.solve.codecheck import PRODUCT_BOUND, product_factor
from lagrad.solve.linsolve import SolveInfo
from lagrad.solve.results import BlockResult
from lagrad.solve.system import ADJOINT

__all__ = ["FlatPlan", "flat_plan", "multiplier_plan", "Lent"]

Array = NDArray[np.float64]
Lent = dict[tuple[int, int], Array]  # inputs read from the caller's arrays, by span of z
NOTES = "one sweep in block order"  # what the general sweep reports
NO_OPTIONS = LinearOptions()
STEPWISE = 1 << 16  # programs longer than this check finiteness step by step (see FlatPlan)


@dataclass(frozen=True)
class _Reverse:
    """One step of the sweep: its equation's cotangents into its parents, the
    first one into each parent written (``first``), the others added."""

    step: Single
    slots: tuple[tuple[int, int, int, tuple[int, ...], bool], ...]  # (pos, a, b, shape, first)
    bounded: tuple[tuple[int, int, int], ...] = ()  # (a, b, other): see _bounded_products


@dataclass(frozen=True)
class _BlockReverse:
    """A cyclic block's step of the sweep: its linear solve in place, then its
    ``outer`` steps' cotangents into the parents outside the block."""

    unit: CyclicBlock
    outer: tuple[_Reverse, ...]


def _reverse(step: Single, written: set[tuple[int, int]]) -> _Reverse | None:
    """The step's slots, each marked first unless an earlier one of the sweep
    (a later equation) wrote its target already."""
    slots = []
    for pos, a, b, shape in step.dslots:
        slots.append((pos, a, b, shape, (a, b) not in written))
        written.add((a, b))
    return _Reverse(step, tuple(slots)) if slots else None


class FlatPlan:
    """The steps of an acyclic schedule of single steps, with which argument
    slots of the sweep write and which add, and what to clear.

    Parameters
    ----------
    schedule : Schedule
        Acyclic, every step a :class:`~lagrad.compile.schedule.Single`, with
        an output (see :func:`flat_plan`, which checks). Only a scalar output
        has multipliers here (a seed of 1).

    Notes
    -----
    Every value and multiplier is checked to be finite. In a program of more
    than ``STEPWISE`` entries each step's output is checked right after it is
    written (its value) or before it is read (its multiplier), while it is
    still in cache, instead of in one pass over the whole vector at the end;
    the inputs' entries, and the multipliers of steps that pass nothing on,
    are checked at the end. Either way every entry is checked once.
    """

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self.steps: tuple[Any, ...] = tuple(schedule.steps)
        index = schedule.index
        self.inputs = tuple((int(index.offsets[v.index]), int(index.offsets[v.index + 1]))
                            for v in schedule.inputs)
        out = schedule.output_variable
        self.seed = int(index.offsets[out.index]) if out.size == 1 else None
        written = {(int(index.offsets[out.index]), int(index.offsets[out.index + 1]))}
        reverse: list[_Reverse | _BlockReverse] = []
        blocks: list[CyclicBlock] = []
        rhs_zero: list[tuple[int, int]] = []  # block variables no child passes to
        for step in reversed(self.steps):
            if isinstance(step, CyclicBlock):  # its solve writes all of lambda_S
                blocks.append(step)
                spans = [(int(index.offsets[j]), int(index.offsets[j + 1]))
                         for j in sorted(step.members)]
                rhs_zero += [span for span in spans if span not in written]
                written.update(spans)
                outer = (_reverse(s, written) for s in step.outer)
                reverse.append(_BlockReverse(step, tuple(r for r in outer if r is not None)))
                continue
            rev = _reverse(step, written)
            if rev is not None:
                reverse.append(rev)
        self.stepwise = schedule.size > STEPWISE
        bounded = _bounded_products(reverse, set(self.inputs)) if self.stepwise else {}
        self.reverse = tuple(_with_bounds(rev, bounded) for rev in reverse)
        self.cyclic = bool(blocks)
        # large inputs the forward pass reads from the caller's arrays (lagrad.solve.borrow)
        self.lendable = frozenset() if blocks else frozenset(
            (a, b) for a, b in self.inputs if b - a >= borrowing.BORROW_MIN)
        self.borrowers = frozenset(id(s) for s in self.steps if isinstance(s, Single) and any(
            (a, b) in self.lendable for _, a, b, _ in s.vslots))
        passing = {id(rev.step) for rev in reverse if isinstance(rev, _Reverse)}
        passing.update(id(unit) for unit in blocks)  # checked right after their solve
        self.last = _runs(sorted([span for span in self.inputs if span not in bounded] +
                                 [(s.start, s.stop) for s in self.steps
                                  if id(s) not in passing and isinstance(s, Single)]))
        # cleared: what no equation reaches, and a block's rhs where no child passes to it
        self.clear = _runs(sorted(rhs_zero + [
            (int(a), int(b)) for a, b in zip(index.offsets[:-1], index.offsets[1:])
            if b > a and (int(a), int(b)) not in written]))

    def forward(self, inputs: Sequence[Any]) -> Array:
        """z at the inputs (one value per input, already of its shape), every
        input copied into it: :meth:`run` and :meth:`Borrowed.fill`."""
        z, borrowed = self.run(inputs)
        if borrowed is not None:
            borrowed.fill(z)
        return z

    def run(self, inputs: Sequence[Any], steps: Callable[[Array, Lent], bool | None] | None = None
            ) -> tuple[Array, Borrowed | None]:
        """z at the inputs (one value per input, already of its shape), and
        the large inputs left in the caller's arrays (their slices of z not
        written, see :mod:`lagrad.solve.borrow`): every step run in order; a
        non-finite value raises NonFiniteError naming the equation where it
        first appears. An equation's own SolveError (a singular linalg.solve)
        propagates as raised: the general path
        (:func:`lagrad.solve.forward.evaluate`) names its equation.

        ``steps``, if given, runs the steps instead (generated code, see
        :func:`lagrad.solve.codegen.compile_forward`): called with z and the
        lent inputs (span -> flat array), it returns whether every value is
        finite, or None when it did not check (the whole vector is then
        checked here)."""
        z = pool_of(self.schedule).take()  # every entry is written (or borrowed)
        borrowed = lend(self.lendable, list(zip(self.inputs, inputs))) \
            if self.lendable else None
        lent = borrowed.arrays if borrowed is not None else {}
        for (a, b), x in zip(self.inputs, inputs):
            if (a, b) not in lent:
                write_flat(z[a:b], x)
        borrowers = self.borrowers if lent else frozenset()
        with np.errstate(all="ignore"):
            if steps is not None:
                checked = steps(z, lent)
                finite = checked if checked is not None else \
                    finite_outside(z, borrowed, _finite)
            elif self.stepwise:
                finite = all(_finite(lent.get((a, b), z[a:b])) for a, b in self.inputs)
                for step in self.steps:
                    _run(step, z, borrowed, borrowers)
                    finite = finite and _finite(z[step.start:step.stop])
            else:
                for step in self.steps:
                    _run(step, z, borrowed, borrowers)
                finite = finite_outside(z, borrowed, _finite)
        if not finite:
            if borrowed is not None:
                borrowed.fill(z)
            raise first_nonfinite(self.schedule, z, "value")
        return z, borrowed

    def multipliers(self, z: Array, forward: Mapping[int, BlockResult] | None = None,
                    borrowed: Borrowed | None = None) -> tuple[Array, SolveInfo] | None:
        """lambda at z for the output seed 1, and the solve's info as the
        general sweep reports it; None when lambda is not finite (the general
        path then finds out where it went wrong, or, for an output that is not
        a scalar, says what to do). ``forward``: the cyclic blocks' forward
        results (by block number), which guide each block's "auto" solve;
        ``borrowed``: inputs not in z yet, read from the caller's arrays
        (:mod:`lagrad.solve.borrow`). A block solve that fails raises as in
        the general sweep."""
        if self.seed is None:
            return None
        t0 = time.perf_counter()
        pool = pool_of(self.schedule)
        lam = pool.take()
        for a, b in self.clear:
            lam[a:b] = 0.0
        lam[self.seed] = 1.0
        stepwise = self.stepwise
        work = Workspace(lam.size, pool) if self.cyclic else None
        blocks: list[BlockResult] = []
        with np.errstate(all="ignore"):  # non-finite multipliers are found below
            for rev in self.reverse:
                if isinstance(rev, _BlockReverse):
                    unit = rev.unit
                    blocks.append(substitute_block(
                        unit, z, lam, ADJOINT, "auto", NO_OPTIONS,
                        _own_forward(forward, unit), work, pass_on=False,
                        borrowed=borrowed))
                    if stepwise and not all(_finite(lam[a:b]) for a, b in unit.runs):
                        return None
                    for outer in rev.outer:
                        _pull(outer, z, lam, borrowed)
                        if outer.bounded and not _bound_holds(outer, z, lam, borrowed):
                            return None
                    continue
                step = rev.step
                if stepwise and not _finite(lam[step.start:step.stop]):  # complete: every
                    return None  # child passed its part
                _pull(rev, z, lam, borrowed)
                if rev.bounded and not _bound_holds(rev, z, lam, borrowed):
                    return None
            finite = all(_finite(lam[a:b]) for a, b in self.last) if stepwise else \
                _finite(lam)
        if not finite:
            return None
        seconds = time.perf_counter() - t0
        notes = NOTES
        if blocks:
            notes += "; cyclic blocks: " + ", ".join(f"{b.block} by {b.method}" for b in blocks)
        return lam, SolveInfo("auto", seconds, float("nan"),
                              max([b.iterations for b in blocks], default=1), True, notes,
                              {"blocks": blocks})


def _run(step: Single, z: Array, borrowed: Borrowed | None, borrowers: frozenset[int]
         ) -> None:
    """The step's value into z, borrowed inputs read from the caller's arrays."""
    if borrowed is not None and id(step) in borrowers:
        borrowed.run(step, z)
    else:
        step.run(z)


def _pull(rev: _Reverse, z: Array, lam: Array, borrowed: Borrowed | None = None) -> None:
    """One step's cotangents into its parents' multipliers, set or added."""
    step = rev.step
    eq = step.eq
    prim, params = eq.primitive, eq.params
    g = lam[step.start:step.stop].reshape(step.shape)
    ans = z[step.start:step.stop].reshape(step.shape)
    args = step.gather(z) if borrowed is None else borrowed.gather(step, z)
    for pos, a, b, shape, first in rev.slots:
        if first:
            prim.pullback_set(pos, lam[a:b].reshape(shape), g, ans, args, params)
        else:
            prim.pullback_add(pos, lam[a:b].reshape(shape), g, ans, args, params)


def _bounded_products(reverse: Sequence[_Reverse | _BlockReverse],
                      inputs: set[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """The inputs' multipliers tested by a bound on their factors instead of
    entry by entry (stepwise plans; see :mod:`lagrad.solve.codecheck`): an
    input's whose only contribution is one factor's cotangent of a matrix
    product, written (not added), when the two factors have fewer entries
    than the product (dL/dW = outer(g, z) of a DEQ layer: 2N against N^2).
    By span: the position of the product's other factor (only the product's
    step writes that span)."""
    count: dict[tuple[int, int], int] = {}
    revs = [r for rev in reverse
            for r in (rev.outer if isinstance(rev, _BlockReverse) else (rev,))]
    for rev in revs:
        for _, a, b, _, _ in rev.slots:
            count[(a, b)] = count.get((a, b), 0) + 1
    found: dict[tuple[int, int], int] = {}
    for rev in revs:
        step = rev.step
        for pos, a, b, shape, first in rev.slots:
            if (a, b) not in inputs or not first or count[(a, b)] != 1:
                continue
            other = product_factor(step, pos, shape)
            if other is None or step.template[other] is not None:
                continue  # (a constant factor: tested entry by entry, as before)
            factor = next(hi - lo for p, lo, hi, _ in step.vslots if p == other)
            if factor + (step.stop - step.start) < b - a:
                found[(a, b)] = other
    return found


def _with_bounds(rev: _Reverse | _BlockReverse,
                 bounded: dict[tuple[int, int], int]) -> _Reverse | _BlockReverse:
    """``rev`` with its bounded slots (a, b, other) recorded."""
    if not bounded:
        return rev
    if isinstance(rev, _BlockReverse):
        return _BlockReverse(rev.unit, tuple(_with_bounds(r, bounded) for r in rev.outer))
    spans = tuple((a, b, bounded[(a, b)]) for _, a, b, _, _ in rev.slots if (a, b) in bounded)
    return _Reverse(rev.step, rev.slots, spans) if spans else rev


def _bound_holds(rev: _Reverse, z: Array, lam: Array, borrowed: Borrowed | None) -> bool:
    """After ``rev``'s pull: its bounded slots' multipliers are finite, by the
    factors' norms (the step's multipliers, tested already, and the other
    factor's values, tested by the forward pass) or else entry by entry."""
    step = rev.step
    g = lam[step.start:step.stop]
    args = step.gather(z) if borrowed is None else borrowed.gather(step, z)
    qg = float(np.vdot(g, g))
    for a, b, other in rev.bounded:
        f = args[other]
        if not math.sqrt(qg) * math.sqrt(float(np.vdot(f, f))) <= PRODUCT_BOUND \
                and not _finite(lam[a:b]):
            return False
    return True


def _own_forward(forward: Mapping[int, BlockResult] | None, unit: CyclicBlock
                 ) -> BlockResult | None:
    """The block's own forward result (as the general sweep picks it)."""
    found = None if forward is None else forward.get(unit.block.number)
    return None if found is None or "blocks" in found.extra else found


def _finite(vec: Array) -> bool:
    """Every entry finite, inside the caller's errstate: the sum of squares
    (BLAS ``dot``, about 1.4x the speed of a sum at 200,000 entries) is finite
    only when every entry is (non-negative terms: nothing cancels an inf or a
    NaN); one that overflows, from finite entries above 1e154, is re-checked
    entry by entry."""
    return math.isfinite(np.vdot(vec, vec)) or bool(np.isfinite(vec).all())


def _runs(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Adjacent spans merged (one slice assignment per run)."""
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and merged[-1][1] == a:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return tuple(merged)


def flat_plan(schedule: Schedule) -> FlatPlan | None:
    """The plan of ``schedule`` (cached on it) when it has one: no cyclic block,
    every step a single equation, not a program of scalars (those solve by
    levels), no per-block adjoint options, and an output; else None."""
    extras = schedule.extras
    if "flat" not in extras:
        ok = (not schedule.scalar and schedule.output is not None
              and not schedule.program.adjoint_options
              and all(type(step) is Single for step in schedule.steps))
        extras["flat"] = FlatPlan(schedule) if ok else None
    return extras["flat"]


def multiplier_plan(schedule: Schedule) -> FlatPlan | None:
    """The plan for the default multipliers of ``schedule`` (cached on it): the
    flat plan, or for a program with cyclic blocks the same sweep with each
    block solved in place, when every step is a single equation or a cyclic
    block (none grouped with others of its structure, none with unknowns of no
    entries), the program is not of scalars, declares no adjoint options nor
    backward modes, and has an output; else None."""
    extras = schedule.extras
    if "multiplier_plan" not in extras:
        plan = flat_plan(schedule)
        if plan is None:
            program = schedule.program
            steps = schedule.steps
            ok = (not schedule.scalar and schedule.output is not None
                  and not program.adjoint_options and not program.block_backward
                  and all(type(s) is Single or (type(s) is CyclicBlock and s.u_index.size)
                          for s in steps)
                  and len(grouped_steps(schedule)) == len(steps))
            plan = FlatPlan(schedule) if ok else None
        extras["multiplier_plan"] = plan
    return extras["multiplier_plan"]
