"""The convenience methods of Program and System, attached in one place.

:class:`~lagrad.Program` and :class:`~lagrad.System` are data; solving,
summarizing and drawing live in the layers above them (``solve/``,
``study/``). So that ``program.solve(x)`` and ``system.summary()`` still read
naturally, the methods below delegate to those layers and are set on the
classes here, once, when ``lagrad`` is imported. Nothing else adds methods to
another module's classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lagrad.ir.bulk import BulkProgram, from_arrays
from lagrad.ir.program import Program
from lagrad.solve.linsolve import LinearSolver, SystemSolution, solve_system
from lagrad.solve.solution import Solution, lagrangian, solve_program
from lagrad.solve.system import System
from lagrad.study.plot import draw_program
from lagrad.study.plot_spy import spy_system
from lagrad.study.summary import program_summary, system_summary

__all__: list[str] = []


def _from_arrays(cls: type[Program], kinds: Any, parents: Any, *, n_inputs: int,
                 constants: Any = None, output_weights: Any = None, primitives: Any = None,
                 name: str = "") -> BulkProgram:
    """A program of scalar equations, built in bulk from arrays.

    Variables 0..n_inputs-1 are scalar inputs ``x0, x1, ...``; equation i
    defines variable ``n_inputs + i`` as ``kinds[i]`` (an elementwise
    primitive's name: "add", "mul", "sin", ...) applied to
    ``parents[i, :arity]``, where a parent is an earlier variable's index or
    -1 for the constant ``constants[i, k]``. The output is the last
    variable, or with ``output_weights`` (one per variable) the readout
    ``sum_j output_weights[j] z_j``. With ``primitives`` (a list of names)
    ``kinds`` holds integer codes into it, which skips sorting the names.
    No Python object is made per equation. Every array is checked (``parents``
    of integers with shape (m, 2), (m, 1) or (m,); ``constants`` (m, 2);
    ``output_weights`` (n_inputs + m,)) and copied: the program keeps
    read-only copies. With no equations the output is the last input.
    The solver lays the variables out level by level, so in flat vectors
    (``sol.z``, ``sol.multipliers().vector``) a variable is where
    ``sol.schedule.index[var]`` says, not at its number; read values by
    variable or name (``sol["v3"]``).

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> p = lagrad.Program.from_arrays(
    ...     ["mul", "sin", "add"], [[0, 1], [2, -1], [3, 0]], n_inputs=2)
    >>> print(p)
    input x0: ()
    input x1: ()
    v2 = mul(x0, x1)  # ()
    v3 = sin(v2)  # ()
    v4 = add(v3, x0)  # ()
    output v4
    >>> [round(float(g), 6) for g in p.solve(0.5, 2.0).grad()]  # d/dx0, d/dx1
    [2.080605, 0.270151]
    """
    return from_arrays(kinds, parents, n_inputs=n_inputs, constants=constants,
                       output_weights=output_weights, primitives=primitives, name=name)


def _solve(self: Program, *inputs: Any, method: str | None = None, tol: float | None = None,
           maxiter: int | None = None, init: Mapping[Any, Any] | None = None,
           backward: Any = None, **named: Any) -> Solution:
    """Satisfy the constraints for the given input values.

    Inputs are given positionally in :attr:`inputs` order, or by name.
    Cyclic blocks are solved by ``method`` ("newton", "fixed_point" or
    "anderson"; default: each block's own choice, else "auto") to the
    relative tolerance ``tol`` within ``maxiter`` iterations, starting from
    ``init`` (a mapping from unknowns or names to arrays; default: the
    unknowns' ``init``). ``backward`` is the backward mode of every cyclic
    block in this solution's default multiplier solve (``sol.grad()``,
    ``sol.multipliers()``), over each block's own: "implicit" (exact),
    "unrolled" / "neumann" (K terms of the Neumann series; ``(mode, K)``),
    "phantom" / "jfb" (one term); see :class:`lagrad.options.BackwardOptions`.
    Returns a :class:`lagrad.Solution`; the program is not changed.
    """
    options = {"method": method, "tol": tol, "maxiter": maxiter, "init": init,
               "backward": backward}
    return solve_program(self, inputs, named, options)


def _lagrangian(self: Program, values: Any, multipliers: Any) -> float:
    """L = z_n - sum_i lambda_i . (z_i - f_i(z_alpha(i))) at any point.

    ``values`` and ``multipliers`` are flat vectors over all variables (in
    the system's index order) or mappings from variables or names to arrays.
    """
    return lagrangian(self, values, multipliers)


def _program_summary(self: Program) -> str:
    """Counts of variables, equations, edges and blocks, as text."""
    return program_summary(self)


def _draw(self: Program, **options: Any) -> Any:
    """Draw the dependency graph (needs the ``plot`` extra); see
    :func:`lagrad.study.plot.draw_program` for the options."""
    return draw_program(self, **options)


def _system_summary(self: System) -> str:
    """Shape, nnz, triangularity, block sizes and conditioning, as text."""
    return system_summary(self)


def _spy(self: System, **options: Any) -> Any:
    """Sparsity pictures of the matrix (needs the ``plot`` extra); see
    :func:`lagrad.study.plot_spy.spy_system` for the options."""
    return spy_system(self, **options)


def _system_solve(self: System, method: str | LinearSolver = "backsub",
                  **options: Any) -> SystemSolution:
    """Solve the system; returns ``(x, info)``.

    Parameters
    ----------
    method : str or LinearSolver
        "backsub" (= "auto"): back-substitution (adjoint) or forward
        substitution (tangent) between blocks through VJPs/JVPs, never
        assembling J; inside cyclic blocks the automatic choice (reuse of
        Newton's LU; after a contracting forward iteration the reduced LU
        or the Neumann series, whichever needs fewer products; else
        sparse LU, else GMRES).
        "splu", "gmres", "bicgstab", "lgmres", "fixed_point", "reduced_lu",
        "lstsq": the
        same sweep with that solver inside cyclic blocks (see
        :mod:`lagrad.solve.blocksolve`); options ``tol``, ``maxiter``,
        ``preconditioner`` (see :class:`lagrad.options.LinearOptions`).
        "spsolve": scipy sparse direct solve of the whole assembled matrix;
        "dense": numpy.linalg.solve of the whole dense matrix (the O(n^3)
        reference).

    Returns
    -------
    SystemSolution
        ``x`` (flat, in :attr:`index` order) and ``info`` (:class:`SolveInfo`).
    """
    return solve_system(self, method, options)


def _attach() -> None:
    methods: dict[type, dict[str, Any]] = {
        Program: {"from_arrays": classmethod(_from_arrays), "solve": _solve,
                  "lagrangian": _lagrangian, "summary": _program_summary, "draw": _draw},
        System: {"solve": _system_solve, "summary": _system_summary, "spy": _spy},
    }
    for cls, table in methods.items():
        for name, fn in table.items():
            target = fn.__func__ if isinstance(fn, classmethod) else fn
            target.__name__ = name
            target.__qualname__ = f"{cls.__name__}.{name}"
            target.__module__ = cls.__module__
            setattr(cls, name, fn)


_attach()
