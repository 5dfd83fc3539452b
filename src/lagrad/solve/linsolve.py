"""Linear solvers for the multiplier (adjoint) and tangent systems, by name.

Each solver takes a :class:`lagrad.solve.system.System` and returns a
:class:`SystemSolution` ``(x, info)``: the solution vector (in the system's
flat index order) and :class:`SolveInfo` diagnostics. A method name is
resolved once, through :data:`METHODS`.
"""

from __future__ import annotations

import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse.linalg as spla
from numpy.typing import NDArray

from lagrad.compile.guards import guarded
from lagrad.compile.jacobian import block_matrix
from lagrad.compile.levels import level_plan, levels_adjoint, levels_tangent
from lagrad.compile.schedule import CyclicBlock
from lagrad.errors import NonFiniteError, OptionError, SingularSystemError
from lagrad.solve.blocksolve import (
    BLOCK_METHODS,
    BlockSolveInfo,
    Workspace,
    solve_adjoint_block,
    solve_tangent_block,
)
from lagrad.solve.blocksolve import OPTIONS as BLOCK_OPTIONS
from lagrad.solve.system import System

__all__ = ["SolveInfo", "SystemSolution", "LinearSolver", "BlockSubstitution",
           "SparseDirect", "Dense", "METHODS", "resolve_method"]

Array = NDArray[np.float64]
DENSE_LIMIT = 20_000  # unknowns; the dense reference needs n^2 floats of memory


@dataclass(frozen=True)
class SolveInfo:
    """Diagnostics of one linear solve.

    ``residual`` is the relative residual ||M x - b|| / ||b|| (computed
    matrix-free when the solve is done).
    """

    method: str
    seconds: float
    residual: float
    iterations: int = 1
    converged: bool = True
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


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


class LinearSolver(ABC):
    """Solves ``system``; subclasses implement :meth:`_solve` for one method."""

    name: str = ""
    whole_system = False  # True: works on the assembled matrix of the whole system

    def solve(self, system: System, **options: Any) -> SystemSolution:
        t0 = time.perf_counter()
        x, extra = self._solve(system, **options)
        seconds = time.perf_counter() - t0
        if not np.isfinite(x).all():
            raise NonFiniteError(f"{self.name}: the solution of the {system.kind} system is "
                                 "not finite")
        return SystemSolution(x, SolveInfo(self.name, seconds, system.residual(x), **extra))

    @abstractmethod
    def _solve(self, system: System, **options: Any) -> tuple[Array, dict[str, Any]]: ...


class BlockSubstitution(LinearSolver):
    """Back-substitution (adjoint) or forward substitution (tangent) between
    blocks, in block order, through each equation's VJP/JVP (J is never
    assembled for acyclic parts); inside each cyclic block a linear solve by
    ``inner`` (see :mod:`lagrad.solve.blocksolve`)."""

    def __init__(self, name: str, inner: str) -> None:
        self.name = name
        self.inner = inner

    def _solve(self, system: System, **options: Any) -> tuple[Array, dict[str, Any]]:
        unknown = set(options) - BLOCK_OPTIONS
        if unknown:
            raise OptionError(f"method {self.name!r}: unknown options {sorted(unknown)}; "
                              f"accepted: {sorted(BLOCK_OPTIONS)}")
        vec, blocks = sweep(system, self.inner, options)
        notes = "one sweep in block order"
        if blocks:
            notes += "; cyclic blocks: " + ", ".join(f"{b.block} by {b.method}" for b in blocks)
        iterations = max([b.iterations for b in blocks], default=1)
        return vec, {"notes": notes, "iterations": iterations, "extra": {"blocks": blocks}}


def sweep(system: System, method: str = "auto", options: dict[str, Any] | None = None,
          rebuild_rhs: Callable[[], Array] | None = None) -> tuple[Array, list[BlockSolveInfo]]:
    """The substitution sweep: reverse-mode for adjoint, forward-mode for tangent.

    Returns the solution and the diagnostics of each cyclic block's solve. With
    ``rebuild_rhs`` (a function returning a fresh copy of the right-hand side,
    used only to replay a sweep that went non-finite) the solution is computed
    in ``system.rhs`` itself: no copy of a vector as long as the program.
    """
    options = dict(options or {})
    schedule, z = system.schedule, system.values
    if method == "auto" and not options and level_plan(schedule) is not None:
        return _levels(system, rebuild_rhs), []
    forward = system.forward
    original_rhs = rebuild_rhs if rebuild_rhs is not None else system.rhs
    vec = system.rhs if rebuild_rhs is not None else system.rhs.copy()
    work = Workspace(vec.size)
    infos: list[BlockSolveInfo] = []
    if system.kind == "adjoint":
        def run() -> Array:
            for step in reversed(schedule.steps):
                if isinstance(step, CyclicBlock):
                    infos.append(solve_adjoint_block(step, z, vec, method, options,
                                                     forward.get(step.block.number), work))
                else:
                    step.pullback(z, vec)
            return vec
        return guarded(run, schedule, "multiplier", z, original_rhs), infos

    def run_forward() -> Array:
        for step in schedule.steps:
            if isinstance(step, CyclicBlock):
                infos.append(solve_tangent_block(step, z, vec, method, options,
                                                 forward.get(step.block.number), work))
            else:
                step.pushforward(z, vec)
        return vec
    return guarded(run_forward, schedule, "tangent"), infos


def _levels(system: System, rebuild_rhs: Callable[[], Array] | None = None) -> Array:
    """With ``rebuild_rhs`` (as in :func:`sweep`) the solution overwrites system.rhs."""
    plan = level_plan(system.schedule)
    if plan is None:
        raise OptionError("method 'levels' needs a program whose equations are all scalar and "
                          "elementwise; use 'backsub'")
    solve = levels_adjoint if system.kind == "adjoint" else levels_tangent
    inplace = rebuild_rhs is not None
    run = lambda: solve(plan, system.values, system.rhs, inplace)  # noqa: E731
    if system.kind == "adjoint":
        return guarded(run, system.schedule, "multiplier", system.values,
                       rebuild_rhs if inplace else system.rhs)
    return guarded(run, system.schedule, "tangent")


class Levels(LinearSolver):
    """Substitution one level of equal height at a time on J's assembled values
    (programs of scalar elementwise equations; see :mod:`lagrad.compile.levels`)."""

    name = "levels"
    whole_system = True

    def _solve(self, system: System, **options: Any) -> tuple[Array, dict[str, Any]]:
        _no_options(self.name, options)
        plan = level_plan(system.schedule)
        return _levels(system), {"iterations": len(plan.down) if plan else 0,
                                 "notes": "one vectorized step per level"}


class SparseDirect(LinearSolver):
    """scipy.sparse.linalg.spsolve (SuperLU) on the assembled matrix."""

    name = "spsolve"
    whole_system = True

    def _solve(self, system: System, **options: Any) -> tuple[Array, dict[str, Any]]:
        _no_options(self.name, options)
        with warnings.catch_warnings():
            warnings.simplefilter("error", spla.MatrixRankWarning)
            try:
                x = spla.spsolve(system.matrix.tocsc(), system.rhs)
            except (spla.MatrixRankWarning, RuntimeError) as err:
                raise SingularSystemError(f"spsolve: the {system.kind} matrix is singular "
                                          f"({err})") from err
        return np.atleast_1d(np.asarray(x, dtype=float)), {}


class Dense(LinearSolver):
    """numpy.linalg.solve on the dense matrix: the O(n^3) reference."""

    name = "dense"
    whole_system = True

    def _solve(self, system: System, **options: Any) -> tuple[Array, dict[str, Any]]:
        _no_options(self.name, options)
        n = system.rhs.size
        if n > DENSE_LIMIT:
            raise OptionError(f"method 'dense' would build a {n} x {n} matrix "
                              f"(limit {DENSE_LIMIT}); use 'backsub' or 'spsolve'")
        m = system.matrix.toarray()
        try:
            x = np.linalg.solve(m, system.rhs)
        except np.linalg.LinAlgError as err:
            raise _singular_block(system, float("inf")) from err
        cond = float(np.linalg.cond(m, 1)) if n <= 2000 else float("nan")
        if cond > 1 / np.finfo(float).eps:
            raise _singular_block(system, cond)
        return x, {"extra": {"condition": cond}}


def _singular_block(system: System, cond: float) -> SingularSystemError:
    """Name the worst-conditioned cyclic block (only cyclic blocks can be singular:
    the rest of I - J is unit triangular)."""
    worst, worst_cond = None, 0.0
    for unit in system.schedule.steps:
        if isinstance(unit, CyclicBlock):
            a = block_matrix(unit, system.values, system.values.size).toarray()
            c = float(np.linalg.cond(a)) if a.size else 0.0
            if not c < worst_cond:
                worst, worst_cond = unit, c
    where = worst.block.name if worst is not None else "the matrix"
    return SingularSystemError(f"dense: the {system.kind} matrix is singular in {where} "
                               f"(estimated condition {max(cond, worst_cond):.2e}); use "
                               "method='lstsq' for minimum-norm multipliers")


def _no_options(name: str, options: dict[str, Any]) -> None:
    if options:
        raise OptionError(f"method {name!r} takes no options, got {sorted(options)}")


METHODS: dict[str, LinearSolver] = {
    s.name: s for s in (BlockSubstitution("backsub", "auto"), SparseDirect(), Dense(), Levels(),
                        *(BlockSubstitution(m, m) for m in BLOCK_METHODS if m != "dense"))}


DEFAULT_SWEEP = frozenset({"auto", "backsub"})  # names of the default block substitution


def resolve_method(method: str | LinearSolver) -> LinearSolver:
    """Turn a method name into its solver (the only place names are looked up)."""
    if isinstance(method, LinearSolver):
        return method
    try:
        return METHODS[method]
    except (KeyError, TypeError):
        raise OptionError(f"unknown method {method!r}; choose one of {sorted(METHODS)}") \
            from None

