"""Substitution sweeps with many right-hand sides at once, on J cut by level.

A schedule's levels (longest path from the inputs) order the flat positions so
that (I - J) is block triangular: an equation at level L reads only levels
below L, except inside a cyclic block, whose variables share one level. Cut
J by the level of its rows and columns into blocks J_{L,l} (l < L) and the
diagonal blocks J_{L,L} (non-zero only inside cyclic blocks); then

    tangent, levels from the bottom:  X_L = (I - J_LL)^-1 (B_L + sum_{l<L} J_{L,l} X_l)
    adjoint, levels from the top:     X_l = (I - J_ll)^-T (B_l + sum_{L>l} J_{L,l}^T X_L)

is forward (back) substitution, one sparse product per pair of levels J
connects, whatever the number k of columns of X and B. :func:`solve_many`
runs it on numbers (X dense, (n_L, k) per level; a cyclic block by one
sparse LU of its I - J_SS), :func:`reach_many` on patterns (X a boolean sparse
matrix; a cyclic block by closing its pattern under J_SS), which is the
structural reachability behind a sparse Jacobian's pattern.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from numpy.typing import NDArray

from lagrad.compile.jacobian import block_matrix
from lagrad.compile.schedule import CyclicBlock, Schedule
from lagrad.errors import SingularSystemError
from lagrad.solve.blocksolve import check_determined
from lagrad.solve.system import Orientation

__all__ = ["LevelSplit", "split_levels", "solve_many", "reach_many", "take_rows"]

Array = NDArray[np.float64]
Ints = NDArray[np.intp]


@dataclass(eq=False)
class LevelSplit:
    """J cut into blocks by the level of its rows and columns.

    ``rows[L]`` are the flat positions at level L (sorted), ``level`` and
    ``local`` map a flat position to its level and its row within it, and
    ``pairs[(L, l)]`` is ``J[rows[L]][:, rows[l]]`` (CSR) for every pair J
    connects, l <= L (l == L only inside cyclic blocks, listed per level in
    ``cyclic`` with their rows within the level).
    """

    rows: list[Ints]
    level: Ints
    local: Ints
    pairs: dict[tuple[int, int], sp.csr_matrix]
    cyclic: dict[int, list[tuple[CyclicBlock, Ints]]]
    _incoming: dict[bool, list[list[tuple[int, sp.csr_matrix]]]] = field(default_factory=dict)

    def incoming(self, transposed: bool) -> list[list[tuple[int, sp.csr_matrix]]]:
        """Per level, the (earlier level, block) pairs a sweep adds from:
        J_{L,l} (tangent) or J_{L,l}^T (adjoint, where 'earlier' is higher)."""
        if transposed not in self._incoming:
            lists: list[list[tuple[int, sp.csr_matrix]]] = [[] for _ in self.rows]
            for (big, small), block in self.pairs.items():
                if big == small:
                    continue
                if transposed:
                    lists[small].append((big, block.T.tocsr()))
                else:
                    lists[big].append((small, block))
            self._incoming[transposed] = lists
        return self._incoming[transposed]


def split_levels(schedule: Schedule, jac: sp.csr_matrix) -> LevelSplit:
    """Cut ``jac`` (J at a solution, n x n) by the schedule's levels."""
    raw = schedule.index.spread(np.asarray(schedule.levels, dtype=np.intp))
    present = np.bincount(raw) > 0 if raw.size else np.zeros(0, bool)
    level = (np.cumsum(present) - 1)[raw].astype(np.intp)  # dense level numbers 0..m-1
    small = level.astype(np.int16) if level.size and level.max() < 2**15 else level
    order = np.argsort(small, kind="stable")  # a radix sort for 16-bit keys
    counts = np.bincount(level, minlength=int(level.max(initial=-1)) + 1)
    bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.intp)
    rows = [order[bounds[k]:bounds[k + 1]] for k in range(counts.size)]
    local = np.empty(level.size, np.intp)
    local[order] = np.arange(level.size) - bounds[level[order]]
    coo = jac.tocoo()
    r, c = coo.row.astype(np.intp), coo.col.astype(np.intp)
    lr, lc = level[r], level[c]
    assert not np.any(lc > lr), "an equation reads a variable of a higher level"
    key = lr * max(counts.size, 1) + lc
    sort = np.argsort(key, kind="stable")
    sorted_keys = key[sort]
    starts = np.flatnonzero(np.diff(sorted_keys, prepend=-1))
    ends = np.append(starts[1:], sort.size)
    pairs = {}
    for k, a, b in zip(sorted_keys[starts].tolist(), starts.tolist(), ends.tolist()):
        big, small = divmod(k, max(counts.size, 1))
        e = sort[a:b]
        pairs[(big, small)] = sp.csr_matrix(
            (coo.data[e], (local[r[e]], local[c[e]])), shape=(rows[big].size, rows[small].size))
    cyclic: dict[int, list[tuple[CyclicBlock, Ints]]] = {}
    for step in schedule.steps:
        if isinstance(step, CyclicBlock) and step.s_index.size:
            at = int(level[step.s_index[0]])
            cyclic.setdefault(at, []).append((step, local[step.s_index]))
    return LevelSplit(rows, level, local, pairs, cyclic)


def _sweep(split: LevelSplit, seeds: Callable[[int], Any], transposed: bool,
           close: Callable[[int, Any], Any]) -> list[Any]:
    """X per level (None where zero): seeds, plus what flows in, then ``close``
    (the cyclic blocks of the level)."""
    incoming = split.incoming(transposed)
    x: list[Any] = [None] * len(split.rows)
    order = range(len(split.rows) - 1, -1, -1) if transposed else range(len(split.rows))
    for big in order:
        acc = seeds(big)
        for small, block in incoming[big]:
            if x[small] is not None:
                part = block @ x[small]
                acc = part if acc is None else acc + part
        if acc is not None and big in split.cyclic:
            acc = close(big, acc)
        x[big] = acc
    return x


def _placed(split: LevelSplit, positions: Ints, values: Any, empty: Callable[..., Any]
            ) -> Callable[[int], Any]:
    """Seeds: row p of ``values`` at flat position ``positions[p]``, per level."""
    at = split.level[positions]
    by_level = {int(lv): np.flatnonzero(at == lv) for lv in np.unique(at)}

    def seeds(big: int) -> Any:
        picked = by_level.get(big)
        if picked is None:
            return None
        out = empty(split.rows[big].size)
        out[split.local[positions[picked]]] = values[picked]
        return out
    return seeds


def solve_many(split: LevelSplit, schedule: Schedule, z: Array, orientation: Orientation,
               positions: Ints, rhs: Array, forward: dict[int, Any] | None = None
               ) -> list[Array | None]:
    """Solve (I - J) X = B (tangent) or (I - J)^T X = B (adjoint) for every
    column of B at once, B being ``rhs`` (len(positions), k) placed at the flat
    ``positions`` and zero elsewhere; X per level (None where it is zero).

    Raises SingularSystemError naming a cyclic block whose I - J_SS is
    singular at the solution (as the single right-hand side solves do).
    """
    transposed, k = orientation.transposed, rhs.shape[1]
    for units in split.cyclic.values():
        for unit, _ in units:
            check_determined(unit, (forward or {}).get(unit.block.number))

    def close(big: int, acc: Array) -> Array:
        for unit, loc in split.cyclic[big]:
            try:
                lu = spla.splu(block_matrix(unit, z))
            except RuntimeError as err:
                raise SingularSystemError(f"{unit.block.name}: I - J is singular at the "
                                          f"solution ({err})") from err
            acc[loc] = lu.solve(np.ascontiguousarray(acc[loc]), trans="T" if transposed else "N")
        return acc
    seeds = _placed(split, positions, rhs, lambda m: np.zeros((m, k)))
    return _sweep(split, seeds, transposed, close)


def reach_many(split: LevelSplit, orientation: Orientation, positions: Ints
               ) -> list[sp.csr_matrix | None]:
    """Structural reachability: per level, a boolean sparse matrix whose entry
    (row p, column q) says position p depends on (tangent) or influences
    (adjoint) position ``positions[q]`` through the entries J stores. Inside a
    cyclic block the pattern is closed under J_SS (a path may go round)."""
    transposed, n = orientation.transposed, positions.size
    at = split.level[positions]

    def seeds(big: int) -> sp.csr_matrix | None:
        picked = np.flatnonzero(at == big)
        if not picked.size:
            return None
        return sp.csr_matrix((np.ones(picked.size, bool),
                              (split.local[positions[picked]], picked)),
                             shape=(split.rows[big].size, n))

    def close(big: int, acc: sp.csr_matrix) -> sp.csr_matrix:
        inner = split.pairs.get((big, big))
        if inner is None:
            return acc
        step = (inner.T if transposed else inner).tocsr().astype(bool)
        reached = acc
        for _ in range(split.rows[big].size + 1):  # a path visits each row once at most
            grown = (acc + step @ reached).tocsr()
            if grown.nnz == reached.nnz:
                break
            reached = grown
        return reached
    pattern = _sweep(split, seeds, transposed, close)
    return [None if p is None else p.astype(bool).tocsr() for p in pattern]


def take_rows(split: LevelSplit, x: list[Any], positions: Ints, width: int,
              sparse: bool) -> Any:
    """Rows of a per-level sweep result at flat ``positions``, in order (zero
    rows where a level's result is None)."""
    at = split.level[positions]
    parts, where = [], []
    for lv in np.unique(at).tolist():
        picked = np.flatnonzero(at == lv)
        block = x[lv]
        if block is None:
            block = sp.csr_matrix((picked.size, width), dtype=bool) if sparse \
                else np.zeros((picked.size, width))
        else:
            block = block[split.local[positions[picked]]]
        parts.append(block)
        where.append(picked)
    if not parts:
        return sp.csr_matrix((0, width), dtype=bool) if sparse else np.zeros((0, width))
    inverse = np.argsort(np.concatenate(where), kind="stable")
    if sparse:
        return sp.vstack(parts, format="csr")[inverse]
    return np.concatenate(parts)[inverse]
