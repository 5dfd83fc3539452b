"""The schedule: a program compiled once into vectorized steps over flat z.

All values live in one flat float64 vector z (the concatenation of every
flattened variable, in program order); :class:`Index` (in
:mod:`lagrad.compile.index`) maps each variable to its slice. Multipliers
lambda and tangents zdot live in vectors of the same layout. That is the
layout of the multiplier system, so assembling (I - J)^T and solving it need
no translation.

Equations are ordered by *level* (longest path from the inputs). Equations of
one level never read each other, so scalar elementwise equations of the same
level and primitive are run as one numpy call on gathered operands (a
:class:`Batch`); everything else runs as a :class:`Single` step. The same
steps, reversed, are back-substitution; in order, forward substitution.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial
from operator import itemgetter
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.compile.index import Index, as_slice, merged_runs
from lagrad.errors import CycleError, ProgramError
from lagrad.ir import primitives as P
from lagrad.ir.blocks import sorted_unique
from lagrad.ir.program import Equation, Program, Variable

__all__ = ["Index", "Schedule", "Single", "Batch", "CyclicBlock", "compile_schedule", "single_of",
           "batch_of"]

Array = NDArray[np.float64]
BATCH_MIN = 4  # a level group smaller than this runs as Single steps


@dataclass(eq=False, slots=True)  # slots: a traced loop of fixed points makes 10^6
class Single:
    """One equation, evaluated with its arguments reshaped from z. ``ufunc``:
    the value is a numpy ufunc without parameters, computed in place."""

    eq: Equation
    start: int
    stop: int
    shape: tuple[int, ...]
    template: tuple[Any, ...]  # the constants in place, None where a variable goes
    vslots: tuple[tuple[int, int, int, tuple[int, ...]], ...]  # every variable argument
    dslots: tuple[tuple[int, int, int, tuple[int, ...]], ...]  # those to differentiate
    ufunc: bool = False

    @property
    def equations(self) -> tuple[Equation, ...]:
        return (self.eq,)

    def gather(self, z: Array) -> list[Any]:
        args = list(self.template)
        for pos, a, b, shape in self.vslots:
            args[pos] = z[a:b].reshape(shape)
        return args

    def run(self, z: Array, out: Array | None = None) -> None:
        """Write f_i(z) into ``out`` (default: z itself)."""
        eq = self.eq
        target = z if out is None else out
        if self.ufunc:  # straight into place: no temporary, no copy
            eq.primitive.value(*self.gather(z), out=target[self.start:self.stop].reshape(
                self.shape))
            return
        val = eq.primitive.value(*self.gather(z), **eq.params)
        target[self.start:self.stop] = np.ravel(val)

    def pullback(self, z: Array, lam: Array, into: Array | None = None) -> None:
        """Add lambda_i df_i/dz_j to ``into[j]`` (default: lam) for parents j."""
        if not self.dslots:
            return
        eq = self.eq
        into = lam if into is None else into
        g = lam[self.start:self.stop].reshape(self.shape)
        ans = z[self.start:self.stop].reshape(self.shape)
        args = self.gather(z)
        for pos, a, b, shape in self.dslots:
            eq.primitive.pullback_add(pos, into[a:b].reshape(shape), g, ans, args, eq.params)

    def pushforward(self, z: Array, zdot: Array, into: Array | None = None) -> None:
        """Add (J zdot)_i to ``into[i]`` (default: zdot)."""
        if not self.dslots:
            return
        eq = self.eq
        prim = eq.primitive
        if prim.partials is not None and self.ufunc:  # elementwise: each term added in place
            self._pushforward_terms(z, zdot, zdot if into is None else into)
            return
        ts: list[Array | None] = [None] * len(self.template)
        for pos, a, b, shape in self.dslots:
            ts[pos] = zdot[a:b].reshape(shape)
        ans = z[self.start:self.stop].reshape(self.shape)
        (zdot if into is None else into)[self.start:self.stop] += np.ravel(
            eq.primitive.pushforward(ts, ans, self.gather(z), eq.params))

    def pullback_jvp(self, z: Array, zdot: Array, lam: Array, into: Array) -> None:
        """Add to ``into[j]``, for parents j, the derivative of lambda_i df_i/dz_j
        along zdot with lambda held fixed: lambda_i sum_k d^2 f_i/dz_j dz_k zdot_k."""
        if not self.dslots:
            return
        eq = self.eq
        g = lam[self.start:self.stop].reshape(self.shape)
        if not g.any():
            return
        ts: list[Array | None] = [None] * len(self.template)
        for pos, a, b, shape in self.vslots:
            ts[pos] = zdot[a:b].reshape(shape)
        ans = z[self.start:self.stop].reshape(self.shape)
        args = self.gather(z)
        for pos, a, b, _ in self.dslots:
            d = eq.primitive.pullback_jvp(pos, g, ts, ans, args, eq.params)
            if d is not None:
                into[a:b] += np.ravel(d)

    def jacobian_entries(self, z: Array) -> list[tuple[Any, Any, Any]]:
        """(rows, cols, values) of this equation's rows of J."""
        eq = self.eq
        ans = z[self.start:self.stop].reshape(self.shape)
        args = self.gather(z)
        return [eq.primitive.local_entries(pos, ans, args, eq.params, (self.start, a))
                for pos, a, _, _ in self.dslots]

    def _pushforward_terms(self, z: Array, zdot: Array, vec: Array) -> None:
        """pushforward of an elementwise ufunc by Primitive.pushforward_add into
        the output's entries of ``vec``; the sum is made apart only when a
        tangent read lies there (vec is zdot) or may (vec a view of it)."""
        if vec is zdot:
            apart = any(a < self.stop and self.start < b for _, a, b, _ in self.dslots)
        else:
            apart = np.may_share_memory(vec, zdot)
        target = np.zeros(self.stop - self.start) if apart else vec[self.start:self.stop]
        prim = self.eq.primitive
        prim.pushforward_add(target.reshape(self.shape),
                             [(pos, zdot[a:b].reshape(shape)) for pos, a, b, shape in self.dslots],
                             z[self.start:self.stop].reshape(self.shape),
                             self.gather(z) if prim.constant_partials is None else ())
        if apart:
            vec[self.start:self.stop] += target

    def restricted(self, members: frozenset[int], inside: bool) -> Single:
        """This equation differentiated only by its parents in ``members``
        (``inside``), or only by those not in it."""
        dslots = tuple(slot for slot, (_, j) in zip(self.vslots, self.eq.slots)
                       if (j in members) == inside)
        return Single(self.eq, self.start, self.stop, self.shape, self.template, self.vslots,
                      dslots, self.ufunc)

    def mark_parents(self, mask: NDArray[np.bool_]) -> None:
        """Where the output is marked in ``mask``, mark every variable it reads."""
        if mask[self.start:self.stop].any():
            for _, a, b, _ in self.vslots:
                mask[a:b] = True

    def restrict(self, mask: NDArray[np.bool_]) -> Single | None:
        """This step if its output is marked in ``mask``, else None."""
        return self if mask[self.start:self.stop].any() else None


@dataclass(eq=False)
class Batch:
    """Scalar equations of one elementwise primitive and level, run together."""

    eqs: tuple[Equation, ...]
    primitive: P.Primitive
    out: NDArray[np.intp]
    operands: list[Any]  # per argument: gather indices (var) or stacked constants
    var_positions: tuple[int, ...]
    unique: tuple[bool, ...]  # per var position: no repeated gather index
    lazy: Any = None  # bulk programs: builds ``eqs`` on demand

    @property
    def equations(self) -> tuple[Equation, ...]:
        return self.eqs if self.lazy is None else self.lazy()

    def gather(self, z: Array) -> list[Array]:
        return [z[o] if k in self.var_positions else o for k, o in enumerate(self.operands)]

    def run(self, z: Array, out: Array | None = None) -> None:
        (z if out is None else out)[self.out] = self.primitive.value(*self.gather(z))

    def pullback(self, z: Array, lam: Array, into: Array | None = None) -> None:
        into = lam if into is None else into
        g = lam[self.out]
        args = self.gather(z)
        ans = z[self.out]
        partials = self.primitive.partials
        constant = self.primitive.constant_partials
        assert partials is not None
        for k, once in zip(self.var_positions, self.unique):
            if constant is not None:
                ct = g if constant[k] == 1.0 else constant[k] * g
            else:
                ct = g * partials(k, ans, *args)
            if once:
                into[self.operands[k]] += ct
            else:
                np.add.at(into, self.operands[k], ct)

    def pushforward(self, z: Array, zdot: Array, into: Array | None = None) -> None:
        args = self.gather(z)
        ans = z[self.out]
        partials = self.primitive.partials
        assert partials is not None
        total = np.zeros(len(self.out))
        for k in self.var_positions:
            total += partials(k, ans, *args) * zdot[self.operands[k]]
        (zdot if into is None else into)[self.out] += total

    def pullback_jvp(self, z: Array, zdot: Array, lam: Array, into: Array) -> None:
        """As :meth:`Single.pullback_jvp`, for every equation of the batch."""
        prim = self.primitive
        if prim.constant_partials is not None:
            return  # linear
        g = lam[self.out]
        args = self.gather(z)
        ans = z[self.out]
        for k, once in zip(self.var_positions, self.unique):
            acc = np.zeros(len(self.out))
            for m in self.var_positions:
                acc += prim.second_partials(k, m, ans, args, {}) * zdot[self.operands[m]]
            if once:
                into[self.operands[k]] += g * acc
            else:
                np.add.at(into, self.operands[k], g * acc)

    def edges(self) -> list[tuple[NDArray[np.intp], NDArray[np.intp]]]:
        """(rows, cols) of J's entries, in :meth:`jacobian_entries` order."""
        return [(self.out, self.operands[k]) for k in self.var_positions]

    def jacobian_entries(self, z: Array) -> list[tuple[Any, Any, Any]]:
        args = self.gather(z)
        ans = z[self.out]
        partials = self.primitive.partials
        assert partials is not None
        return [(self.out, self.operands[k],
                 np.broadcast_to(partials(k, ans, *args), self.out.shape))
                for k in self.var_positions]

    def partials_into(self, z: Array, w: Array, at: int) -> int:
        """Write :meth:`jacobian_entries`' values into ``w`` from position ``at``
        on (a constant partial spread by the assignment, no broadcast view);
        return the position after them."""
        args = self.gather(z)
        ans = z[self.out]
        partials = self.primitive.partials
        assert partials is not None
        n = len(self.out)
        for k in self.var_positions:
            w[at:at + n] = partials(k, ans, *args)
            at += n
        return at

    def mark_parents(self, mask: NDArray[np.bool_]) -> None:
        """Mark the operands of the equations whose output is marked in ``mask``."""
        keep = mask[self.out]
        for k in self.var_positions:
            mask[self.operands[k][keep]] = True

    def restrict(self, mask: NDArray[np.bool_]) -> Batch | None:
        """The equations whose output is marked in ``mask``, as a Batch (None if none)."""
        keep = mask[self.out]
        if keep.all():
            return self
        if not keep.any():
            return None
        operands = [o[keep] for o in self.operands]
        unique = tuple(len(sorted_unique(operands[k])) == int(keep.sum())
                       for k in self.var_positions)
        if self.lazy is None:
            eqs = tuple(eq for eq, kept in zip(self.eqs, keep) if kept)
            return Batch(eqs, self.primitive, self.out[keep], operands, self.var_positions,
                         unique)
        return Batch((), self.primitive, self.out[keep], operands, self.var_positions, unique,
                     lazy=partial(_kept_equations, self, keep))


@dataclass(eq=False)
class CyclicBlock:
    """A strongly connected component with a cycle, as one unit of the schedule.

    The unknowns U (the tear set) close every cycle: given z_U, the interior
    equations are acyclic and run in order; the closing equations then give
    G(z_U) = f_U(...). The ``inner_*`` steps differentiate only with respect
    to the block's own variables (for operators restricted to the block).
    """

    block: Any
    members: frozenset[int]
    unknowns: tuple[Variable, ...]
    u_index: NDArray[np.intp]
    i_index: NDArray[np.intp]
    s_index: NDArray[np.intp]
    interior_eqs: tuple[Equation, ...]  # in evaluation order
    closing_eqs: tuple[Equation, ...]  # one per unknown, in the unknowns' order
    index: Index
    runs: tuple[tuple[int, int], ...] = ()  # s_index as contiguous (start, stop) runs
    # the equations, built on first read (a plain slot: grouping 10^5 blocks
    # reads them several times each, and cached_property takes a lock)
    _eqs: tuple[Equation, ...] | None = field(default=None, init=False, repr=False)

    # the steps are built on first use: a group of same-structure blocks is
    # solved from the equations, and a program may hold 10^5 blocks
    @cached_property
    def interior(self) -> list[Single]:
        """The interior equations as steps, in evaluation order."""
        return [_single(eq, self.index, self.index.variables) for eq in self.interior_eqs]

    @cached_property
    def closing(self) -> list[Single]:
        """The closing equations as steps (one per unknown)."""
        return [_single(eq, self.index, self.index.variables) for eq in self.closing_eqs]

    # the restricted steps are built on first use: a group of same-structure
    # blocks is solved without them, and a program may hold 10^5 blocks
    @cached_property
    def inner_interior(self) -> list[Single]:
        """The interior steps, differentiating only by the block's own variables."""
        return [s.restricted(self.members, True) for s in self.interior]

    @cached_property
    def inner_closing(self) -> list[Single]:
        """The closing steps, differentiating only by the block's own variables."""
        return [s.restricted(self.members, True) for s in self.closing]

    @cached_property
    def outer(self) -> list[Single]:
        """Every step, differentiating only by parents outside the block."""
        return [s.restricted(self.members, False) for s in self.interior + self.closing]

    @cached_property
    def pos_u(self) -> NDArray[np.intp]:
        """Positions of the unknowns' entries within s_index (which is sorted)."""
        return np.searchsorted(self.s_index, self.u_index)

    @cached_property
    def pos_i(self) -> NDArray[np.intp]:
        """Positions of the interior entries within s_index."""
        return np.searchsorted(self.s_index, self.i_index)

    @cached_property
    def u_at(self) -> slice | NDArray[np.intp]:
        """u_index as a slice when it is one contiguous run (cheaper to index)."""
        return as_slice(self.u_index)

    @cached_property
    def i_at(self) -> slice | NDArray[np.intp]:
        """i_index as a slice when it is one contiguous run."""
        return as_slice(self.i_index)

    @cached_property
    def unknown_spans(self) -> frozenset[tuple[int, int]]:
        """The (start, stop) spans of z of the block's unknowns."""
        spans, start = [], 0
        for v in self.unknowns:
            first = int(self.u_index[start])
            spans.append((first, first + v.size))
            start += v.size
        return frozenset(spans)

    @cached_property
    def sole_contributions(self) -> frozenset[tuple[int, int]]:
        """Spans of the block's multipliers outside the unknowns that receive
        one contribution in a product with (dG/du)^T (the unknowns' being
        its result). Needs the unknowns to be one run of z."""
        counts: dict[tuple[int, int], int] = {}
        for step in self.inner_closing + self.inner_interior:
            for _, a, b, _ in step.dslots:
                counts[(a, b)] = counts.get((a, b), 0) + 1
        at = self.u_at
        assert isinstance(at, slice)
        return frozenset(span for span, n in counts.items()
                         if n == 1 and (span[1] <= at.start or span[0] >= at.stop))

    def zero(self, vec: Array) -> None:
        """vec[s_index] = 0, by slices (a memset per run, no fancy indexing)."""
        for a, b in self.runs:
            vec[a:b] = 0.0

    @property
    def equations(self) -> tuple[Equation, ...]:
        eqs = self._eqs
        if eqs is None:
            eqs = self._eqs = self.interior_eqs + self.closing_eqs
        return eqs

    @property
    def steps(self) -> list[Single]:
        return self.interior + self.closing

    def run(self, z: Array, out: Array | None = None) -> None:
        """Write f(z) for every equation of the block (one evaluation, no solve)."""
        for step in self.steps:
            step.run(z, out if out is not None else z)

    def pullback(self, z: Array, lam: Array, into: Array | None = None) -> None:
        assert into is not None, "a cyclic block is back-substituted by a linear solve"
        for step in self.steps:
            step.pullback(z, lam, into)

    def pushforward(self, z: Array, zdot: Array, into: Array | None = None) -> None:
        assert into is not None, "a cyclic block is forward-substituted by a linear solve"
        for step in self.steps:
            step.pushforward(z, zdot, into)

    def pullback_jvp(self, z: Array, zdot: Array, lam: Array, into: Array) -> None:
        """Every equation's second-order term (the block's solve is done by the
        caller, with the same I - J_SS as the multipliers')."""
        for step in self.steps:
            step.pullback_jvp(z, zdot, lam, into)

    def jacobian_entries(self, z: Array) -> list[tuple[Any, Any, Any]]:
        return [e for step in self.steps for e in step.jacobian_entries(z)]

    def mark_parents(self, mask: NDArray[np.bool_]) -> None:
        """A block is strongly connected: one marked variable marks all of it,
        and then everything its equations read."""
        if mask[self.s_index].any():
            mask[self.s_index] = True
            for step in self.steps:
                step.mark_parents(mask)

    def restrict(self, mask: NDArray[np.bool_]) -> CyclicBlock | None:
        """This block if it is marked in ``mask``, else None."""
        return self if mask[self.s_index].any() else None


Step = Single | Batch | CyclicBlock


@dataclass(eq=False)
class Schedule:
    """A program compiled for evaluation: index map, inputs, ordered steps."""

    program: Program
    index: Index
    inputs: tuple[Variable, ...]
    steps: list[Step]
    levels: NDArray[np.intp]  # per variable: longest path from the inputs
    scalar: bool = False  # every equation scalar and elementwise (see levels.py)
    extras: dict[str, Any] = field(default_factory=dict)  # plans built on demand
    output: Variable | None = None  # the program's output when it was compiled

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without its plans: generated code and bound closures do not
        pickle, and every entry of ``extras`` is rebuilt on demand."""
        state = dict(self.__dict__)
        state["extras"] = {}
        return state

    @property
    def size(self) -> int:
        return self.index.size

    @property
    def output_variable(self) -> Variable:
        """z_n as it was when this schedule was compiled (a later
        ``program.output(...)`` makes a new schedule, not a new output here)."""
        if self.output is None:
            raise ProgramError("the program had no output when it was solved; call "
                               "program.output(expr), then solve again")
        return self.output


def compile_schedule(program: Program) -> Schedule:
    """Order the blocks, level and group the equations of a general program
    (use :func:`lagrad.compile.compile_program`, which caches the result)."""
    variables = program.variables
    _check_defined(program)
    index = Index(program)
    levels = [0] * len(variables)  # a list: reading numpy scalars one by one is slow
    groups: dict[tuple[Any, ...], list[Equation]] = defaultdict(list)
    singles: list[tuple[int, Equation]] = []
    timed: list[tuple[int, int, Step]] = []
    scalar = True
    init_sources = program.init_sources
    defining, bounds = program.defining, index.bounds
    for block in program.blocks:
        if block.cyclic:
            unit = _cyclic(program, block, index)
            inside = unit.members
            starts = [init_sources[u.index] for u in unit.unknowns
                      if u.index in init_sources]  # solved after its start values
            level = 1 + max([levels[j] for eq in unit.equations for j in eq.parents
                             if j not in inside] + [levels[j] for j in starts], default=0)
            for v in block.variables:
                levels[v.index] = level
            timed.append((level, len(timed), unit))
            scalar = False
            continue
        eq = defining(block.variables[0].index)
        if eq is None:
            continue  # an input
        level = levels[eq.out] = 1 + max([levels[j] for j in eq.parents], default=0)
        if _batchable(eq, bounds):
            groups[(level, eq.primitive, tuple([isinstance(a, int) for a in eq.args]))].append(eq)
        else:
            singles.append((level, eq))
            scalar = False
    for key, eqs in groups.items():
        if len(eqs) >= BATCH_MIN:
            timed.append((int(key[0]), len(timed), batch_of(eqs, index)))
        else:
            singles += [(int(key[0]), eq) for eq in eqs]
    for level, eq in singles:
        timed.append((level, len(timed), _single(eq, index, variables)))
    timed.sort(key=itemgetter(0))  # stable: creation order within a level
    steps = [s for _, _, s in timed]
    return Schedule(program, index, program.inputs, steps, np.array(levels, dtype=np.intp),
                    scalar and bool(steps), output=program.output_or_none)


def _check_defined(program: Program) -> None:
    """Raise if a non-input variable has no equation. Each equation defines one
    non-input variable, and none twice: when the counts agree, all are."""
    variables = program.variables
    n_inputs = sum(1 for v in variables if v.kind == "input")
    if n_inputs + len(program.equations) == len(variables):
        return
    for v in variables:
        if v.kind != "input" and program.defining(v.index) is None:
            what = "unknown" if v.kind == "unknown" else "variable"
            raise ProgramError(f"{what} {v.name!r} is never defined: give it an equation with "
                               f"program.define({v.name!r}, ...) or program.root(...)")


def _batchable(eq: Equation, bounds: list[int]) -> bool:
    """Scalar and elementwise (sizes read from the index's offsets)."""
    if not eq.primitive.elementwise or eq.params or bounds[eq.out + 1] - bounds[eq.out] != 1:
        return False
    return all((bounds[a + 1] - bounds[a] if isinstance(a, int) else a.size) == 1
               for a in eq.args)


def batch_of(eqs: list[Equation], index: Index) -> Batch:
    """One Batch step for scalar elementwise equations of one primitive and pattern."""
    first = eqs[0]
    out = index.offsets[[eq.out for eq in eqs]]
    operands: list[Any] = []
    var_positions = []
    unique = []
    for k, a in enumerate(first.args):
        if isinstance(a, int):
            idx = index.offsets[[eq.args[k] for eq in eqs]]
            operands.append(idx)
            var_positions.append(k)
            unique.append(len(sorted_unique(idx)) == len(idx))
        else:
            operands.append(np.array([float(np.ravel(eq.args[k])[0]) for eq in eqs]))
    return Batch(tuple(eqs), first.primitive, out, operands, tuple(var_positions),
                 tuple(unique))


def single_of(eq: Equation, index: Index) -> Single:
    """One equation as a :class:`Single` step (e.g. taken out of a :class:`Batch`)."""
    return _single(eq, index, index.variables)


def _single(eq: Equation, index: Index, variables: Sequence[Variable]) -> Single:
    """A Single step (derivatives for every parent)."""
    bounds = index.bounds
    template = tuple([None if isinstance(a, int) else a for a in eq.args])
    vslots = tuple([(k, bounds[j], bounds[j + 1], variables[j].shape) for k, j in eq.slots])
    out = eq.out
    ufunc = not eq.params and isinstance(eq.primitive.value, np.ufunc)
    return Single(eq, bounds[out], bounds[out + 1], variables[out].shape, template, vslots,
                  vslots, ufunc)


def _cyclic(program: Program, block: Any, index: Index) -> CyclicBlock:
    unknowns = block.unknowns
    if not unknowns:  # cycles can only be closed through unknowns
        raise CycleError(f"{block.name} is cyclic but has no unknown")
    members = frozenset(v.index for v in block.variables)
    # with the unknowns given, the rest of the block is acyclic, and creation
    # order is topological for it (only unknowns are read before they exist)
    interior_vars = [v for v in block.variables if v.kind != "unknown"]
    interior = tuple([_defining(program, v) for v in interior_vars])
    closing = tuple([_defining(program, v) for v in unknowns])
    bounds = index.bounds
    # positions in block order (unknowns and interior: that order, filtered)
    s_pos: list[int] = []
    u_pos: list[int] = []
    i_pos: list[int] = []
    spans = []
    for v in block.variables:
        a, b = bounds[v.index], bounds[v.index + 1]
        spans.append((a, b))
        s_pos.extend(range(a, b))
        (u_pos if v.kind == "unknown" else i_pos).extend(range(a, b))
    return CyclicBlock(
        block=block, members=members, unknowns=unknowns, u_index=np.array(u_pos, dtype=np.intp),
        i_index=np.array(i_pos, dtype=np.intp), s_index=np.array(s_pos, dtype=np.intp),
        interior_eqs=interior, closing_eqs=closing, index=index, runs=merged_runs(spans))


def _kept_equations(batch: Batch, keep: NDArray[np.bool_]) -> tuple[Equation, ...]:
    """The equations of ``batch`` where ``keep`` is set (a restricted bulk Batch)."""
    return tuple(eq for eq, kept in zip(batch.equations, keep) if kept)


def _defining(program: Program, v: Variable) -> Equation:
    eq = program.defining(v.index)
    assert eq is not None, f"{v.name} is checked to be defined before compiling"
    return eq
