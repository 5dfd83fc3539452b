"""Level-by-level substitution on the assembled J, for programs of scalars.

In a program of many scalar equations the sweep's cost is Python calls, one per
step. Here the local derivatives of *all* equations are computed first, grouped
by primitive across the whole program (a handful of numpy calls: J's values),
and the unit-triangular system is then solved one level of equal height at a
time, each level one gather, multiply and scatter-add:

    adjoint, levels from the top:   lambda_j += sum_{i at level L} J[i, j] lambda_i
    tangent, levels from the bottom: zdot_i  += sum_j J[i, j] zdot_j   (i at level L)

which is back-substitution (docs/lagrangian.md, section 5) with one vectorized step per
level instead of one Python step per equation.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.compile.schedule import Batch, Schedule, batch_of
from lagrad.numeric import index_array, scatter_add

__all__ = ["LevelPlan", "level_plan", "levels_solve", "plan_from_edges"]

Array = NDArray[np.float64]
Ints = NDArray[np.intp]


@dataclass(eq=False)
class LevelPlan:
    """Edges of J (structure fixed per program) and their level order."""

    groups: list[Batch]  # every equation, grouped by primitive and argument pattern
    rows: Ints  # edge i <- j: row i (flat position of the equation's output)
    cols: Ints  # column j (flat position of the argument)
    down: list[tuple[int, int]]  # per level from the top: span of edges (in order_down)
    up: list[tuple[int, int]]  # per level from the bottom: span of edges (in order_up)
    order_down: Ints  # edge permutation for ``down``
    order_up: Ints

    @cached_property
    def down_edges(self) -> tuple[Ints, Ints]:
        """(rows, cols) in ``order_down``, gathered once per program."""
        return self._edges_in(self.order_down)

    @cached_property
    def up_edges(self) -> tuple[Ints, Ints]:
        """(rows, cols) in ``order_up``."""
        return self._edges_in(self.order_up)

    def _edges_in(self, order: Ints) -> tuple[Ints, Ints]:
        """(rows, cols) in ``order``, as the positions scatter_add reads fastest."""
        bound = int(max(self.rows.max(initial=0), self.cols.max(initial=0))) + 1
        return index_array(self.rows[order], bound), index_array(self.cols[order], bound)

    def weights(self, z: Array) -> Array:
        """J's values at z, one per edge (in ``rows``/``cols`` order)."""
        w = np.empty(self.rows.size)
        at = 0
        for g in self.groups:
            at = g.partials_into(z, w, at)
        return w


def level_plan(schedule: Schedule) -> Any:
    """The plan for a program whose equations are all scalar and elementwise
    (None otherwise); cached on the schedule. A :class:`LevelPlan`, or the
    plan a bulk program was compiled with (same ``down``, ``rows``, ``cols``,
    ``weights``; :func:`levels_solve` dispatches to its own ``solve``)."""
    if "levels" not in schedule.extras:
        schedule.extras["levels"] = _build(schedule) if schedule.scalar else None
    return schedule.extras["levels"]


def _build(schedule: Schedule) -> LevelPlan:
    by_kind: dict[Any, list[Any]] = defaultdict(list)
    for step in schedule.steps:
        for eq in step.equations:
            by_kind[(eq.primitive, tuple(isinstance(a, int) for a in eq.args))].append(eq)
    groups = [batch_of(eqs, schedule.index) for eqs in by_kind.values()]
    edges = [e for g in groups for e in g.edges()] or [(np.zeros(0, np.intp),) * 2]
    rows = np.concatenate([r for r, _ in edges]).astype(np.intp)
    cols = np.concatenate([c for _, c in edges]).astype(np.intp)
    level_of_position = schedule.index.spread(schedule.levels)
    return plan_from_edges(groups, rows, cols, level_of_position[rows])


def plan_from_edges(groups: list[Any], rows: Ints, cols: Ints, edge_level: Ints) -> LevelPlan:
    """Order the edges by the level of their row, both ways."""
    small = edge_level.astype(np.int16) if edge_level.max(initial=0) < 2**15 else edge_level
    order_up = np.argsort(small, kind="stable")  # a radix sort for 16-bit keys
    counts = np.bincount(edge_level) if edge_level.size else np.zeros(0, np.intp)
    bounds = np.concatenate([[0], np.cumsum(counts)]).astype(int)
    up = [(int(bounds[k]), int(bounds[k + 1])) for k in np.flatnonzero(counts)]
    # top first: the same per-level runs in reverse order (no second sort)
    order_down = np.concatenate([order_up[a:b] for a, b in reversed(up)]) if up else order_up
    sizes = [b - a for a, b in reversed(up)]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    down = [(int(starts[k]), int(starts[k + 1])) for k in range(len(sizes))]
    return LevelPlan(groups, rows, cols, down, up, order_down, order_up)


def levels_solve(plan: Any, z: Array, rhs: Array, transposed: bool,
                 inplace: bool = False, keep: NDArray[np.bool_] | None = None) -> Array:
    """Solve (I - J)^T x = rhs level by level from the top (``transposed``), or
    (I - J) x = rhs from the bottom; in ``rhs`` itself with ``inplace``. With
    ``keep`` (a mask of flat positions) only the equations defining kept
    positions take part: the others' entries of J count as 0, so an infinite
    derivative there gives no 0 * inf.

    The two are one loop with the edge ends swapped: the adjoint gathers at an
    edge's row and scatters to its column, the tangent the other way round.
    """
    if not isinstance(plan, LevelPlan):  # a plan of its own (compile/bulkplan.py)
        return plan.solve(z, rhs, transposed, inplace, keep)
    if transposed:
        order, spans, (gather, scatter) = plan.order_down, plan.down, plan.down_edges
    else:
        order, spans, (scatter, gather) = plan.order_up, plan.up, plan.up_edges
    w = plan.weights(z)
    if keep is not None:
        w = np.where(keep[plan.rows], w, 0.0)
    w = w[order]
    x = rhs if inplace else rhs.copy()
    for a, b in spans:  # gathers at one level, scatters to lower ones: x is read and written
        scatter_add(x, scatter[a:b], w[a:b], x, gather[a:b])
    return x
