"""Compile a :class:`lagrad.ir.bulk.BulkProgram` straight from its columns.

Levels (longest path from the inputs) by vectorized frontiers, Batch steps by
(level, kind, operand pattern), the readout last, and the level plan: a few
numpy passes whatever the number of equations, no per-equation object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from lagrad.compile.levels import plan_from_edges
from lagrad.compile.schedule import Batch, Index, Schedule
from lagrad.ir.bulk import BulkEquations, BulkProgram

__all__ = ["compile_bulk", "Readout"]

Array = NDArray[np.float64]
Ints = NDArray[np.intp]


@dataclass(eq=False)
class Readout:
    """The output z_n = sum_j w_j z_j over every variable, as one dot product."""

    program: Any
    out: int
    weights: Array

    @property
    def equations(self) -> tuple[Any, ...]:
        return (self.program.equations[self.out - self.program.bulk.n_inputs],)

    def run(self, z: Array, out: Array | None = None) -> None:
        (z if out is None else out)[self.out] = self.weights @ z[:self.out]

    def pullback(self, z: Array, lam: Array, into: Array | None = None) -> None:
        (lam if into is None else into)[:self.out] += self.weights * lam[self.out]

    def pushforward(self, z: Array, zdot: Array, into: Array | None = None) -> None:
        (zdot if into is None else into)[self.out] += self.weights @ zdot[:self.out]

    def pullback_jvp(self, z: Array, zdot: Array, lam: Array, into: Array) -> None:
        """Linear: no second-order term."""

    def edges(self) -> list[tuple[Ints, Ints]]:
        return [(np.full(self.out, self.out, np.intp), np.arange(self.out, dtype=np.intp))]

    def jacobian_entries(self, z: Array) -> list[tuple[Any, Any, Any]]:
        (rows, cols), = self.edges()
        return [(rows, cols, self.weights)]

    def mark_parents(self, mask: NDArray[np.bool_]) -> None:
        """The readout reads every variable before it."""
        if mask[self.out]:
            mask[:self.out] = True

    def restrict(self, mask: NDArray[np.bool_]) -> Readout | None:
        return self if mask[self.out] else None


def _levels(bulk: BulkEquations) -> Ints:
    """Longest path from the inputs, by frontiers (Kahn's algorithm, one
    vectorized round per level)."""
    d, m = bulk.n_inputs, bulk.n_equations
    level = np.zeros(d + m, dtype=np.intp)
    between = bulk.parents >= d  # edges between equations, a parent read twice counted once
    between[:, 1] &= bulk.parents[:, 1] != bulk.parents[:, 0]
    eq, col = np.nonzero(between)
    src = bulk.parents[eq, col] - d
    indeg = np.bincount(eq, minlength=m)
    # children of each equation as CSR rows: scipy's counting sort, O(edges)
    adjacency = sp.csr_matrix((np.ones(len(eq), dtype=np.int8), (src, eq)), shape=(m, m))
    children, indptr = adjacency.indices.astype(np.intp), adjacency.indptr.astype(np.intp)
    frontier = np.flatnonzero(indeg == 0)
    owner = np.empty(m, dtype=np.intp)
    current = 1
    while frontier.size:
        level[d + frontier] = current
        starts, stops = indptr[frontier], indptr[frontier + 1]
        counts = stops - starts
        if counts.sum() == 0:
            break
        idx = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + \
            np.arange(counts.sum())
        reached = children[idx]
        np.subtract.at(indeg, reached, 1)
        ready = reached[indeg[reached] == 0]
        # drop repeats without sorting: keep the entry that wrote its owner slot last
        slot = np.arange(len(ready))
        owner[ready] = slot
        frontier = ready[owner[ready] == slot]
        current += 1
    return level


def compile_bulk(program: BulkProgram) -> Schedule:
    """The schedule of a bulk program: Batch steps by (level, kind, operand
    pattern), the readout last, and the level plan, all from the arrays. The
    plan computes J's values with one Batch per (kind, pattern) across all
    levels, so its cost does not grow with the number of levels."""
    bulk: BulkEquations = program.bulk
    d, m = bulk.n_inputs, bulk.n_equations
    level = _levels(bulk)
    is_var = bulk.parents >= 0
    pattern = is_var[:, 0].astype(np.intp) + 2 * (is_var[:, 1] & (bulk.arity == 2))
    kind_key = bulk.kind * 4 + pattern
    steps: list[Any] = _batches(program, level[d:] * (4 * len(bulk.primitives)) + kind_key,
                                is_var)
    groups: list[Any] = _batches(program, kind_key, is_var)
    levels = level
    if bulk.weights is not None:
        readout = Readout(program, d + m, bulk.weights)
        steps.append(readout)
        groups.append(readout)
        levels = np.concatenate([level, [int(level.max(initial=0)) + 1]])
    index = Index(program, np.arange(bulk.n_variables + 1, dtype=np.intp))  # all scalars
    schedule = Schedule(program, index, program.inputs, steps, levels, scalar=True,
                        output=program.output_or_none)
    edges = [e for g in groups for e in g.edges()] or [(np.zeros(0, np.intp),) * 2]
    rows = np.concatenate([r for r, _ in edges]).astype(np.intp)
    cols = np.concatenate([c for _, c in edges]).astype(np.intp)
    schedule.extras["levels"] = plan_from_edges(groups, rows, cols, levels[rows])
    return schedule


def _batches(program: BulkProgram, key: Ints, is_var: NDArray[np.bool_]) -> list[Any]:
    """One Batch per value of ``key`` (in increasing key order)."""
    bulk: BulkEquations = program.bulk
    d = bulk.n_inputs
    order = np.argsort(key.astype(np.int16) if key.max(initial=0) < 2**15 else key,
                       kind="stable")  # a radix sort for 16-bit keys
    counts = np.bincount(key) if key.size else np.zeros(0, np.intp)
    cuts = np.cumsum(counts[counts > 0])[:-1]  # group boundaries, without a pass over order
    out = []
    for group in np.split(order, cuts) if len(order) else []:
        first = int(group[0])
        operands: list[Any] = []
        var_positions = []
        for k in range(int(bulk.arity[first])):
            if is_var[first, k]:
                operands.append(bulk.parents[group, k])
                var_positions.append(k)
            else:
                operands.append(bulk.constants[group, k])
        out.append(Batch((), bulk.primitives[bulk.kind[first]], (d + group).astype(np.intp),
                         operands, tuple(var_positions), (False,) * len(var_positions),
                         lazy=_lazy_equations(program, d + group)))
    return out


def _lazy_equations(program: BulkProgram, outs: Ints) -> Any:
    return lambda: tuple(program.equations[int(i) - program.bulk.n_inputs] for i in outs)
