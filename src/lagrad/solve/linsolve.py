"""Linear solves of the multiplier (adjoint) and tangent systems.

:func:`solve_system` is the one entry point: every solve of a
:class:`~lagrad.System` (``system.solve``, ``sol.grad``, ``sol.tangent``,
``lagrad.vjp``, ``lagrad.jacobian``, the naive baselines) goes through it. It
resolves the method name once, through :data:`METHODS`, validates the options
once (:class:`~lagrad.options.LinearOptions`), and returns a
:class:`SystemSolution` ``(x, info)``: the solution vector, in the system's
flat index order, and :class:`SolveInfo` diagnostics with the result of every
cyclic block's solve. Nothing else is changed.
"""

from __future__ import annotations

import math
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse.linalg as spla
from numpy.typing import NDArray

from lagrad.compile.groups import CyclicGroup, grouped_steps
from lagrad.compile.guards import Relevant
from lagrad.compile.jacobian import block_matrix
from lagrad.compile.levels import level_plan, levels_solve
from lagrad.compile.schedule import CyclicBlock
from lagrad.errors import ConvergenceError, NonFiniteError, OptionError, SingularSystemError
from lagrad.ir.program import Program
from lagrad.numeric import all_finite
from lagrad.options import AdjointOptions, LinearOptions
from lagrad.solve import blocksolve, petsc
from lagrad.solve.blocksolve import Workspace, check_determined, substitute_block
from lagrad.solve.buffers import pool_of
from lagrad.solve.grouped import check_group_determined
from lagrad.solve.grouplinear import solve_linear
from lagrad.solve.multirhs import substitute_many
from lagrad.solve.results import BlockResult, Status
from lagrad.solve.system import Orientation, System

__all__ = ["SolveInfo", "SystemSolution", "LinearSolver", "Substitution", "Levels",
           "SparseDirect", "Dense", "Petsc", "METHODS", "resolve_method", "solve_system"]

Array = NDArray[np.float64]
DENSE_LIMIT = 20_000  # unknowns; the dense reference needs n^2 floats of memory


@dataclass(slots=True)
class SolveInfo:
    """Diagnostics of one linear solve of a whole system.

    ``residual`` is the relative residual ||M x - b|| / ||b|` (computed
    matrix-free when the solve is done; NaN when the caller did not ask for
    it). ``blocks`` lists the result of each cyclic block's solve.
    """

    method: str
    seconds: float
    residual: float
    iterations: int = 1
    converged: bool = True
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    status: Status = Status.CONVERGED

    @property
    def blocks(self) -> list[BlockResult]:
        """The cyclic blocks' results, in solve order."""
        return list(self.extra.get("blocks", []))


class SystemSolution(NamedTuple):
    """``(x, info)`` as scipy's iterative solvers return them."""

    x: Array
    info: SolveInfo

    @property
    def multipliers(self) -> Array:
        """Alias of ``x`` for an adjoint system."""
        return self.x

    @property
    def diagnostics(self) -> SolveInfo:
        return self.info


@dataclass(slots=True)
class Outcome:
    """What a solver's run gives back to :func:`solve_system`."""

    x: Array
    iterations: int = 1
    notes: str = ""
    blocks: list[BlockResult] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class LinearSolver(ABC):
    """A method for a whole system: one signature, :meth:`run`."""

    name: str = ""
    takes_options = False  # whole-matrix methods take none
    guarded = False  # True: the solver itself names the culprit of a non-finite result

    @abstractmethod
    def run(self, system: System, options: LinearOptions,
            rebuild_rhs: Callable[[], Array] | None) -> Outcome:
        """Solve ``system``. With ``rebuild_rhs`` the solver may overwrite
        ``system.rhs``; the callable gives a fresh copy of it (only needed to
        replay a sweep that went non-finite, to name the culprit)."""


class Substitution(LinearSolver):
    """Back-substitution (adjoint) or forward substitution (tangent) between
    blocks, in block order, through each equation's VJP/JVP (J is never
    assembled for acyclic parts); inside each cyclic block a linear solve by
    the block method ``inner`` (see :mod:`lagrad.solve.blocksolve`)."""

    takes_options = True
    guarded = True

    def __init__(self, name: str, inner: str) -> None:
        self.name, self.inner = name, inner

    def run(self, system: System, options: LinearOptions,
            rebuild_rhs: Callable[[], Array] | None) -> Outcome:
        schedule, z, orientation = system.schedule, system.values, system.orientation
        if self.inner == "auto" and not options.given and not schedule.program.adjoint_options \
                and level_plan(schedule) is not None:
            return LEVELS.run(system, options, rebuild_rhs)
        vec = system.rhs if rebuild_rhs is not None else system.rhs.copy()
        work = Workspace(vec.size, pool_of(schedule))
        blocks: list[BlockResult] = []

        # the default ("auto") solves each group of same-structure blocks at once,
        # reusing its forward factorization; a named block method runs block by block
        steps = grouped_steps(schedule) if self.inner == "auto" else schedule.steps

        def sweep(keep: Relevant | None) -> Array:
            if keep is not None:  # again, over the output's ancestors only (guards.py)
                vec[:] = rebuild_rhs() if rebuild_rhs is not None else system.rhs
                blocks.clear()
            for step in orientation.order(steps if keep is None else keep.steps):
                if isinstance(step, CyclicGroup) and (_truncates(system, step.units) or
                                                      _declares(schedule.program, step)):
                    for member in orientation.order(step.members):  # block by block
                        if isinstance(member, CyclicBlock):
                            blocks.append(self.solve_block(member, system, vec, options, work))
                        else:
                            orientation.propagate(member, z, vec)
                elif isinstance(step, CyclicGroup):
                    blocks.append(_substitute_group(step, system, vec))
                elif isinstance(step, CyclicBlock):
                    blocks.append(self.solve_block(step, system, vec, options, work))
                else:
                    orientation.propagate(step, z, vec)
            return vec
        x = orientation.guard(sweep, schedule, z, rebuild_rhs or system.rhs)
        notes = "one sweep in block order"
        if blocks:
            notes += "; cyclic blocks: " + ", ".join(f"{b.block} by {b.method}" for b in blocks)
        return Outcome(x, max([b.iterations for b in blocks], default=1), notes, blocks)

    def solve_block(self, unit: CyclicBlock, system: System, vec: Array,
                    options: LinearOptions, work: Workspace) -> BlockResult:
        """One cyclic block's step of the sweep, in place in ``vec``."""
        if not unit.u_index.size:
            return substitute_acyclic(unit, system.values, vec, system.orientation)
        backward = blocksolve.backward_of(system.schedule.program, unit, system.backward)
        method = self.inner
        declared = _declared(system.schedule.program, unit) if method == "auto" else None
        if declared is not None:  # the block's own defaults; the call's tol wins
            method = declared.method or "auto"
            if options.tol is None and declared.tol is not None:
                options = replace(options, tol=declared.tol)
        return substitute_block(unit, system.values, vec, system.orientation, method,
                                options, _own_result(system, unit), work, backward)


def _truncates(system: System, units: tuple[CyclicBlock, ...]) -> bool:
    """True when an adjoint sweep is to take a truncated backward mode in one of
    ``units`` (a group of same-structure blocks is then solved block by block)."""
    if not system.orientation.transposed:
        return False
    program = system.schedule.program
    if system.backward is None and not program.block_backward:
        return False  # nothing declared: skip asking each of a group's B blocks
    return any((mode := blocksolve.backward_of(program, u, system.backward)) is not None
               and mode.truncated for u in units)


def _declared(program: Program, unit: CyclicBlock) -> AdjointOptions | None:
    """The linear-solve options a block declared (its first unknown's win)."""
    for u in unit.unknowns:
        found = program.adjoint_options.get(u.index)
        if found is not None:
            return found
    return None


def _declares(program: Program, group: CyclicGroup) -> bool:
    """Whether any block of the group declared its own linear-solve options."""
    return bool(program.adjoint_options) and any(
        _declared(program, unit) is not None for unit in group.units)


def substitute_acyclic(unit: CyclicBlock, z: Array, vec: Array,
                       orientation: Orientation) -> BlockResult:
    """A block whose unknowns have no entries (shape (0,)) is acyclic: given
    z_U (nothing) its equations run in order, so its step of the sweep is a
    substitution through them, with no linear solve (which would meet an
    empty system)."""
    for step in orientation.order(unit.steps):
        orientation.propagate(step, z, vec)
    return BlockResult(unit.block.name, "substitution", unit.block.number,
                       reason="its unknowns have no entries: the block is acyclic")


def _own_result(system: System, unit: CyclicBlock) -> BlockResult | None:
    """The block's own forward result (None for a block solved in a group: the
    group's result is filed under its first block's number)."""
    forward = system.forward.get(unit.block.number)
    return None if forward is None or "blocks" in forward.extra else forward


def _substitute_group(group: CyclicGroup, system: System, vec: Array) -> BlockResult:
    """A group's step of the default sweep (see lagrad.solve.grouped); a group
    solved block by block (a named forward method) has no group result, and
    its factorization is then made here."""
    forward = system.forward.get(group.units[0].block.number)
    if forward is not None and "blocks" not in forward.extra:
        forward = None  # the first block's own result, not the group's
    if forward is not None:
        check_group_determined(group, forward)
    return solve_linear(group, system.values, vec, system.orientation.transposed,
                        forward.factorization if forward is not None else None)


class Levels(LinearSolver):
    """Substitution one level of equal height at a time on J's assembled values
    (programs of scalar elementwise equations; see :mod:`lagrad.compile.levels`)."""

    name = "levels"
    guarded = True

    def run(self, system: System, options: LinearOptions,
            rebuild_rhs: Callable[[], Array] | None) -> Outcome:
        plan = level_plan(system.schedule)
        if plan is None:
            raise OptionError("method 'levels' needs a program whose equations are all scalar "
                              "and elementwise; use 'backsub'")
        orientation = system.orientation

        def sweep(keep: Relevant | None) -> Array:
            if keep is not None and rebuild_rhs is not None:  # the first sweep overwrote it
                system.rhs[:] = rebuild_rhs()
            return levels_solve(plan, system.values, system.rhs, orientation.transposed,
                                rebuild_rhs is not None, None if keep is None else keep.mask)
        x = orientation.guard(sweep, system.schedule, system.values, rebuild_rhs or system.rhs,
                              getattr(plan, "witnesses", None))  # a bulk plan's
        return Outcome(x, len(plan.down), "one vectorized step per level")


BACKWARD_ERROR_LIMIT = 1e-10
"""Whole-matrix methods: the largest normwise backward error of their
solution, measured against the matrix-free product (see _held_to_map)."""


class SparseDirect(LinearSolver):
    """scipy.sparse.linalg.spsolve (SuperLU) on the assembled matrix."""

    name = "spsolve"

    def run(self, system: System, options: LinearOptions,
            rebuild_rhs: Callable[[], Array] | None) -> Outcome:
        _check_blocks(system)
        with warnings.catch_warnings():
            warnings.simplefilter("error", spla.MatrixRankWarning)
            try:
                x = spla.spsolve(system.matrix.tocsc(), system.rhs)
            except (spla.MatrixRankWarning, RuntimeError) as err:
                raise SingularSystemError(f"spsolve: the {system.kind} matrix is singular "
                                          f"({err})") from err
        x = np.atleast_1d(np.asarray(x, dtype=float))
        _held_to_map(system, x, self.name)
        return Outcome(x)


class Dense(LinearSolver):
    """numpy.linalg.solve on the dense matrix: the O(n^3) reference."""

    name = "dense"

    def run(self, system: System, options: LinearOptions,
            rebuild_rhs: Callable[[], Array] | None) -> Outcome:
        n = system.shape[0]
        _check_blocks(system)
        if n > DENSE_LIMIT:
            raise OptionError(f"method 'dense' would build a {n} x {n} matrix "
                              f"(limit {DENSE_LIMIT}); use 'backsub' or 'spsolve'")
        m = system.matrix.toarray()
        try:
            x = np.linalg.solve(m, system.rhs)
        except np.linalg.LinAlgError as err:
            raise _singular_block(system, float("inf")) from err
        cond = float(np.linalg.cond(m, 1)) if n <= 2000 else float("nan")
        cyclic = any(isinstance(step, CyclicBlock) for step in system.schedule.steps)
        if cyclic and cond > 1 / np.finfo(float).eps:  # else I - J is unit triangular:
            raise _singular_block(system, cond)  # a large condition is not singularity
        _held_to_map(system, x, self.name)
        return Outcome(x, extra={"condition": cond})


def _held_to_map(system: System, x: Array, name: str) -> None:
    """Raise ConvergenceError when ``x``, solved with the assembled matrix,
    does not solve the system as the equations' own rules apply it
    (``system.matvec``, matrix-free): a normwise backward error
    ||r|| / (||M|| ||x|| + ||b||) above BACKWARD_ERROR_LIMIT, where a
    backward-stable solve leaves about n eps, however ill-conditioned."""
    if x.ndim != 1 or system.rhs.ndim != 1 or not x.size:  # (a block of seeds: not checked)
        return
    with np.errstate(all="ignore"):
        r = system.matvec(x) - system.rhs
        size = float(abs(system.matrix).sum(axis=1).max()) * float(np.abs(x).max()) + \
            float(np.abs(system.rhs).max())
        error = float(np.abs(r).max()) / max(size, np.finfo(float).tiny)
    if error > BACKWARD_ERROR_LIMIT:  # (a NaN is named by the finiteness checks)
        raise ConvergenceError(f"{name}: the assembled {system.kind} matrix (the equations' "
                               "Jacobian rules) disagrees with their VJP/JVP rules (backward "
                               f"error {error:.1e}): a derivative rule is wrong "
                               "(lagrad.check_grad tests one); method='backsub' uses the "
                               "VJP/JVP rules only")


def _check_blocks(system: System) -> None:
    """Whole-matrix methods refuse a block singular at the solution, as the
    block methods do (see blocksolve.check_determined)."""
    for step in system.schedule.steps:
        if isinstance(step, CyclicBlock):
            check_determined(step, _own_result(system, step))


def _singular_block(system: System, cond: float) -> SingularSystemError:
    """Name the worst-conditioned cyclic block (only cyclic blocks can be singular:
    the rest of I - J is unit triangular)."""
    worst, worst_cond = None, 0.0
    for unit in system.schedule.steps:
        if isinstance(unit, CyclicBlock):
            a = block_matrix(unit, system.values).toarray()
            c = float(np.linalg.cond(a)) if a.size else 0.0
            if not c < worst_cond:
                worst, worst_cond = unit, c
    where = worst.block.name if worst is not None else "the matrix"
    return SingularSystemError(f"dense: the {system.kind} matrix is singular in {where} "
                               f"(estimated condition {max(cond, worst_cond):.2e}); use "
                               "method='lstsq' for minimum-norm multipliers")


class Petsc(LinearSolver):
    """The whole system in one PETSc KSP solve, distributed over the MPI ranks
    (see :mod:`lagrad.solve.petsc`): the adjoint by ``solveTranspose`` on (I - J)."""

    name = "petsc"
    takes_options = True

    def run(self, system: System, options: LinearOptions,
            rebuild_rhs: Callable[[], Array] | None) -> Outcome:
        _check_blocks(system)
        x, result = petsc.solve_system_petsc(system, options)
        return Outcome(x, result.iterations, petsc.describe(result), extra=dict(result.extra))


NO_OPTIONS = LinearOptions()
LEVELS = Levels()
METHODS: dict[str, LinearSolver] = {
    **{name: Substitution(name, name) for name in blocksolve.BLOCK_METHODS},
    "backsub": Substitution("backsub", "auto"),
    "levels": LEVELS,
    "spsolve": SparseDirect(),
    "dense": Dense(),  # the whole dense matrix (the reference), not the block method
    "petsc": Petsc(),  # the whole system; "petsc_blocks": PETSc inside each cyclic block
    "petsc_blocks": Substitution("petsc_blocks", "petsc"),
}
"""Every method by name. "auto" and "backsub" are the default substitution
(block methods chosen by :func:`lagrad.solve.blocksolve.choose`); a block
method's name ("splu", "gmres", ...) is the substitution with that method
inside every cyclic block; "levels", "spsolve", "dense" and "petsc" solve the
whole system at once ("petsc_blocks" is the substitution with PETSc inside
every cyclic block)."""


def resolve_method(method: str | LinearSolver) -> LinearSolver:
    """Turn a method name into its solver (the only place names are looked up)."""
    if isinstance(method, LinearSolver):
        return method
    try:
        return METHODS[method]
    except (KeyError, TypeError):
        raise OptionError(f"unknown method {method!r}; choose one of {sorted(METHODS)}") \
            from None


def solve_system(system: System, method: str | LinearSolver = "auto",
                 options: Mapping[str, Any] | LinearOptions | None = None, *,
                 rebuild_rhs: Callable[[], Array] | None = None,
                 compute_residual: bool = True) -> SystemSolution:
    """Solve ``system`` by ``method`` with ``options``; returns ``(x, info)``.

    With ``rebuild_rhs`` (a function returning a fresh copy of the right-hand
    side) a substitution may compute the solution in ``system.rhs`` itself: no
    copy of a vector as long as the program. ``compute_residual=False`` skips
    the check product (``info.residual`` is then NaN).
    """
    solver = resolve_method(method)
    if not options:
        options = NO_OPTIONS
    elif not isinstance(options, LinearOptions):
        options = dict(options or {})
        if options and not solver.takes_options:
            raise OptionError(f"method {solver.name!r} takes no options, got {sorted(options)}")
        options = LinearOptions.from_mapping(options, solver.name)
    if system.seeds is not None:
        return _solve_seeds(system, solver, options, compute_residual)
    t0 = time.perf_counter()
    out = solver.run(system, options, rebuild_rhs)
    seconds = time.perf_counter() - t0
    if not solver.guarded and not all_finite(out.x):
        raise NonFiniteError(f"{solver.name}: the solution of the {system.kind} system is "
                             "not finite")
    residual = system.residual(out.x) if compute_residual else math.nan
    extra = {**out.extra, "blocks": out.blocks} if out.blocks or solver.takes_options \
        else out.extra
    return SystemSolution(out.x, SolveInfo(solver.name, seconds, residual, out.iterations,
                                           True, out.notes, extra))


def _solve_seeds(system: System, solver: LinearSolver, options: LinearOptions,
                 compute_residual: bool) -> SystemSolution:
    """A block of k right-hand sides (``rhs`` (n, k)). The default method's
    exact sweep takes them together (:func:`lagrad.solve.multirhs.substitute_many`:
    each product for all k columns, each cyclic block factorized or iterated
    once); whole-matrix methods factorize once; any other method, a truncated
    backward mode, or a non-finite result (to name its culprit) solve column
    by column, each column as a single right-hand side."""
    t0 = time.perf_counter()
    k, schedule = system.rhs.shape[1], system.schedule
    program = schedule.program
    together = isinstance(solver, Substitution) and solver.inner == "auto" and \
        not options.given and (not system.orientation.transposed or (
            system.backward is None and not program.adjoint_options and
            not any(mode.truncated for mode in program.block_backward.values())))
    x = None
    if k == 0:
        x, notes = np.zeros(system.rhs.shape), "no right-hand side"
    elif together:
        with np.errstate(all="ignore"):  # a non-finite result is solved again below
            x = substitute_many(schedule, system.values, system.orientation, system.rhs,
                                system.forward, options)
        notes = f"one sweep in block order for {k} right-hand sides"
    elif isinstance(solver, (SparseDirect, Dense)):
        x = solver.run(system, options, None).x.reshape(system.rhs.shape)  # (spsolve: k = 1
        notes = f"one factorization for {k} columns"  # comes back as a vector)
    if x is None or not all_finite(x):
        columns = [solve_system(System(schedule, system.values, system.orientation,
                                       np.ascontiguousarray(system.rhs[:, j]), system.forward,
                                       system.backward), solver, options,
                                compute_residual=False)
                   for j in range(k)]
        x = np.stack([c.x for c in columns], axis=1) if columns else np.zeros(system.rhs.shape)
        notes = f"{k} right-hand sides, one {solver.name} solve each"
    seconds = time.perf_counter() - t0
    residual = system.residual(x) if compute_residual else math.nan
    return SystemSolution(x, SolveInfo(solver.name, seconds, residual, 1, True, notes))
