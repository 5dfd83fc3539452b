"""A solved program's Jacobian d output / d inputs as a scipy.sparse matrix.

The pattern comes from the program: entry (i, j) can be non-zero only if a
path of stored entries of J leads from input entry j to output entry i,
which one boolean sweep over J cut by level finds (:func:`reach_many`). The
columns (forward) or rows (reverse) are then coloured so that one tangent
(adjoint) solve per colour gives them all, and all colours are solved in ONE
sweep with k right-hand sides (:func:`solve_many`): the cost is that of one
sweep with k-column products, k being the number of colours (3 for a
tridiagonal Jacobian, whatever its size).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from lagrad.compile.jacobian import assemble_jacobian, blame_partials
from lagrad.errors import OptionError
from lagrad.numeric import all_finite
from lagrad.solve.colouring import colour_count, greedy_colouring, recover, seed_matrix
from lagrad.solve.multisweep import LevelSplit, reach_many, solve_many, split_levels, take_rows
from lagrad.solve.solution import Solution, truncated_backward
from lagrad.solve.system import ADJOINT, TANGENT, Orientation

__all__ = ["SparseJacobian", "sparse_jacobian", "MODES"]

Ints = NDArray[np.intp]


@dataclass(frozen=True)
class SparseJacobian:
    """d output / d inputs (CSR, (output.size, total input size)) and how it was found."""

    matrix: sp.csr_matrix
    orientation: Orientation  # TANGENT: coloured columns; ADJOINT: coloured rows
    colours: int  # the number of solves (right-hand sides) it took


MODES: dict[str, tuple[Orientation, ...]] = {
    "auto": (TANGENT, ADJOINT), "forward": (TANGENT,), "reverse": (ADJOINT,)}
"""Which sweeps a mode may choose from (the one needing fewer colours wins)."""


def sparse_jacobian(sol: Solution, mode: str = "auto") -> SparseJacobian:
    """The Jacobian of a solved program by coloured multi-right-hand-side solves.

    Parameters
    ----------
    sol : Solution
        A solved program.
    mode : {"auto", "forward", "reverse"}
        Colour columns and solve tangent systems ("forward"), colour rows and
        solve adjoint systems ("reverse"), or whichever needs fewer colours.

    Returns
    -------
    SparseJacobian
        ``.matrix`` (CSR, shape (output.size, total input size), inputs in
        program order), ``.orientation`` and ``.colours``.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> from lagrad.solve.sparsejac import sparse_jacobian
    >>> sol = lagrad.trace(lambda x: x[1:] * x[:-1], np.ones(5)).solve(np.arange(5.0))
    >>> jac = sparse_jacobian(sol)
    >>> jac.colours, jac.matrix.toarray()
    (2, array([[1., 0., 0., 0., 0.],
           [0., 2., 1., 0., 0.],
           [0., 0., 3., 2., 0.],
           [0., 0., 0., 4., 3.]]))
    """
    if mode not in MODES:
        raise OptionError(f"jacobian: unknown mode {mode!r}; choose one of {sorted(MODES)}")
    truncated = truncated_backward(sol)
    if mode != "forward" and truncated is not None:
        raise OptionError(
            f"jacobian(sparse=True): {truncated}, which the "
            "coloured adjoint solves do not apply (they would give the exact rows, unlike "
            "the dense reverse Jacobian); pass mode='forward' (a backward mode changes only "
            "the adjoint: tangents are exact) or leave sparse=False")
    schedule, z = sol.schedule, sol.z
    index = schedule.index
    inputs = index.positions(schedule.inputs)
    outputs = index.positions([schedule.output_variable])
    with np.errstate(all="ignore"):
        split = split_levels(schedule, assemble_jacobian(schedule, z))
    pattern = _pattern(split, inputs, outputs)
    options = {o: greedy_colouring(pattern if o is TANGENT else pattern.T)
               for o in MODES[mode]}
    orientation = min(options, key=lambda o: colour_count(options[o]))
    colours = options[orientation]
    seeds, reads = (inputs, outputs) if orientation is TANGENT else (outputs, inputs)
    with np.errstate(all="ignore"):
        x = solve_many(split, schedule, z, orientation, seeds, seed_matrix(colours),
                       sol.diagnostics)
        compressed = take_rows(split, x, reads, colour_count(colours), sparse=False)
        matrix = recover(pattern, compressed, colours, by_rows=orientation is ADJOINT)
    if not all_finite(matrix.data):
        raise blame_partials(schedule, z)
    return SparseJacobian(matrix, orientation, colour_count(colours))


def _pattern(split: LevelSplit, inputs: Ints, outputs: Ints) -> sp.csr_matrix:
    """Structural pattern (outputs x inputs), swept from the smaller side."""
    if inputs.size <= outputs.size:
        reached = reach_many(split, TANGENT, inputs)
        return take_rows(split, reached, outputs, inputs.size, sparse=True)
    reached = reach_many(split, ADJOINT, outputs)
    return take_rows(split, reached, inputs, outputs.size, sparse=True).T.tocsr()
