"""Text views of a program and of its linear systems (no plotting needed).

:func:`program_summary` counts what a program is made of (variables,
equations, edges, blocks, the largest cyclic block); :func:`system_summary`
describes a multiplier or tangent system: its shape and sparsity, whether it is
triangular in program order (then back-substitution solves it) or only block
triangular in block order, and how well conditioned each cyclic block's
(I - J_SS) is. ``program.summary()`` and ``system.summary()`` delegate here.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from numpy.typing import NDArray

from lagrad.compile.jacobian import block_matrix
from lagrad.compile.schedule import CyclicBlock
from lagrad.errors import LagradError
from lagrad.ir.program import Program
from lagrad.solve.system import System

__all__ = ["ProgramCounts", "BlockCondition", "program_counts", "is_triangular",
           "block_conditions", "program_summary", "system_summary", "DENSE_CONDITION_LIMIT"]

DENSE_CONDITION_LIMIT = 500
"""Cyclic blocks of at most this many entries get numpy's exact 2-norm
condition number; larger ones a 1-norm estimate (scipy's ``onenormest``)."""


class ProgramCounts(NamedTuple):
    """What :func:`program_summary` reports, as numbers."""

    variables: int
    inputs: int
    defined: int  # variables given by an equation z = f(...), unknowns excluded
    unknowns: int
    equations: int
    edges: int  # of the dependency graph (a parent read twice counts once)
    entries: int  # scalar entries of all variables (the systems' dimension)
    blocks: int
    cyclic_blocks: int
    largest_cyclic_variables: int  # 0 when there is no cyclic block
    largest_cyclic_entries: int


class BlockCondition(NamedTuple):
    """Condition number of one cyclic block's matrix in a system."""

    block: str  # its name, ``block 3 (z)``
    entries: int
    condition: float
    norm: str  # "2" (exact, numpy) or "1 (estimate)" (onenormest with sparse LU)


def program_counts(program: Program) -> ProgramCounts:
    """Count the variables, equations, edges, entries and blocks of ``program``.

    Examples
    --------
    >>> import lagrad
    >>> p = lagrad.Program()
    >>> a = p.input("a")
    >>> z = p.unknown("z")
    >>> p.define(z, 0.5 * z + a)
    >>> p.output(z * z)
    >>> c = program_counts(p)
    >>> c.variables, c.inputs, c.unknowns, c.equations, c.edges
    (5, 1, 1, 4, 5)
    >>> c.blocks, c.cyclic_blocks, c.largest_cyclic_variables
    (3, 1, 3)
    """
    variables = program.variables
    kinds = [v.kind for v in variables]
    blocks = program.blocks
    cyclic = [b for b in blocks if b.cyclic]
    largest = max(cyclic, key=lambda b: (b.size, len(b.variables)), default=None)
    return ProgramCounts(
        variables=len(variables), inputs=kinds.count("input"), defined=kinds.count("defined"),
        unknowns=kinds.count("unknown"), equations=len(program.equations),
        edges=program.graph.number_of_edges(), entries=sum(v.size for v in variables),
        blocks=len(blocks), cyclic_blocks=len(cyclic),
        largest_cyclic_variables=len(largest.variables) if largest else 0,
        largest_cyclic_entries=largest.size if largest else 0)


def program_summary(program: Program) -> str:
    """Counts of variables, equations, edges, entries and blocks, as text.

    Parameters
    ----------
    program : Program

    Returns
    -------
    str
        A few lines: the variables by kind, the equations and edges of the
        dependency graph, the scalar entries, the blocks (strongly connected
        components) and the largest cyclic block.

    See Also
    --------
    program_counts : the same numbers as a named tuple.

    Examples
    --------
    >>> import lagrad
    >>> p = lagrad.Program()
    >>> a = p.input("a")
    >>> z = p.unknown("z", shape=3)
    >>> p.define(z, 0.5 * z + a)
    >>> p.output(lagrad.sum(z * z))
    >>> print(program_summary(p))
    program: 6 variables (1 input, 4 defined, 1 unknown), output v5 ()
    equations: 5, dependency edges: 6
    scalar entries: 14
    blocks: 4 (1 cyclic)
    largest cyclic block: block 1 (z), 3 variables, 9 entries
    >>> print(lagrad.trace(lambda x: lagrad.sin(x) * x, 0.0).summary())
    program '<lambda>': 3 variables (1 input, 2 defined, 0 unknowns), output v2 ()
    equations: 2, dependency edges: 3
    scalar entries: 3
    blocks: 3 (0 cyclic)
    largest cyclic block: none (the program is acyclic: back-substitution solves it)
    """
    c = program_counts(program)
    try:
        out = program.output_variable
        output = f"output {out.name} {out.shape}"
    except LagradError:
        output = "no output yet"
    title = f"program {program.name!r}" if program.name else "program"
    lines = [
        f"{title}: {c.variables} variables ({_plural(c.inputs, 'input')}, {c.defined} defined, "
        f"{_plural(c.unknowns, 'unknown')}), {output}",
        f"equations: {c.equations}, dependency edges: {c.edges}",
        f"scalar entries: {c.entries}",
        f"blocks: {c.blocks} ({c.cyclic_blocks} cyclic)",
    ]
    if c.cyclic_blocks:
        largest = max((b for b in program.blocks if b.cyclic),
                      key=lambda b: (b.size, len(b.variables)))
        lines.append(f"largest cyclic block: {largest.name}, {c.largest_cyclic_variables} "
                     f"variables, {c.largest_cyclic_entries} entries")
    else:
        lines.append("largest cyclic block: none (the program is acyclic: back-substitution "
                     "solves it)")
    return "\n".join(lines)


# ------------------------------------------------------------------ systems



def block_conditions(system: System, dense_limit: int = DENSE_CONDITION_LIMIT
                     ) -> list[BlockCondition]:
    """Condition number of each cyclic block's matrix in ``system``.

    The block's matrix is (I - J_SS)^T for an adjoint system and (I - J_SS)
    for a tangent one, over the block's entries S, at the system's values.
    Blocks of at most ``dense_limit`` entries get ``numpy.linalg.cond`` (the
    exact 2-norm condition); larger ones the 1-norm estimate
    ``onenormest(A) * onenormest(A^-1)`` with A^-1 applied by sparse LU (a
    lower bound, usually within a small factor). A singular block gives inf.

    Examples
    --------
    >>> import lagrad
    >>> p = lagrad.Program()
    >>> a = p.input("a")
    >>> z = p.unknown("z")
    >>> p.define(z, 0.5 * z + a)
    >>> p.output(z)
    >>> [c] = block_conditions(p.solve(1.0).adjoint_system())
    >>> c.block, c.entries, c.norm, round(c.condition, 6)
    ('block 1 (z)', 3, '2', 9.006458)
    """
    out = []
    for unit in system.schedule.steps:
        if not isinstance(unit, CyclicBlock):
            continue
        a = block_matrix(unit, system.values, system.values.size)
        if system.orientation.transposed:
            a = a.T.tocsc()
        size = a.shape[0]
        if size <= dense_limit:
            with np.errstate(all="ignore"):
                cond = float(np.linalg.cond(a.toarray()))
            out.append(BlockCondition(unit.block.name, size, cond, "2"))
        else:
            out.append(BlockCondition(unit.block.name, size, _onenorm_condition(a),
                                      "1 (estimate)"))
    return out


def _onenorm_condition(a: sp.csc_matrix) -> float:
    """||A||_1 ||A^-1||_1, both by Higham's block estimator."""
    try:
        lu = spla.splu(a)
    except RuntimeError:  # exactly singular
        return float("inf")
    n = a.shape[0]
    inverse = spla.LinearOperator((n, n), matvec=lu.solve, rmatvec=lambda y: lu.solve(y, "T"),
                                  dtype=float)
    with np.errstate(all="ignore"):
        cond = float(spla.onenormest(a) * spla.onenormest(inverse))
    return cond if np.isfinite(cond) else float("inf")


def system_summary(system: System) -> str:
    """Kind, shape, sparsity, triangularity, blocks and conditioning, as text.

    Parameters
    ----------
    system : System
        An adjoint (multiplier) or tangent system of a solution.

    Returns
    -------
    str
        The system's equation and shape; the stored entries of its matrix;
        whether the matrix is triangular in program order (then one
        back-substitution or forward-substitution sweep solves it) and block
        triangular in block order; the sizes of the cyclic blocks and the
        condition number of each one's matrix (see :func:`block_conditions`).

    Examples
    --------
    >>> import lagrad
    >>> sol = lagrad.trace(lambda x: lagrad.sin(x) * x, 0.0).solve(2.0)
    >>> print(sol.adjoint_system().summary())
    adjoint system (I - J)^T lambda = e: 3 x 3, 3 variables
    nonzeros: 6 stored (66.7% of the entries), 3 off the diagonal
    program order: upper triangular (back-substitution solves it)
    block order: 3 blocks, none cyclic
    >>> p = lagrad.Program()
    >>> a = p.input("a")
    >>> z = p.unknown("z")
    >>> p.define(z, 0.5 * z + a)
    >>> p.output(z)
    >>> print(p.solve(1.0).tangent_system(1.0).summary())
    tangent system (I - J) zdot = e: 4 x 4, 4 variables
    nonzeros: 8 stored (50.0% of the entries), 4 off the diagonal
    program order: not triangular (the program has cycles)
    block order: block lower triangular, 2 blocks, 1 cyclic
    cyclic blocks (entries, condition of the block's I - J_SS):
      block 1 (z): 3 entries, cond_2 = 9.01
    """
    a = system.matrix
    n = a.shape[0]
    adjoint = system.orientation.transposed
    equation = "(I - J)^T lambda = e" if adjoint else "(I - J) zdot = e"
    off = a - sp.diags(a.diagonal())
    off.eliminate_zeros()
    density = 100.0 * a.nnz / max(n * n, 1)
    percent = f"{density:.1f}" if density >= 0.1 else f"{density:.2g}"
    lines = [f"{system.kind} system {equation}: {n} x {n}, {len(system.index)} variables",
             f"nonzeros: {a.nnz} stored ({percent}% of the entries), {off.nnz} off the "
             "diagonal"]
    side = "upper" if adjoint else "lower"
    if is_triangular(off, side):
        sweep = "back-substitution" if adjoint else "forward substitution"
        lines.append(f"program order: {side} triangular ({sweep} solves it)")
    else:
        lines.append("program order: not triangular (the program has cycles)")
    blocks = system.schedule.program.blocks
    cyclic = [b for b in blocks if b.cyclic]
    if not cyclic:
        lines.append(f"block order: {len(blocks)} blocks, none cyclic")
        return "\n".join(lines)
    perm = system.permutation
    shape = "block " + side + " triangular" if _blockis_triangular(off, perm, system, side) \
        else "NOT block triangular (unexpected)"
    lines.append(f"block order: {shape}, {len(blocks)} blocks, {len(cyclic)} cyclic")
    lines.append("cyclic blocks (entries, condition of the block's I - J_SS):")
    for c in block_conditions(system):
        value = f"cond_2 = {_number(c.condition)}" if c.norm == "2" else \
            f"cond_1 ~ {_number(c.condition)} (estimate)"
        lines.append(f"  {c.block}: {c.entries} entries, {value}")
    return "\n".join(lines)


def is_triangular(off: sp.spmatrix, side: str) -> bool:
    coo = off.tocoo()
    return bool(np.all(coo.col > coo.row) if side == "upper" else np.all(coo.col < coo.row))


def _blockis_triangular(off: sp.spmatrix, perm: NDArray[np.intp], system: System,
                      side: str) -> bool:
    """Every entry is inside a diagonal block or on the ``side`` of it."""
    position = np.empty_like(perm)
    position[perm] = np.arange(perm.size)
    owner = np.empty(perm.size, dtype=np.intp)  # block number of each flat position
    index = system.index
    for block in system.schedule.program.blocks:
        for v in block.variables:
            owner[index.slice(v.index)] = block.number
    coo = off.tocoo()
    rows, cols = owner[coo.row], owner[coo.col]
    return bool(np.all(cols >= rows) if side == "upper" else np.all(cols <= rows))


def _plural(k: int, word: str) -> str:
    return f"{k} {word}" + ("" if k == 1 else "s")


def _number(x: float) -> str:
    if not np.isfinite(x):
        return "inf (singular)"
    return f"{x:.3g}" if x < 1e4 else f"{x:.2e}"
