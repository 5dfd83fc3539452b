"""Substitution sweeps with a block of seeds: k right-hand sides in one sweep.

A Jacobian with k rows is k solves of the multiplier system, one per output
entry e_r; with k columns, k tangent solves. They share the matrix, so they
are one solve with a right-hand side of k columns,

    (I - J)^T X = E  (adjoint)      or      (I - J) X = E  (tangent),

X and E of shape (n, k). The sweep is the single right-hand side's, step by
step through the schedule, matrix-free, each step's product taken for all k
columns at once:

* an elementwise equation multiplies the k cotangents (or tangents) by its
  partials, computed once;
* a structural one uses its primitive's batch rule with shared operands
  (``shared_vjp`` / ``shared_jvp``: a matrix product becomes one gemm with k
  times the rows or columns, instead of k matrix-vector products); without
  one, the arguments are broadcast to the k seeds, and without a batch rule
  at all, the k products are taken one by one;
* a cyclic block is solved for its k right-hand sides together: by the
  forward Newton solve's LU factors when it has them, or one new sparse LU of
  (I - J_SS), each then used for k triangular solves (``trans="T"`` for the
  adjoint); after a contracting forward iteration, by the Neumann series
  X_U <- C + dG/du^T X_U on the block's unknowns with k columns (one product
  of dG/du per iteration for all of them, the rate being the same for every
  column). A block where neither applies (or where the series does not
  converge within its budget) is solved column by column by the default
  block solver, as the single-seed sweep would.

Internally X is stored as a C-ordered (k, n) array, so that the k entries of
one variable are a (k, *shape) view. The seeds are processed in chunks so
that this array has at most :data:`MAX_ENTRIES` entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse.linalg as spla
from numpy.typing import NDArray

from lagrad.compile.groups import CyclicGroup, grouped_steps
from lagrad.compile.jacobian import block_matrix
from lagrad.compile.schedule import Batch, CyclicBlock, Schedule, Single
from lagrad.errors import SingularSystemError
from lagrad.ir.batching import align, unalign
from lagrad.ir.primitives import Primitive
from lagrad.numeric import broadcast, lu_condition
from lagrad.options import LinearOptions
from lagrad.solve.blocksolve import (
    DIRECT_LIMIT,
    SINGULAR_CONDITION,
    BlockOperator,
    Workspace,
    check_determined,
    choose,
    solve_auto,
)
from lagrad.solve.grouped import check_group_determined
from lagrad.solve.grouplinear import solve_linear_rows
from lagrad.solve.results import BlockResult, raise_for
from lagrad.solve.system import Orientation

__all__ = ["pullback_many", "pushforward_many", "substitute_many", "unit_solves",
           "MAX_ENTRIES", "BUILD_ENTRIES", "DENSE_REDUCED_LIMIT"]

Array = NDArray[np.float64]
Ints = NDArray[np.intp]
MAX_ENTRIES = 1 << 20
"""Most entries of the (k, n) sweep array (8 MB): more seeds are split into
chunks. Chunks that stay in cache are faster than one large sweep: a dense
Jacobian of 3000 x 3000 elementwise entries takes about a third of the time
with chunks of this size than with 16 times larger ones."""
BUILD_ENTRIES = 1 << 24
"""Most entries (128 MB) of the scratch arrays that build a block's reduced
matrix (n_U products at once, see DENSE_REDUCED_LIMIT)."""
DENSE_REDUCED_LIMIT = 4000
"""Most unknowns of a block solved by a dense LU of its reduced matrix, when
building that matrix (n_U products) costs fewer products than the series."""


# ------------------------------------------------------------ one primitive

def _spread(a: Any, seeds: int) -> Array:
    """``a`` repeated over a leading axis of ``seeds`` (a view, no copy)."""
    a = np.asarray(a, dtype=float)
    return np.broadcast_to(a[None], (seeds,) + a.shape)


def pullback_many(prim: Primitive, k: int, g: Array, ans: Array, args: Sequence[Any],
                  params: Mapping[str, Any]) -> Array:
    """Cotangents of argument ``k``, (seeds, *shape of arg k), for the output
    cotangents ``g`` (seeds, *ans.shape) of one equation."""
    seeds = g.shape[0]
    shape = (seeds,) + np.shape(args[k])
    if prim.partials is not None:
        if prim.constant_partials is not None:
            c = prim.constant_partials[k]
            ct = g if c == 1.0 else c * g
        else:
            ct = g * prim.partials(k, ans, *args, **params)
        return unalign(broadcast(ct, (seeds,) + np.shape(ans)), shape)
    rule = prim.batch
    if rule is not None and prim.batchable(params):
        if rule.shared_vjp is not None:
            return rule.shared_vjp(k, g, ans, *args, **params)
        return rule.vjp(k, g, _spread(ans, seeds), *(_spread(a, seeds) for a in args),
                        **params)
    return np.stack([np.reshape(prim.pullback(k, g[j], ans, args, params), shape[1:])
                     for j in range(seeds)])


def pushforward_many(prim: Primitive, ts: Sequence[Array | None], ans: Array,
                     args: Sequence[Any], params: Mapping[str, Any]) -> Array:
    """Output tangents (seeds, *ans.shape) for argument tangents ``ts`` (each
    (seeds, *shape of its argument), or None where zero; one at least given)."""
    seeds = next(t.shape[0] for t in ts if t is not None)
    total = np.zeros((seeds,) + np.shape(ans))
    if prim.partials is not None:
        for k, t in enumerate(ts):
            if t is not None:
                total += prim.partials(k, ans, *args, **params) * align(t, np.ndim(ans))
        return total
    rule = prim.batch
    if rule is not None and prim.batchable(params):
        for k, t in enumerate(ts):
            if t is None:
                continue
            if rule.shared_jvp is not None:
                total += rule.shared_jvp(k, t, ans, *args, **params)
            else:
                total += rule.jvp(k, t, _spread(ans, seeds), *(_spread(a, seeds) for a in args),
                                  **params)
        return total
    for j in range(seeds):
        total[j] = prim.pushforward([None if t is None else t[j] for t in ts], ans, args,
                                    params)
    return total


# ------------------------------------------------------------ one step

def _pull(step: Single | Batch, z: Array, x: Array, into: Array, sparse: bool = True) -> None:
    """``into[:, j] +=`` lambda_i df_i/dz_j for the step's parents j, every seed
    (``sparse``: first check whether any seed reaches the step)."""
    if isinstance(step, Batch):
        _pull_batch(step, z, x, into)
        return
    if not step.dslots:
        return
    g = x[:, step.start:step.stop]
    if sparse and not g.any():  # no seed reaches this equation
        return
    seeds = x.shape[0]
    g = g.reshape((seeds,) + step.shape)
    ans = z[step.start:step.stop].reshape(step.shape)
    args = step.gather(z)
    for pos, a, b, _ in step.dslots:
        ct = pullback_many(step.eq.primitive, pos, g, ans, args, step.eq.params)
        into[:, a:b] += np.reshape(ct, (seeds, b - a))


def _pull_batch(step: Batch, z: Array, x: Array, into: Array) -> None:
    g = x[:, step.out]
    args = step.gather(z)
    ans = z[step.out]
    prim = step.primitive
    for k, once in zip(step.var_positions, step.unique):
        if prim.constant_partials is not None:
            c = prim.constant_partials[k]
            ct = g if c == 1.0 else c * g
        else:
            assert prim.partials is not None
            ct = g * prim.partials(k, ans, *args)
        if once:
            into[:, step.operands[k]] += ct
        else:
            np.add.at(into, (slice(None), step.operands[k]), ct)


def _push(step: Single | Batch, z: Array, x: Array, into: Array, sparse: bool = True) -> None:
    """``into[:, i] +=`` (J x)_i for the step's outputs i, every seed (``sparse``:
    leave out the arguments no seed reaches)."""
    seeds = x.shape[0]
    if isinstance(step, Batch):
        args, ans = step.gather(z), z[step.out]
        assert step.primitive.partials is not None
        total = np.zeros((seeds, step.out.size))
        for k in step.var_positions:
            total += step.primitive.partials(k, ans, *args) * x[:, step.operands[k]]
        into[:, step.out] += total
        return
    if not step.dslots:
        return
    ts: list[Array | None] = [None] * len(step.template)
    for pos, a, b, shape in step.dslots:
        t = x[:, a:b]
        if not sparse or t.any():
            ts[pos] = t.reshape((seeds,) + shape)
    if all(t is None for t in ts):
        return
    ans = z[step.start:step.stop].reshape(step.shape)
    out = pushforward_many(step.eq.primitive, ts, ans, step.gather(z), step.eq.params)
    into[:, step.start:step.stop] += out.reshape(seeds, -1)


# ------------------------------------------------------------ cyclic blocks

class _Reduced:
    """The products with dG/du (tangent) or dG/du^T (adjoint) of one block, for
    many columns at once: the block's inner steps on two (columns, n) scratch
    arrays."""

    def __init__(self, unit: CyclicBlock, z: Array, transposed: bool) -> None:
        self.unit, self.z, self.transposed = unit, z, transposed
        self._work: dict[int, tuple[Array, Array]] = {}

    def scratch(self, seeds: int) -> tuple[Array, Array]:
        if seeds not in self._work:
            self._work[seeds] = (np.zeros((seeds, self.z.size)), np.zeros((seeds, self.z.size)))
        return self._work[seeds]

    def product(self, v: Array, interior: Array | None = None) -> Array:
        """dG/du^T v (adjoint) or dG/du v (tangent) for each row of ``v``, with
        an optional interior seed (substituted through the interior)."""
        u, z = self.unit, self.z
        w, w2 = self.scratch(v.shape[0])
        if self.transposed:
            for a, b in u.runs:
                w2[:, a:b] = 0.0
            w[:, u.u_at] = v  # the closing pullbacks read only the unknowns' entries
            for step in u.inner_closing:
                _pull(step, z, w, w2, sparse=False)
            if interior is not None:
                w2[:, u.i_at] += interior
            for step in reversed(u.inner_interior):
                _pull(step, z, w2, w2, sparse=False)
            return w2[:, u.u_at].copy()
        for a, b in u.runs:
            w[:, a:b] = 0.0
        w2[:, u.u_at] = 0.0
        w[:, u.u_at] = v
        if interior is not None:
            w[:, u.i_at] = interior
        for step in u.inner_interior:
            _push(step, z, w, w, sparse=False)
        for step in u.inner_closing:
            _push(step, z, w, w2, sparse=False)
        return w2[:, u.u_at].copy()

    def reduced_rhs(self, b: Array) -> Array:
        """C = b_U + dG/du^T-substitution of the interior part of ``b``."""
        u = self.unit
        return b[:, u.pos_u] + self.product(np.zeros((b.shape[0], u.u_index.size)),
                                            b[:, u.pos_i])

    def recover(self, x_u: Array, b: Array) -> Array:
        """The whole block's rows from the unknowns' part ``x_u``."""
        u = self.unit
        self.product(x_u, b[:, u.pos_i])
        w, w2 = self.scratch(b.shape[0])
        out = np.empty_like(b)
        out[:, u.pos_u] = x_u
        out[:, u.pos_i] = (w2 if self.transposed else w)[:, u.i_at]
        return out

    def neumann(self, b: Array, tol: float, budget: int) -> Array | None:
        """X on the block for the right-hand sides ``b`` (k, block size) by the
        Neumann series on the unknowns; None when it does not converge within
        ``budget`` iterations (the caller then solves column by column)."""
        c = self.reduced_rhs(b)
        scale = np.maximum(np.linalg.norm(c, axis=1), np.finfo(float).tiny)
        x_u = c.copy()
        for _ in range(budget):
            r = c + self.product(x_u) - x_u
            res = np.linalg.norm(r, axis=1)
            if not np.all(np.isfinite(res)):
                return None
            if np.all(res <= tol * scale):
                break
            x_u += r
        else:
            return None
        return self.recover(x_u, b)

    def dense_lu(self, b: Array) -> Array:
        """X on the block by a dense LU of the reduced n_U x n_U matrix, built
        by products with the identity's n_U columns, as many at a time as keep
        the scratch arrays within :data:`MAX_ENTRIES` (one product with all of
        them needs two scratch arrays of n_U rows by the size of z: 98 MB for
        a DEQ layer of width 1000; ``benchmarks/bench_reduced_lu.py`` times
        both ways)."""
        n_u = self.unit.u_index.size
        # row j of P is the product with e_j, so P = (dG/du) for the adjoint and
        # (dG/du)^T for the tangent: both reduced systems are (I - P^T) X_U^T = C^T
        p = np.empty((n_u, n_u))
        rows = max(1, min(n_u, MAX_ENTRIES // max(self.z.size, 1)))
        for lo in range(0, n_u, rows):
            hi = min(lo + rows, n_u)
            e = np.zeros((hi - lo, n_u))
            e[np.arange(hi - lo), np.arange(lo, hi)] = 1.0
            p[lo:hi] = self.product(e)
        for size in {rows, n_u % rows} - {b.shape[0]}:
            self._work.pop(size, None)  # (the seeds' own scratch is used again below)
        np.negative(p, out=p)
        p[np.diag_indices(n_u)] += 1.0
        factors = scipy.linalg.lu_factor(p, overwrite_a=True, check_finite=False)
        cond = lu_condition(np.diag(factors[0]))
        if cond > SINGULAR_CONDITION:
            raise SingularSystemError(f"{self.unit.block.name}: I - J is numerically "
                                      f"singular (estimated condition {cond:.2e}); use "
                                      "method='lstsq' for minimum-norm multipliers")
        c = self.reduced_rhs(b)
        x_u = scipy.linalg.lu_solve(factors, c.T, trans=1, check_finite=False).T
        return self.recover(np.ascontiguousarray(x_u), b)


def _own_forward(forward: Mapping[int, Any], unit: CyclicBlock) -> BlockResult | None:
    """The block's own forward result (a group's result is not the block's)."""
    found = forward.get(unit.block.number)
    return None if found is None or "blocks" in found.extra else found


def _solve_block(unit: CyclicBlock, z: Array, b: Array, orientation: Orientation,
                 forward: BlockResult | None, options: LinearOptions) -> Array:
    """X on the block (k, block size) for the right-hand sides ``b``."""
    transposed = orientation.transposed
    choice = choose(unit, forward, options.tolerance)
    factor = forward.factorization if forward is not None else None
    if factor is None and choice.name != "fixed_point" and unit.s_index.size <= DIRECT_LIMIT:
        try:
            factor = spla.splu(block_matrix(unit, z))
        except RuntimeError as err:
            raise SingularSystemError(f"{unit.block.name}: I - J is singular at the "
                                      f"solution ({err}); use method='lstsq' for "
                                      "minimum-norm multipliers") from err
    if factor is not None:
        cond = lu_condition(factor.U.diagonal())
        if cond > SINGULAR_CONDITION:
            raise SingularSystemError(f"{unit.block.name}: I - J is numerically singular "
                                      f"(estimated condition {cond:.2e}); use "
                                      "method='lstsq' for minimum-norm multipliers")
        x = factor.solve(np.ascontiguousarray(b.T), trans="T" if transposed else "N")
        return np.asarray(x).T.reshape(b.shape)
    reduced = _Reduced(unit, z, transposed)
    n_u, seeds = unit.u_index.size, b.shape[0]
    # the series' expected iterations (its budget is twice that, plus 20)
    expected = (choice.neumann_budget - 20) // 2 if choice.neumann_budget else 0
    # n_U products build the reduced matrix; its LU costs about n_U / 3 more
    if n_u <= DENSE_REDUCED_LIMIT and n_u * z.size <= BUILD_ENTRIES and \
            (expected == 0 or 4 * n_u < 3 * expected * seeds):
        return reduced.dense_lu(b)
    if choice.neumann_budget is not None:
        x = reduced.neumann(b, options.tolerance, choice.neumann_budget)
        if x is not None:
            return x
    work = Workspace(z.size)
    out = np.empty_like(b)
    for j in range(b.shape[0]):  # one column at a time, as the single-seed sweep
        block = BlockOperator(unit, z, orientation, work,
                              forward.contraction if forward is not None else None)
        result = solve_auto(block, b[j].copy(), options, forward)
        raise_for(result)
        assert result.x is not None
        out[j] = result.x
    return out


def _block_step(unit: CyclicBlock, z: Array, x: Array, orientation: Orientation,
                forward: Mapping[int, Any], options: LinearOptions) -> None:
    """One cyclic block's step of the sweep, in place in ``x`` (k, n)."""
    transposed = orientation.transposed
    if not unit.u_index.size:  # acyclic: substitution through its equations
        for step in orientation.order(unit.steps):
            (_pull if transposed else _push)(step, z, x, x)
        return
    own = _own_forward(forward, unit)
    check_determined(unit, own)
    if not transposed:  # the block's rhs gains J_S,outside X_outside
        for step in unit.outer:
            _push(step, z, x, x)
    b = x[:, unit.s_index]
    if b.any():
        x[:, unit.s_index] = _solve_block(unit, z, b, orientation, own, options)
    if transposed:  # X_S J_S,outside goes to the outside parents
        for step in unit.outer:
            _pull(step, z, x, x)


# ------------------------------------------------------------ sweeps

def _sweep(schedule: Schedule, z: Array, orientation: Orientation, x: Array,
           forward: Mapping[int, Any], options: LinearOptions) -> Array:
    """Every step in order; a group of same-structure blocks (compile/groups.py)
    is solved with its factorization, one right-hand side at a time (a block by
    block sweep would factorize each of its B blocks), unless its blocks declared
    options of their own."""
    program = schedule.program
    together = not (program.adjoint_options or program.block_backward)
    steps = grouped_steps(schedule) if together else schedule.steps
    for step in orientation.order(steps):
        if isinstance(step, CyclicGroup):
            _group_step(step, z, x, orientation, forward)
        else:
            _step(step, z, x, orientation, forward, options)
    return x


def _step(step: Any, z: Array, x: Array, orientation: Orientation,
          forward: Mapping[int, Any], options: LinearOptions) -> None:
    if isinstance(step, CyclicBlock):
        _block_step(step, z, x, orientation, forward, options)
    elif orientation.transposed:
        _pull(step, z, x, x)
    else:
        _push(step, z, x, x)


def _group_step(group: CyclicGroup, z: Array, x: Array, orientation: Orientation,
                forward: Mapping[int, Any]) -> None:
    """A group's step of the sweep, in place in ``x`` (k, n); its forward
    result is filed under its first block's number."""
    found = forward.get(group.units[0].block.number)
    if found is not None and "blocks" not in found.extra:
        found = None  # the first block's own result: the forward ran block by block
    if found is not None:
        check_group_determined(group, found)
    solve_linear_rows(group, z, x, orientation.transposed,
                      found.factorization if found is not None else None)


def substitute_many(schedule: Schedule, z: Array, orientation: Orientation, rhs: Array,
                    forward: Mapping[int, Any] | None = None,
                    options: LinearOptions | None = None) -> Array:
    """Solve (I - J)^T X = B (adjoint) or (I - J) X = B (tangent) for every
    column of B at once.

    Parameters
    ----------
    schedule : Schedule
        The solved program's schedule.
    z : ndarray, shape (n,)
        The solution's flat values (where J is evaluated).
    orientation : Orientation
        ``ADJOINT`` or ``TANGENT``.
    rhs : ndarray, shape (n, k)
        B: one right-hand side per column, in the flat index order.
    forward : dict, optional
        The forward solve's block results (by block number): Newton's LU
        factors are reused, an observed contraction chooses the series.
    options : LinearOptions, optional
        The tolerance of the iterative block solves.

    Returns
    -------
    ndarray, shape (n, k)
        X, column j the solution for column j of B (what ``solve_system``
        gives for it with the default method).

    Raises
    ------
    SingularSystemError, ConvergenceError
        As the single right-hand side sweep, naming the cyclic block.
    """
    rhs = np.asarray(rhs, dtype=float)
    if rhs.ndim != 2 or rhs.shape[0] != z.size:
        raise ValueError(f"rhs must have shape ({z.size}, k), got {rhs.shape}")
    x = np.array(rhs.T, order="C")
    return _sweep(schedule, z, orientation, x, forward or {}, options or LinearOptions()).T


def unit_solves(schedule: Schedule, z: Array, orientation: Orientation, seeds: Ints,
                read: slice, forward: Mapping[int, Any] | None = None,
                options: LinearOptions | None = None) -> Array:
    """X[read] (rows ``read``, one column per seed) for unit right-hand sides
    at the flat positions ``seeds``: the rows of a Jacobian (adjoint, seeds at
    the outputs, read at the inputs) or its columns (tangent). The seeds go
    through the sweep in chunks of at most :data:`MAX_ENTRIES` // n."""
    n, k = z.size, seeds.size
    width = len(range(*read.indices(n)))
    out = np.empty((width, k))
    chunk = max(1, min(k, MAX_ENTRIES // max(n, 1)))
    for lo in range(0, k, chunk):
        hi = min(k, lo + chunk)
        x = np.zeros((hi - lo, n))
        x[np.arange(hi - lo), seeds[lo:hi]] = 1.0
        x = _sweep(schedule, z, orientation, x, forward or {}, options or LinearOptions())
        out[:, lo:hi] = x[:, read].T
    return out
