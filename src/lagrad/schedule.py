"""The schedule: a program compiled once into vectorized steps over flat z.

All values live in one flat float64 vector z (the concatenation of every
flattened variable, in program order); :class:`Index` maps each variable to
its slice. Multipliers lambda and tangents zdot live in vectors of the same
layout. That is the layout of the multiplier system, so assembling
(I - J)^T and solving it need no translation.

Equations are ordered by *level* (longest path from the inputs). Equations of
one level never read each other, so scalar elementwise equations of the same
level and primitive are run as one numpy call on gathered operands (a
:class:`Batch`); everything else runs as a :class:`Single` step. The same
steps, reversed, are back-substitution; in order, forward substitution.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import primitives as P
from .errors import CycleError, ProgramError
from .program import Equation, Program, Variable

__all__ = ["Index", "Schedule", "Single", "Batch", "compile_program"]

Array = NDArray[np.float64]
BATCH_MIN = 4  # a level group smaller than this runs as Single steps


class Index:
    """Variable -> slice of the flat vector z, in program order."""

    def __init__(self, program: Program) -> None:
        sizes = [v.size for v in program.variables]
        self.offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.intp)
        self.size = int(self.offsets[-1])
        self.variables = tuple(program.variables)
        self.program = program

    def slice(self, j: int) -> slice:
        return slice(int(self.offsets[j]), int(self.offsets[j + 1]))

    def __getitem__(self, v: Variable | str) -> slice:
        if isinstance(v, str):
            v = self.program.variable(v)
        elif v.program is not self.program:
            raise ProgramError(f"variable {v.name!r} belongs to another program")
        return self.slice(v.index)

    def __iter__(self) -> Iterator[Variable]:
        return iter(self.variables)

    def __len__(self) -> int:
        return len(self.variables)

    def items(self) -> Iterator[tuple[Variable, slice]]:
        return ((v, self.slice(v.index)) for v in self.variables)

    def owner(self, position: int) -> Variable:
        """The variable whose slice contains flat ``position``."""
        return self.variables[int(np.searchsorted(self.offsets, position, side="right")) - 1]


@dataclass(eq=False)
class Single:
    """One equation, evaluated with its arguments reshaped from z."""

    eq: Equation
    start: int
    stop: int
    shape: tuple[int, ...]
    template: list[Any]
    vslots: tuple[tuple[int, int, int, tuple[int, ...]], ...]

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
        val = eq.primitive.value(*self.gather(z), **eq.params)
        (z if out is None else out)[self.start:self.stop] = np.ravel(val)

    def pullback(self, z: Array, lam: Array, into: Array | None = None) -> None:
        """Add lambda_i df_i/dz_j to ``into[j]`` (default: lam) for parents j."""
        eq = self.eq
        into = lam if into is None else into
        g = lam[self.start:self.stop].reshape(self.shape)
        ans = z[self.start:self.stop].reshape(self.shape)
        args = self.gather(z)
        for pos, a, b, _ in self.vslots:
            into[a:b] += np.ravel(eq.primitive.pullback(pos, g, ans, args, eq.params))

    def pushforward(self, z: Array, zdot: Array, into: Array | None = None) -> None:
        """Add (J zdot)_i to ``into[i]`` (default: zdot)."""
        eq = self.eq
        ts: list[Array | None] = [None] * len(self.template)
        for pos, a, b, shape in self.vslots:
            ts[pos] = zdot[a:b].reshape(shape)
        ans = z[self.start:self.stop].reshape(self.shape)
        (zdot if into is None else into)[self.start:self.stop] += np.ravel(
            eq.primitive.pushforward(ts, ans, self.gather(z), eq.params))

    def jacobian_entries(self, z: Array) -> list[tuple[Any, Any, Any]]:
        """(rows, cols, values) of this equation's rows of J."""
        eq = self.eq
        ans = z[self.start:self.stop].reshape(self.shape)
        args = self.gather(z)
        out = []
        for pos, a, _, _ in self.vslots:
            block = eq.primitive.local_jacobian(pos, ans, args, eq.params).tocoo()
            out.append((block.row + self.start, block.col + a, block.data))
        return out


@dataclass(eq=False)
class Batch:
    """Scalar equations of one elementwise primitive and level, run together."""

    eqs: tuple[Equation, ...]
    primitive: P.Primitive
    out: NDArray[np.intp]
    operands: list[Any]  # per argument: gather indices (var) or stacked constants
    var_positions: tuple[int, ...]
    unique: tuple[bool, ...]  # per var position: no repeated gather index

    @property
    def equations(self) -> tuple[Equation, ...]:
        return self.eqs

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
        assert partials is not None
        for k, once in zip(self.var_positions, self.unique):
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

    def jacobian_entries(self, z: Array) -> list[tuple[Any, Any, Any]]:
        args = self.gather(z)
        ans = z[self.out]
        partials = self.primitive.partials
        assert partials is not None
        return [(self.out, self.operands[k],
                 np.broadcast_to(partials(k, ans, *args), self.out.shape))
                for k in self.var_positions]


Step = Single | Batch


@dataclass(eq=False)
class Schedule:
    """A program compiled for evaluation: index map, inputs, ordered steps."""

    program: Program
    index: Index
    inputs: tuple[Variable, ...]
    steps: list[Step]
    levels: NDArray[np.intp]  # per variable: longest path from the inputs

    @property
    def size(self) -> int:
        return self.index.size


def compile_program(program: Program) -> Schedule:
    """Order, level and group the equations of an acyclic program."""
    return program.cached("schedule", _compile)


def _compile(program: Program) -> Schedule:
    variables = program.variables
    for v in variables:
        if v.kind != "input" and program.equation(v) is None:
            raise ProgramError(f"variable {v.name!r} has no defining equation; define it "
                               "or make it an input")
    order = _topological_equations(program)
    index = Index(program)
    levels = np.zeros(len(variables), dtype=np.intp)
    for eq in order:
        levels[eq.out] = 1 + max((levels[j] for j in eq.parents), default=0)
    groups: dict[tuple[Any, ...], list[Equation]] = defaultdict(list)
    singles: list[tuple[int, Equation]] = []
    for eq in order:
        if _batchable(eq, variables):
            key = (levels[eq.out], eq.primitive,
                   tuple(isinstance(a, int) for a in eq.args))
            groups[key].append(eq)
        else:
            singles.append((int(levels[eq.out]), eq))
    timed: list[tuple[int, int, Step]] = []
    for key, eqs in groups.items():
        if len(eqs) >= BATCH_MIN:
            timed.append((int(key[0]), len(timed), _batch(eqs, index)))
        else:
            singles += [(int(key[0]), eq) for eq in eqs]
    for level, eq in singles:
        timed.append((level, len(timed), _single(eq, index, variables)))
    timed.sort(key=lambda t: (t[0], t[1]))
    return Schedule(program, index, program.inputs, [s for _, _, s in timed], levels)


def _topological_equations(program: Program) -> list[Equation]:
    eqs = program.equations
    if all(j < eq.out for eq in eqs for j in eq.parents):
        return sorted(eqs, key=lambda e: e.out)  # creation order is topological
    import networkx as nx

    graph = program.graph
    try:
        order = list(nx.topological_sort(graph))
    except nx.NetworkXUnfeasible:
        cycle = nx.find_cycle(graph)
        names = " -> ".join(program.variables[j].name for j, _ in cycle)
        raise CycleError(f"the program has a cycle ({names}); this operation needs an "
                         "acyclic program") from None
    by_out = {eq.out: eq for eq in eqs}
    return [by_out[i] for i in order if i in by_out]


def _batchable(eq: Equation, variables: Sequence[Variable]) -> bool:
    if not eq.primitive.elementwise or eq.params or variables[eq.out].size != 1:
        return False
    return all((variables[a].size if isinstance(a, int) else a.size) == 1 for a in eq.args)


def _batch(eqs: list[Equation], index: Index) -> Batch:
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
            unique.append(len(np.unique(idx)) == len(idx))
        else:
            operands.append(np.array([float(np.ravel(eq.args[k])[0]) for eq in eqs]))
    return Batch(tuple(eqs), first.primitive, out, operands, tuple(var_positions),
                 tuple(unique))


def _single(eq: Equation, index: Index, variables: Sequence[Variable]) -> Single:
    sl = index.slice(eq.out)
    template = [None if isinstance(a, int) else a for a in eq.args]
    vslots = tuple((k, int(index.offsets[j]), int(index.offsets[j + 1]), variables[j].shape)
                   for k, j in eq.slots)
    return Single(eq, sl.start, sl.stop, variables[eq.out].shape, template, vslots)

