"""The linear systems of a solved program.

With J the sparse n x n matrix J[i, j] = df_i/dz_j (non-zero only on edges of
the dependency graph, zero rows for inputs):

* adjoint (multiplier) system   (I - J)^T lambda = e      (e: output seed)
* tangent system                (I - J) zdot = e          (e: input direction)

Both are exposed as objects for study: the assembled sparse matrix, the index
map, the right-hand side, matrix-free products, and ``solve(method=...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from lagrad.compile.bulkplan import bulk_plan
from lagrad.compile.guards import Sweep, guarded
from lagrad.compile.jacobian import assemble_jacobian, blame_partials
from lagrad.compile.schedule import Index, Schedule
from lagrad.errors import OptionError, ProgramError
from lagrad.ir.constants import as_real
from lagrad.numeric import norm2
from lagrad.options import BackwardOptions

__all__ = ["System", "Orientation", "ADJOINT", "TANGENT"]

Array = NDArray[np.float64]


class Orientation:
    """Which of (I - J) and (I - J)^T a system is: how a substitution sweep walks
    the schedule and what each step contributes. The two instances,
    :data:`TANGENT` and :data:`ADJOINT`, are each other's transpose; every
    solver is written once against this interface.
    """

    name: str
    transposed: bool

    @property
    def T(self) -> Orientation:  # noqa: N802 (numpy's name)
        return ADJOINT if self is TANGENT else TANGENT

    def order(self, steps: Sequence[Any]) -> Iterable[Any]:
        """Steps in the order a substitution solves them."""
        raise NotImplementedError

    def propagate(self, step: Any, z: Array, vec: Array, into: Array | None = None) -> None:
        """Add the step's product with ``vec`` (J^T or J) into ``into`` (default vec)."""
        raise NotImplementedError

    def arrange(self, a: sp.csr_matrix) -> sp.csr_matrix:
        """(I - J) as this orientation's matrix."""
        raise NotImplementedError

    def guard(self, sweep: Sweep, schedule: Schedule, z: Array,
              rhs: Array | Callable[[], Array], witnesses: Any = None) -> Array:
        """Run ``sweep`` (see :func:`lagrad.compile.guards.guarded`); if its result
        is not finite where the output depends on it, raise NonFiniteError naming
        the equation where it first went wrong. ``witnesses``: positions whose
        finiteness implies the whole result's in this orientation, or None."""
        raise NotImplementedError

    def enter_block(self, unit: Any, z: Array, vec: Array) -> None:
        """Before a cyclic block's solve: bring in what flows from outside it."""

    def leave_block(self, unit: Any, z: Array, vec: Array) -> None:
        """After a cyclic block's solve: pass on what flows out of it."""

    def __repr__(self) -> str:
        return self.name.upper()


class _Tangent(Orientation):
    name, transposed = "tangent", False

    def order(self, steps: Sequence[Any]) -> Iterable[Any]:
        return steps

    def propagate(self, step: Any, z: Array, vec: Array, into: Array | None = None) -> None:
        step.pushforward(z, vec, into)

    def arrange(self, a: sp.csr_matrix) -> sp.csr_matrix:
        return a.tocsr()

    def guard(self, sweep: Sweep, schedule: Schedule, z: Array,
              rhs: Array | Callable[[], Array], witnesses: Any = None) -> Array:
        return guarded(sweep, schedule, "tangent")

    def enter_block(self, unit: Any, z: Array, vec: Array) -> None:
        for step in unit.outer:  # the block's rhs gains J_S,outside zdot_outside
            step.pushforward(z, vec)


class _Adjoint(Orientation):
    name, transposed = "adjoint", True

    def order(self, steps: Sequence[Any]) -> Iterable[Any]:
        return reversed(steps)

    def propagate(self, step: Any, z: Array, vec: Array, into: Array | None = None) -> None:
        step.pullback(z, vec, into)

    def arrange(self, a: sp.csr_matrix) -> sp.csr_matrix:
        return a.T.tocsr()

    def guard(self, sweep: Sweep, schedule: Schedule, z: Array,
              rhs: Array | Callable[[], Array], witnesses: Any = None) -> Array:
        return guarded(sweep, schedule, "multiplier", z, rhs, witnesses)  # replayed to blame

    def leave_block(self, unit: Any, z: Array, vec: Array) -> None:
        for step in unit.outer:  # lambda_S J_S,outside goes to the outside parents
            step.pullback(z, vec)


TANGENT: Orientation = _Tangent()
"""(I - J) zdot = e: forward mode."""
ADJOINT: Orientation = _Adjoint()
"""(I - J)^T lambda = e: reverse mode, the multiplier system."""
ORIENTATIONS = {"tangent": TANGENT, "adjoint": ADJOINT}


class System:
    """(I - J)^T lambda = rhs (``kind="adjoint"``) or (I - J) zdot = rhs
    (``kind="tangent"``) at the values of a solution.

    ``system.T`` is the transposed system (the other kind) with the same
    right-hand side and values: the two share every solver.

    Attributes
    ----------
    kind : {"adjoint", "tangent"}
    orientation : Orientation
        :data:`ADJOINT` or :data:`TANGENT`.
    index : Index
        Variable -> slice of the flat vectors, in program order
        (``system.index[var]``, ``system.index["name"]``).
    rhs : ndarray
        The right-hand side e (output seed or input direction), flat (n,);
        or a block of k of them, (n, k), solved together by :meth:`solve`
        (the solution is then (n, k) too).
    values : ndarray
        The flat z at which J is evaluated.
    forward : dict
        Forward-solve results of the cyclic blocks (by block number): their
        observed contraction and Newton's LU factors guide the "auto" choice.
    backward : BackwardOptions or None
        The backward mode given to ``program.solve``, for every cyclic block
        (None: each block's declared mode, else "implicit"); it changes the
        default ("auto") solve of an adjoint system only.
    """

    def __init__(self, schedule: Schedule, values: Array, kind: str | Orientation, rhs: Array,
                 forward: Mapping[int, Any] | None = None,
                 backward: BackwardOptions | None = None) -> None:
        if isinstance(kind, Orientation):
            self.orientation = kind
        elif kind in ORIENTATIONS:
            self.orientation = ORIENTATIONS[kind]
        else:
            raise OptionError(f"unknown system kind {kind!r}; choose 'adjoint' or 'tangent'")
        self.schedule = schedule
        self.values = values
        self.rhs = rhs
        self.index: Index = schedule.index
        self.forward: dict[int, Any] = dict(forward or {})
        self.backward = backward

    @property
    def kind(self) -> str:
        return self.orientation.name

    @property
    def T(self) -> System:  # noqa: N802 (numpy's name)
        """The transposed system: (I - J) for an adjoint one, (I - J)^T for a
        tangent one, with the same right-hand side, values and forward results.

        Examples
        --------
        >>> import numpy as np, lagrad
        >>> sol = lagrad.trace(lambda x: lagrad.sin(x) * x, 0.0).solve(2.0)
        >>> system = sol.adjoint_system()
        >>> system.T.kind
        'tangent'
        >>> bool(np.allclose(system.T.matrix.toarray(), system.matrix.toarray().T))
        True
        """
        return self.transpose()

    def transpose(self) -> System:
        """See :attr:`T`."""
        return System(self.schedule, self.values, self.orientation.T, self.rhs, self.forward,
                      self.backward)

    @property
    def shape(self) -> tuple[int, int]:
        """The matrix's shape, (n, n)."""
        n = self.rhs.shape[0]
        return (n, n)

    @property
    def seeds(self) -> int | None:
        """k for a block of k right-hand sides (``rhs`` of shape (n, k)), else None."""
        return self.rhs.shape[1] if self.rhs.ndim == 2 else None

    @cached_property
    def jacobian(self) -> sp.csr_matrix:
        """J[i, j] = df_i / dz_j, assembled (sparse CSR)."""
        with np.errstate(all="ignore"):
            j = assemble_jacobian(self.schedule, self.values)
        if not np.isfinite(j.data).all():
            raise blame_partials(self.schedule, self.values)
        return j

    @cached_property
    def matrix(self) -> sp.csr_matrix:
        """(I - J)^T for the adjoint system, (I - J) for the tangent one (CSR)."""
        return self.orientation.arrange(sp.identity(self.shape[0], format="csr") - self.jacobian)

    @property
    def blocks(self) -> list[Any]:
        """The strongly connected components in topological order
        (:class:`lagrad.ir.blocks.Block`: ``variables``, ``size``, ``cyclic``)."""
        return self.schedule.program.blocks

    @cached_property
    def permutation(self) -> NDArray[np.intp]:
        """Flat positions grouped block by block, in topological block order:
        ``matrix[perm][:, perm]`` is block triangular (upper for the adjoint
        system, lower for the tangent one), with the cyclic blocks as its
        diagonal blocks.

        Examples
        --------
        >>> import numpy as np, lagrad
        >>> p = lagrad.Program()
        >>> a = p.input("a")
        >>> z = p.unknown("z")
        >>> p.define(z, 0.5 * lagrad.sin(z) + a)
        >>> p.output(z * z)
        >>> system = p.solve(1.0).adjoint_system()
        >>> [(b.size, b.cyclic) for b in system.blocks]
        [(1, False), (4, True), (1, False)]
        >>> m = system.block_triangular().toarray()
        >>> bool(np.all(m[1:5, :1] == 0) and np.all(m[5:, :5] == 0))  # upper block triangular
        True
        """
        index = self.index
        return index.positions([v for block in self.blocks for v in block.variables])

    def block_positions(self, block: Any) -> NDArray[np.intp]:
        """Flat positions of a block's variables (its rows and columns)."""
        return self.index.positions(list(block.variables))

    def block_triangular(self) -> sp.csr_matrix:
        """``matrix`` permuted by :attr:`permutation` (block triangular)."""
        perm = self.permutation
        return self.matrix[perm][:, perm].tocsr()

    def _vector(self, x: Any, what: str) -> Array:
        """``x`` as a float vector (n,) or block (n, k) of this system; else a
        ProgramError naming the method."""
        arr = as_real(x, f"System.{what}: x")
        n = self.shape[0]
        if arr.ndim not in (1, 2) or arr.shape[0] != n:
            raise ProgramError(f"System.{what}: x has shape {arr.shape}; this system has "
                               f"n = {n} unknowns (all variables' entries, in index order): "
                               f"pass a vector ({n},) or a block of k vectors ({n}, k)")
        return arr

    def matvec(self, x: Array) -> Array:
        """``matrix @ x`` without assembling the matrix (one VJP or JVP sweep;
        a bulk program's adjoint by its plan's scatter-adds); for a block of
        vectors x (n, k), with the assembled matrix."""
        return self._product(self._vector(x, "matvec"))

    def _product(self, x: Array) -> Array:
        """:meth:`matvec` of an ``x`` already checked."""
        if x.ndim == 2:
            return np.asarray(self.matrix @ x)
        plan = bulk_plan(self.schedule) if self.orientation.transposed else None
        if plan is not None:
            with np.errstate(all="ignore"):
                return x - plan.transposed_product(self.values, x)
        jx = np.zeros_like(x)
        for step in self.schedule.steps:
            self.orientation.propagate(step, self.values, x, jx)
        return x - jx

    def residual(self, x: Array) -> float:
        """Relative residual ||matrix x - rhs|| / max(||rhs||, tiny); for a
        block of k right-hand sides, the largest of the k columns'."""
        tiny = np.finfo(float).tiny
        x = self._vector(x, "residual")
        with np.errstate(all="ignore"):  # norm2 may overflow before it rescales
            r = self._product(x) - self.rhs
            if r.ndim == 2:
                return max((norm2(r[:, j]) / max(norm2(self.rhs[:, j]), tiny)
                            for j in range(r.shape[1])), default=0.0)
            return norm2(r) / max(norm2(self.rhs), tiny)

    def split(self, x: Array) -> dict[Any, Array]:
        """A flat vector as ``{variable: array of its shape}``; a block of k
        vectors (n, k) as ``{variable: array of shape (k, *shape)}``."""
        x = self._vector(x, "split")
        if x.ndim == 2:
            k = x.shape[1]
            return {v: np.array(x[sl].T).reshape((k, *v.shape)) for v, sl in self.index.items()}
        return {v: x[sl].reshape(v.shape) for v, sl in self.index.items()}

    def __repr__(self) -> str:
        sign = "(I - J)^T lambda" if self.kind == "adjoint" else "(I - J) zdot"
        block = f", {self.seeds} right-hand sides" if self.seeds is not None else ""
        return f"<System {sign} = e, n={self.shape[0]}{block}>"
