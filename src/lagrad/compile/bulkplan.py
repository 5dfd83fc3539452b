"""The forward pass and the multiplier sweep of a bulk program, from its
level-by-level layout.

:func:`lagrad.compile.bulk.compile_bulk` lays a bulk program's variables out
level by level, each (level, kind, operand pattern) a contiguous run of z.
The plan made there runs

* the forward pass: per run, the operands gathered, the values written into
  the run with one ufunc call (``out=``), and J's values for the run, d f_i /
  d z_a(i) and d f_i / d z_b(i), written into a vector of edge weights W in
  the same order (contiguous). The partials are computed while the operands
  are at hand, so the sweep does not gather them again;
* the multiplier sweep, (I - J)^T lambda = rhs, one level at a time from the
  top: the level's multipliers are a contiguous run of lambda, so its
  contributions are W's run times that run, added into the parents by one
  scatter-add per argument slot (:func:`lagrad.numeric.scatter_add`, a
  compiled loop with int32 positions):

      lambda_j += sum_{i at level L, j parent of i} W_ij lambda_i

That is back-substitution with one vectorized step per level and no per-call
permutation: the cost is one random gather per operand in the forward pass
and one random scatter-add per edge in the sweep.

W belongs to the z it was computed with: the plan keeps the last one (a weak
reference to z). A sweep at another z (or after the forward pass of another
solve) computes the partials again from z. The tangent sweep, a sweep
restricted to a mask, and J's assembly use the general level plan
(:class:`lagrad.compile.levels.LevelPlan`), built on first use.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.compile.levels import LevelPlan, levels_solve, plan_from_edges
from lagrad.compile.schedule import Batch, Schedule
from lagrad.ir import elementwise
from lagrad.numeric import compiled_scatter, index_array, scatter_add

__all__ = ["BulkPlan", "bulk_plan"]

Array = NDArray[np.float64]
Ints = NDArray[np.intp]
SPARE = 2  # edge-weight vectors kept for reuse per plan


def _refcount_of_free() -> int:
    """What sys.getrefcount reports for a spare vector that only the spare
    list refers to, read as :meth:`BulkPlan._weights_buffer` reads it."""
    spare = [np.empty(1)]
    return _counts(spare)[0]


def _counts(spare: list[Array]) -> list[int]:
    return [sys.getrefcount(buf) for buf in spare]


_FREE = _refcount_of_free()


class _Run:
    """One Batch step of the forward pass: its run [start, stop) of z and its
    operands; its partials go to W[k, start - d:stop - d] for each variable slot k.

    Partials known when the plan is made (``fixed``: the constant ones of add
    or sub, and the constant factor of a product with a constant) are written
    once per W (:meth:`BulkPlan._weights_buffer`); a product of two variables
    gathers its operands straight into W (each is the other's partial,
    ``pair``); sin, cos, tanh and sigmoid write theirs in place (``into``,
    :data:`lagrad.ir.elementwise.PARTIALS_INTO`)."""

    __slots__ = ("start", "stop", "operands", "var_positions", "ufunc", "fixed", "value",
                 "slots", "out", "derivative", "w_runs", "pair", "into")

    def __init__(self, step: Batch, d: int) -> None:
        prim = step.primitive
        self.start, self.stop = int(step.out[0]), int(step.out[-1]) + 1
        self.operands = list(step.operands)
        self.var_positions = step.var_positions
        self.ufunc = isinstance(prim.value, np.ufunc)
        varying = len(self.var_positions)
        product = prim is elementwise.mul and len(self.operands) == 2
        self.fixed: list[tuple[int, Any]] = []
        if prim.constant_partials is not None:
            self.fixed = [(k, prim.constant_partials[k]) for k in self.var_positions]
        elif product and varying == 1:
            k = self.var_positions[0]
            self.fixed = [(k, self.operands[1 - k])]
        # what the forward pass reads, bound once (a Python call per run costs
        # more than a small run's arithmetic)
        self.value = prim.value
        self.slots = [(k in self.var_positions, o) for k, o in enumerate(self.operands)]
        self.out = slice(self.start, self.stop)
        self.derivative = prim.partials if not self.fixed else None
        self.w_runs = [(k, slice(self.start - d, self.stop - d)) for k in self.var_positions]
        self.pair = product and varying == 2
        unary = varying == 1 and len(self.operands) == 1
        self.into = elementwise.PARTIALS_INTO.get(id(prim)) if unary else None

    def args(self, z: Array) -> list[Any]:
        take = z.take
        return [take(o, mode="clip") if gathered else o for gathered, o in self.slots]

    def partials(self, z: Array, args: list[Any], w: Array) -> None:
        """Write this run's partials into W (the ``fixed`` ones are written once,
        in :meth:`BulkPlan._weights_buffer`)."""
        derivative = self.derivative
        if derivative is not None:
            ans = z[self.out]
            for k, at in self.w_runs:
                w[k, at] = derivative(k, ans, *args)


class BulkPlan:
    """Forward pass with J's values, and the level-by-level multiplier sweep,
    of a compiled bulk program (see the module docstring).

    Parameters
    ----------
    schedule : Schedule
        The bulk program's schedule, variables laid out level by level.
    n_inputs : int
        The inputs are at flat positions 0 .. n_inputs - 1.
    steps : sequence
        The schedule's Batch steps in level order, then the readout if any.
    run_levels : sequence of int
        The level of each Batch step.
    readout : object or None
        The weighted-sum output (its ``weights`` over all earlier positions).
    parents : sequence of two int arrays
        Per argument slot, each equation's parent position (flat-position
        order; meaningless where the slot is a constant or absent).

    Attributes
    ----------
    witnesses : int array
        The inputs' positions and those of equations reading no variable. In
        the multiplier sweep a non-finite multiplier makes each of its
        parents' non-finite (w * inf and w * NaN are never finite, even for
        w = 0, and neither is a sum with such a term), and following parents
        from any position ends at a witness: the sweep's result is finite
        exactly when its witnesses are, which the guard reads instead of the
        whole vector.
    """

    def __init__(self, schedule: Schedule, n_inputs: int, steps: Sequence[Any],
                 run_levels: Sequence[int], readout: Any, parents: Sequence[Ints]) -> None:
        self.schedule = schedule
        self.n_inputs = n_inputs
        self.readout = readout
        self.runs = [_Run(step, n_inputs) for step in steps if isinstance(step, Batch)]
        self.n_equations = len(parents[0])
        self.levels = self._level_sweeps(run_levels, parents)
        self.witnesses = index_array(np.concatenate(
            [np.arange(n_inputs)] + [np.arange(r.start, r.stop) for r in self.runs
                                     if not r.var_positions]), n_inputs + self.n_equations)
        self._lock = threading.Lock()
        self._last: tuple[Any, Array] | None = None  # (weak reference to z, W at z)
        self._spare: list[Array] = []

    def _level_sweeps(self, run_levels: Sequence[int], parents: Sequence[Ints]
                      ) -> list[tuple[int, int, list[tuple[int, int, int, Ints, Any]]]]:
        """Per level, from the top: its run [start, stop) of z and its scatter-adds
        (slot k, positions [a, b) of the children, their parents' positions as
        :func:`lagrad.numeric.index_array`, the compiled loop bound to them or
        None): one per slot for the whole level when every run of the level
        reads a variable in that slot, else one per run."""
        d = self.n_inputs
        size = d + self.n_equations
        by_level: dict[int, list[_Run]] = {}
        for run, level in zip(self.runs, run_levels):
            by_level.setdefault(level, []).append(run)
        out = []
        for runs in by_level.values():
            start, stop = runs[0].start, runs[-1].stop
            adds = []
            for k in range(2):
                reading = [run for run in runs if k in run.var_positions]
                spans = [(start, stop)] if len(reading) == len(runs) else \
                    [(r.start, r.stop) for r in reading]
                for a, b in spans:
                    at = index_array(parents[k][a - d:b - d], size)
                    adds.append((k, a, b, at, compiled_scatter(at)))
            out.append((start, stop, adds))
        out.reverse()
        return out

    @property
    def down(self) -> list[Any]:
        """The levels of the sweep (one vectorized step each)."""
        return self.levels

    # ------------------------------------------------------------ forward
    def forward(self, z: Array, inputs: Sequence[Array]) -> None:
        """Fill ``z`` (flat, laid out by the schedule's index) for these inputs,
        and keep J's values at z for the sweep."""
        d = self.n_inputs
        z[:d] = [np.asarray(x).reshape(()) for x in inputs] if d else z[:0]
        w = self._weights_buffer()
        take = z.take  # mode="clip": the positions are valid, and it skips a check
        for run in self.runs:  # run.args, the value, run.partials: inlined (small runs)
            out = z[run.out]
            if run.pair:  # x * y: y is d/dx, x is d/dy, gathered into W's runs
                (_, at0), (_, at1) = run.w_runs
                np.multiply(take(run.operands[0], out=w[1, at1], mode="clip"),
                            take(run.operands[1], out=w[0, at0], mode="clip"), out=out)
                continue
            args = [take(o, mode="clip") if gathered else o for gathered, o in run.slots]
            if run.ufunc:
                run.value(*args, out=out)
            else:
                out[...] = run.value(*args)
            if run.into is not None:
                k, at = run.w_runs[0]
                run.into(w[k, at], out, args[0])
                continue
            derivative = run.derivative
            if derivative is not None:
                for k, at in run.w_runs:
                    w[k, at] = derivative(k, out, *args)
        if self.readout is not None:
            self.readout.run(z)
        with self._lock:
            if self._last is not None and len(self._spare) < SPARE:
                self._spare.append(self._last[1])  # reused once no sweep holds it
            self._last = (weakref.ref(z), w)

    def _weights_buffer(self) -> Array:
        """A vector for W: a spare one nothing else refers to, or a new one with
        the constant partials (add, sub, ...) written in."""
        with self._lock:
            for i, count in enumerate(_counts(self._spare)):
                if count <= _FREE:
                    return self._spare.pop(i)
        w = np.empty((2, self.n_equations))
        d = self.n_inputs
        for run in self.runs:
            for k, value in run.fixed:
                w[k, run.start - d:run.stop - d] = value
        return w

    def weights_at(self, z: Array) -> Array:
        """J's values at z, in W's order: those kept by the forward pass that
        computed z, or computed again."""
        with self._lock:
            last = self._last
            if last is not None and last[0]() is z:
                return last[1]
        w = self._weights_buffer()
        with np.errstate(all="ignore"):
            for run in self.runs:
                run.partials(z, run.args(z), w)
        return w

    # ------------------------------------------------------------ sweeps
    def solve(self, z: Array, rhs: Array, transposed: bool, inplace: bool = False,
              keep: NDArray[np.bool_] | None = None) -> Array:
        """As :func:`lagrad.compile.levels.levels_solve`: the adjoint sweep over
        the whole program here, the others by the general level plan."""
        if not transposed or keep is not None:
            return levels_solve(self.generic, z, rhs, transposed, inplace, keep)
        x = rhs if inplace else rhs.copy()
        return self._scatter(self.weights_at(z), x, x)  # from the top: in order

    def transposed_product(self, z: Array, x: Array) -> Array:
        """J^T x at z (every level at once, x read only): the scatter-adds of
        the sweep without its order, for a residual of (I - J)^T lambda = rhs."""
        return self._scatter(self.weights_at(z), np.zeros_like(x), x)

    def _scatter(self, w: Array, into: Array, x: Array) -> Array:
        """``into += J^T x`` level by level from the top (W's values ``w``):
        the sweep when ``into`` is ``x`` (each level's entries are final when
        read, their parents lying below), else a product. Returns ``into``."""
        if self.readout is not None:
            out = self.readout.out
            into[:out] += self.readout.weights * x[out]
        d = self.n_inputs
        # the compiled loops bound to each level's positions read raw buffers:
        # checked once here (the plan's own vectors always pass)
        bound = all(v.dtype == np.float64 and v.flags.c_contiguous for v in (into, x, w)) \
            and into.ndim == x.ndim == 1 and x.size == into.size
        for _, _, adds in self.levels:
            for k, a, b, parents, run in adds:
                if bound and run is not None:
                    run(into, w[k, a - d:b - d], x[a:b])
                else:
                    scatter_add(into, parents, w[k, a - d:b - d], x[a:b])
        return into

    # ------------------------------------------------- the general level plan
    @cached_property
    def generic(self) -> LevelPlan:
        """The general level plan of the same schedule (tangent sweeps, masked
        sweeps, J's assembly), built on first use."""
        schedule = self.schedule
        groups = list(schedule.steps)
        edges = [e for g in groups for e in g.edges()] or [(np.zeros(0, np.intp),) * 2]
        rows = np.concatenate([r for r, _ in edges]).astype(np.intp)
        cols = np.concatenate([c for _, c in edges]).astype(np.intp)
        level = schedule.index.spread(np.asarray(schedule.levels))
        return plan_from_edges(groups, rows, cols, level[rows])

    @property
    def rows(self) -> Ints:
        return self.generic.rows

    @property
    def cols(self) -> Ints:
        return self.generic.cols

    def weights(self, z: Array) -> Array:
        """J's values at z in ``rows``/``cols`` order."""
        return self.generic.weights(z)


def bulk_plan(schedule: Schedule) -> BulkPlan | None:
    """The bulk plan of a schedule compiled from a bulk program, else None."""
    plan = schedule.extras.get("levels")
    return plan if isinstance(plan, BulkPlan) else None
