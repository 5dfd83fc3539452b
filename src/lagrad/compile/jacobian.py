"""J, the sparse matrix of local derivatives J[i, j] = df_i/dz_j, assembled
from every equation's local Jacobian: for the whole program, or as (I - J_SS)
over one cyclic block's variables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from lagrad.compile.levels import level_plan
from lagrad.compile.schedule import Batch, CyclicBlock, Schedule
from lagrad.errors import NonFiniteError
from lagrad.ir.program import Program

__all__ = ["assemble_jacobian", "block_matrix", "dense_block_matrix", "identity_minus",
           "blame_partials"]

Array = NDArray[np.float64]


def assemble_jacobian(schedule: Schedule, z: Array) -> sp.csr_matrix:
    """J at the point z, from every equation's local sparse Jacobian, in one call."""
    n = schedule.size
    plan = level_plan(schedule)
    if plan is not None:  # all scalar: J's values in a few vectorized calls
        return sp.csr_matrix((plan.weights(z), (plan.rows, plan.cols)), shape=(n, n))
    rows, cols, vals = [], [], []
    for step in schedule.steps:
        for r, c, v in step.jacobian_entries(z):
            rows.append(np.asarray(r, dtype=np.intp).ravel())
            cols.append(np.asarray(c, dtype=np.intp).ravel())
            vals.append(np.asarray(v, dtype=float).ravel())
    if not rows:
        return sp.csr_matrix((n, n))
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n, n))


def blame_partials(schedule: Schedule, z: Array) -> NonFiniteError:
    """Name the first equation whose local derivative is not finite at z."""
    singles = [s for step in schedule.steps
               for s in (step.steps if isinstance(step, CyclicBlock) else [step])]
    return blame_steps(schedule.program, singles, z)


def blame_steps(program: Program, singles: Sequence[Any], z: Array) -> NonFiniteError:
    """:func:`blame_partials` over the steps ``singles`` (a cyclic block's, say)."""
    with np.errstate(all="ignore"):
        for step in singles:
            ok = np.ones(len(step.equations), dtype=bool)
            for _, _, v in step.jacobian_entries(z):
                vals = np.isfinite(np.asarray(v, dtype=float))
                ok &= vals.reshape(len(ok), -1).all(axis=1) if isinstance(step, Batch) \
                    else bool(vals.all())
            if not ok.all():
                text = program.describe(step.equations[int(np.argmin(ok))])
                return NonFiniteError(f"a local derivative is not finite in equation `{text}`: "
                                      "the derivative does not exist at these values", text)
    return NonFiniteError("J has a non-finite entry")



def block_matrix(unit: CyclicBlock, z: Array, size: int = 0) -> sp.csc_matrix:
    """(I - J_SS) at z, over the block's variables in ``unit.s_index`` order."""
    return identity_minus(*_block_entries(unit, z), unit.s_index.size)


def dense_block_matrix(unit: CyclicBlock, z: Array) -> Array:
    """:func:`block_matrix` as a dense array (J's repeats summed, then
    1 - J_ii on the diagonal), for a block small enough to factorize densely."""
    rows, cols, vals = _block_entries(unit, z)
    n = unit.s_index.size
    out = np.zeros((n, n))
    np.add.at(out, (rows, cols), vals)
    np.negative(out, out=out)
    out[np.arange(n), np.arange(n)] += 1.0  # -J_ii + 1 is 1 - J_ii exactly
    return out


def _block_entries(unit: CyclicBlock, z: Array) -> tuple[NDArray[np.intp], NDArray[np.intp],
                                                          Array]:
    """J_SS's entries at z, positions within ``unit.s_index``."""
    s = unit.s_index  # sorted; inner steps only touch the block's own positions
    entries = [e for step in unit.inner_interior + unit.inner_closing
               for e in step.jacobian_entries(z)]
    if not entries:
        return np.zeros(0, np.intp), np.zeros(0, np.intp), np.zeros(0)
    rows = np.searchsorted(s, np.concatenate([np.ravel(r) for r, _, _ in entries]))
    cols = np.searchsorted(s, np.concatenate([np.ravel(c) for _, c, _ in entries]))
    vals = np.concatenate([np.asarray(v, dtype=float).ravel() for _, _, v in entries])
    return rows, cols, vals


def identity_minus(rows: NDArray[np.intp], cols: NDArray[np.intp], vals: Array, n: int
                   ) -> sp.csc_matrix:
    """I - J (n x n) from J's entries (repeats adding up), in canonical CSC
    form, as scipy's ``identity - csc_matrix(J)`` gives it (J's repeats summed,
    each diagonal entry 1 - J_ii, exact zeros dropped), to the last bit: but
    from one sparse matrix, J with a zero added on its diagonal, turned into
    I - J in place, instead of three and a subtraction (a Newton step on a
    small block was mostly that)."""
    at = np.arange(n)
    m = sp.csc_matrix((np.concatenate([vals, np.zeros(n)]),
                       (np.concatenate([rows, at]), np.concatenate([cols, at]))), shape=(n, n))
    m.sum_duplicates()  # canonical (a no-op when the conversion made it so)
    diagonal = m.indices == np.repeat(at, np.diff(m.indptr))  # one per column
    np.negative(m.data, out=m.data)
    m.data[diagonal] += 1.0  # -J_ii + 1 is 1 - J_ii exactly
    m.eliminate_zeros()
    return m
