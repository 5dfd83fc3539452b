"""Compile a :class:`lagrad.ir.bulk.BulkProgram` straight from its columns.

Levels (longest path from the inputs) by blocked relaxation, the variables
laid out level by level (:class:`PermutedIndex`),
Batch steps by (level, kind, operand pattern) each writing a contiguous run,
the readout last, and the bulk plan (:mod:`lagrad.compile.bulkplan`): a few
numpy passes whatever the number of equations, no per-equation object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.compile.bulkplan import BulkPlan
from lagrad.compile.schedule import Batch, Index, Schedule
from lagrad.ir.bulk import BulkEquations, BulkProgram
from lagrad.ir.program import Program, Variable

__all__ = ["compile_bulk", "Readout", "PermutedIndex"]

Array = NDArray[np.float64]
Ints = NDArray[np.intp]


class PermutedIndex(Index):
    """Scalar variables at any flat positions: variable j at ``position[j]``
    (a bulk program lays its variables out level by level, see
    :mod:`lagrad.compile.bulk`). It has no ``offsets``: ask it through its
    methods."""

    def __init__(self, program: Program, position: NDArray[np.intp]) -> None:
        self.variables = program.variables
        self.offsets = None  # type: ignore[assignment]
        self.position = position
        self.size = int(position.size)
        self.program = program

    @cached_property
    def inverse(self) -> NDArray[np.intp]:
        """The variable at each flat position."""
        inverse = np.empty_like(self.position)
        inverse[self.position] = np.arange(self.size, dtype=self.position.dtype)
        return inverse

    def slice(self, j: int) -> slice:
        p = int(self.position[j])
        return slice(p, p + 1)

    def positions(self, variables: Sequence[Variable]) -> NDArray[np.intp]:
        return self.position[[v.index for v in variables]].astype(np.intp)

    def owners(self, positions: NDArray[np.intp]) -> NDArray[np.intp]:
        return self.inverse[positions]

    def starts(self) -> NDArray[np.intp]:
        return self.position

    def spread(self, per_variable: NDArray[Any]) -> NDArray[Any]:
        out = np.empty(self.size, dtype=np.asarray(per_variable).dtype)
        out[self.position] = per_variable[:self.size]
        return out


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

    def partials_into(self, z: Array, w: Array, at: int) -> int:
        """As :meth:`lagrad.compile.schedule.Batch.partials_into`."""
        w[at:at + self.out] = self.weights
        return at + self.out

    def mark_parents(self, mask: NDArray[np.bool_]) -> None:
        """The readout reads every variable before it."""
        if mask[self.out]:
            mask[:self.out] = True

    def restrict(self, mask: NDArray[np.bool_]) -> Readout | None:
        return self if mask[self.out] else None


BLOCK = 8192  # equations relaxed together when computing levels
PASSES = 12  # relaxation passes on a block before it is split in two
SEQUENTIAL = 32  # a block this small that still changes is done one equation at a time


def _levels(bulk: BulkEquations) -> Ints:
    """Longest path from the inputs, per variable.

    Parents come before their children, so the equations are taken in blocks
    of consecutive ones: parents before a block have their final level, and
    the block's own levels are relaxed (level = 1 + max over parents) until
    they stop changing: one vectorized pass over the block, then a few over
    its equations that read inside it, for a wide graph. A block that
    is still changing after ``PASSES`` passes (a long chain inside it) is
    split in two, down to a few equations done one by one, so a chain costs
    O(length) and never O(length^2)."""
    d, m = bulk.n_inputs, bulk.n_equations
    level = np.zeros(d + m + 1, dtype=np.intp)  # last entry: 0, read by a constant's -1
    for lo in range(0, m, BLOCK):
        _relax(level, bulk.parents, d, lo, min(lo + BLOCK, m))
    return level[:-1]


def _relax(level: Ints, parents: Ints, d: int, lo: int, hi: int) -> None:
    """Final levels of equations lo..hi-1, those of every earlier variable being final.

    One pass over the block gives every equation whose parents are all
    before the block its final level; only the others (a parent inside the
    block) are then relaxed again, until they stop changing."""
    own = level[d + lo:d + hi]
    pa, pb = parents[lo:hi, 0], parents[lo:hi, 1]
    if hi - lo <= SEQUENTIAL:
        for k in range(hi - lo):
            own[k] = 1 + max(level[pa[k]], level[pb[k]])
        return
    own[:] = 0
    np.maximum(level[pa], level[pb], out=own)
    own += 1
    inner = np.flatnonzero((pa >= d + lo) | (pb >= d + lo))
    pa, pb = pa[inner], pb[inner]
    for _ in range(PASSES):
        new = np.maximum(level[pa], level[pb])
        new += 1
        if np.array_equal(new, own[inner]):
            return
        own[inner] = new
    mid = (lo + hi) // 2
    own[:] = 0
    _relax(level, parents, d, lo, mid)
    _relax(level, parents, d, mid, hi)


def _layout(bulk: BulkEquations, level: Ints) -> tuple[Ints, Ints, Ints, Ints, Ints]:
    """Equations sorted by (level, kind, operand pattern): the order, the
    sorted keys, each variable's flat position (inputs first, in order; then
    the equations in that order; the readout last), and the first parents
    in that order, as variables and as positions.

    Within a run of one key the equations are sorted by the position of
    their first parent, placed before them (at a lower level), so the forward
    pass gathers, and the sweep scatter-adds, that operand in increasing
    order: fewer cache misses than at random positions (measured on the
    gradient of a random DAG of 10^6 equations: about 15% off by regions of
    z, 2^8 of them, and 4.5% more by positions). Each level is two stable
    radix sorts of 16-bit keys: by the position's low 16 bits, then by the
    key and the position's high bits (the lowest of which are dropped, to
    regions again, only when keys and positions need more than 31 bits)."""
    d, m = bulk.n_inputs, bulk.n_equations
    is_var = bulk.parents >= 0
    pattern = is_var[:, 0].astype(np.intp) + 2 * (is_var[:, 1] & (bulk.arity == 2))
    key = level[d:] * (4 * len(bulk.primitives)) + bulk.kind * 4 + pattern
    small = key.astype(np.int16) if key.max(initial=0) < 2**15 else key
    order = np.argsort(small, kind="stable")  # a radix sort for 16-bit keys
    position = np.arange(bulk.n_variables, dtype=np.intp)
    if small.dtype == np.int16:
        counts = np.bincount(small) if m else np.zeros(0, np.intp)
        present = np.flatnonzero(counts)
        counts = counts[present]
    else:
        present, counts = np.unique(small, return_counts=True)
    keys = np.repeat(present.astype(np.intp), counts)  # key[order], without a gather
    kinds = 4 * len(bulk.primitives)  # keys within one level
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)
    new_level = np.concatenate([[True], present[1:] // kinds != present[:-1] // kinds])
    cuts = starts[new_level][1:]
    first = bulk.parents[:, 0].take(order)
    placed = np.empty(m, dtype=np.intp)  # the first parent's position
    for lo, hi in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [m]]) if m else []):
        # one level: its parents are placed
        # (a constant operand, -1, reads the last position: it is not used)
        at = position.take(first[lo:hi])
        sort = _by_key_then_position(keys[lo:hi] - keys[lo], at, kinds, position.size)
        order[lo:hi] = order[lo:hi][sort]
        first[lo:hi] = first[lo:hi][sort]
        placed[lo:hi] = at[sort]
        position[d + order[lo:hi]] = np.arange(d + lo, d + hi)
    return order, keys, position, first, placed


def _by_key_then_position(key: Ints, at: Ints, n_keys: int, n_positions: int) -> Ints:
    """The stable order of (key, at), keys in [0, n_keys) and positions in
    [0, n_positions), by two radix sorts of 16-bit keys (numpy's stable sort of
    16-bit integers): by the low 16 bits of ``at``, then by the key and the
    high bits. Where those need more than 15 bits, the lowest of the high bits
    are dropped: positions then sort by regions of 2^16 or more."""
    high = max(n_positions.bit_length() - 16, 0)
    drop = max(int(n_keys - 1).bit_length() + high - 15, 0)
    sort = np.argsort((at & 0xFFFF).astype(np.uint16), kind="stable")
    within = (key.take(sort) << (high - drop) | at.take(sort) >> (16 + drop)).astype(np.int16)
    return sort.take(np.argsort(within, kind="stable"))


def compile_bulk(program: BulkProgram) -> Schedule:
    """The schedule of a bulk program, all from the arrays.

    Variables are laid out level by level (:class:`PermutedIndex`): the
    equations of one level and kind are one Batch writing a contiguous run of
    z, and the multipliers of one level are a contiguous run of lambda. The
    plan (:class:`lagrad.compile.bulkplan.BulkPlan`) runs the forward pass
    with J's values and the multiplier sweep from that layout."""
    bulk: BulkEquations = program.bulk
    d, m = bulk.n_inputs, bulk.n_equations
    level = _levels(bulk)
    order, keys, position, first, placed = _layout(bulk, level)
    sorted_parents = [first, bulk.parents[:, 1].take(order)]
    parents = [placed, position.take(sorted_parents[1])]  # -1 reads the last: unused
    steps: list[Any] = _batches(program, order, keys, sorted_parents, parents)
    levels = level
    readout = None
    if bulk.weights is not None:
        weights = np.zeros(d + m)
        weights[position[:d + m]] = bulk.weights
        readout = Readout(program, d + m, weights)
        steps.append(readout)
        levels = np.concatenate([level, [int(level.max(initial=0)) + 1]])
    index = PermutedIndex(program, position)
    schedule = Schedule(program, index, program.inputs, steps, levels, scalar=True,
                        output=program.output_or_none)
    kinds = 4 * len(bulk.primitives)
    run_levels = [int(keys[int(step.out[0]) - d]) // kinds for step in steps
                  if isinstance(step, Batch)]
    schedule.extras["levels"] = BulkPlan(schedule, d, steps, run_levels, readout, parents)
    return schedule


def _batches(program: BulkProgram, order: Ints, keys: Ints, sorted_parents: list[Ints],
             slots: list[Ints]) -> list[Any]:
    """One Batch per run of equal ``keys`` (equations ``order``), reading and
    writing flat positions. The operands of all runs are views of one array
    per argument slot, in flat-position order (parents as positions,
    constants as values)."""
    bulk: BulkEquations = program.bulk
    d = bulk.n_inputs
    cuts = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    bounds = np.concatenate([[0], cuts, [keys.size]]).astype(int) if keys.size else []
    outs = np.arange(d, d + len(order), dtype=np.intp)
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        first = int(order[lo])
        operands: list[Any] = []
        var_positions = []
        for k in range(int(bulk.arity[first])):
            if sorted_parents[k][lo] >= 0:
                operands.append(slots[k][lo:hi])
                var_positions.append(k)
            else:
                operands.append(bulk.constants[order[lo:hi], k])
        out.append(Batch((), bulk.primitives[bulk.kind[first]], outs[lo:hi], operands,
                         tuple(var_positions), (False,) * len(var_positions),
                         lazy=_lazy_equations(program, order[lo:hi])))
    return out


def _lazy_equations(program: BulkProgram, numbers: Ints) -> Any:
    return lambda: tuple(program.equations[int(k)] for k in numbers)
