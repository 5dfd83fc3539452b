"""The PETSc backend: linear solves of the multiplier system with a PETSc KSP,
distributed over the MPI ranks of ``PETSc.COMM_WORLD``.

Every rank runs the same Python program: it traces, compiles and solves the
forward problem itself (the forward pass is replicated), then calls the
same linear solve, which is collective. What is distributed is the linear
algebra: the operator (I - J) is a PETSc matrix whose rows are split into
contiguous ranges, one per rank, and the Krylov vectors and the
preconditioner follow that split. The solution is gathered back to every
rank, so each holds the whole multiplier vector afterwards.

The operator is always the *forward* one, (I - J) (or (I - J_SS) for one
cyclic block): the tangent system is solved by ``ksp.solve`` and the
adjoint system by ``ksp.solveTranspose`` on the same operator and
preconditioner, as ``KSPSolveTranspose`` intends. It is either

* assembled (``mat_type="aij"``, the default): a distributed AIJ matrix,
  each rank filling its own rows from the same sparse (row, col, value)
  arrays scipy's solvers use; or
* matrix-free (``mat_type="python"``): a PETSc Python matrix whose ``mult``
  is a JVP sweep and ``multTranspose`` a VJP sweep (no J is assembled; each
  product gathers its input vector on every rank).

A KSP that stops for any reason other than convergence is reported with a
:class:`~lagrad.solve.results.Status` (:data:`REASONS`) and raised as a
:class:`~lagrad.ConvergenceError` or :class:`~lagrad.SingularSystemError`:
a diverged KSP never yields multipliers. petsc4py is an optional extra,
imported when a method first needs it; without it, :func:`import_petsc`
raises :class:`~lagrad.MissingDependencyError` saying how to install it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from lagrad.compile.jacobian import block_matrix
from lagrad.compile.schedule import CyclicBlock
from lagrad.errors import MissingDependencyError, OptionError, SolveError
from lagrad.numeric import all_finite
from lagrad.options import LinearOptions
from lagrad.solve.results import BlockResult, Status, raise_for
from lagrad.solve.system import ADJOINT, TANGENT, Orientation, System

__all__ = ["INSTALL", "import_petsc", "available", "ranks", "Operator", "KrylovSolve",
           "krylov_solve", "system_operator", "block_operator", "solve_system_petsc",
           "block_method", "describe", "ownership", "BlockLike", "REASONS", "MAXITER",
           "RESIDUAL_SLACK", "RESIDUAL_FLOOR", "UNSUPPORTED", "petsc_errors"]

Array = NDArray[np.float64]
Product = Callable[[Array], Array]
INSTALL = 'pip install "lagrad[petsc]"'
MAXITER = 10_000  # PETSc's own default iteration limit
RESIDUAL_SLACK = 100.0
RESIDUAL_FLOOR = 1e-10
"""A KSP that reports convergence must also leave a true relative residual
||b - A x|| / ||b|| of at most max(RESIDUAL_SLACK * tol, RESIDUAL_FLOOR):
PETSc tests the preconditioned residual by default, and does not test it at
all with ``ksp_type="preonly"`` (one application of the preconditioner,
exact only for an exact factorization)."""
_prefixes = itertools.count()
UNSUPPORTED = {56: "not supported", 86: "unknown type"}
"""PETSc error codes that mean the options, not the system, are at fault."""

REASONS: dict[str, Status] = {
    "DIVERGED_ITS": Status.MAX_ITERATIONS,  # its name in older PETSc releases
    "DIVERGED_MAX_IT": Status.MAX_ITERATIONS,
    "DIVERGED_NANORINF": Status.NONFINITE,
    "DIVERGED_PC_FAILED": Status.SINGULAR,
    "DIVERGED_PCSETUP_FAILED": Status.SINGULAR,
}
"""KSP convergence reasons with their own status; every other negative
reason (breakdown, divergence, an indefinite preconditioner, ...) is
``BREAKDOWN``, and a positive one ``CONVERGED``. A failed preconditioner
(a zero pivot of ILU or LU) counts as singular when it is a full LU, else
as a breakdown: ILU may fail on a regular matrix."""


def import_petsc() -> Any:
    """The ``petsc4py.PETSc`` module, or MissingDependencyError without it.

    mpi4py is imported first when it is there: it finds the mpich wheel's MPI
    library by itself, whereas a PETSc built from source looks only where it was
    built, and pip reuses that build from its cache: in another virtual
    environment, perhaps one long deleted.
    """
    with suppress(ImportError):
        from mpi4py import MPI  # noqa: F401  (loads libmpi for PETSc to find)
    try:
        from petsc4py import PETSc
    except ImportError as err:
        raise MissingDependencyError(
            f"method 'petsc' needs petsc4py, which is not installed ({err}); install the "
            f"extra with: {INSTALL} (it needs MPI and BLAS/LAPACK, and builds PETSc from "
            "source the first time)") from err
    return PETSc


def available() -> bool:
    """True when petsc4py can be imported (the backend can run)."""
    try:
        import_petsc()
    except MissingDependencyError:
        return False
    return True


@contextmanager
def petsc_errors(petsc: Any, what: str) -> Iterator[None]:
    """PETSc's own errors as lagrad's: an unsupported combination or an unknown
    type name (PETSc error codes 56 and 86) is an OptionError, any other a SolveError."""
    try:
        yield
    except petsc.Error as err:
        code = getattr(err, "ierr", None)
        if code in UNSUPPORTED:
            raise OptionError(f"method 'petsc': PETSc cannot {what} with these options "
                              f"({UNSUPPORTED[code]}, PETSc error {code}); choose another "
                              "ksp_type, pc_type or mat_type (transposed solves need a "
                              "preconditioner with a transpose, such as ilu, bjacobi, jacobi "
                              "or none)") from err
        raise SolveError(f"method 'petsc': PETSc failed to {what} (PETSc error {code}): "
                         f"{str(err).strip().splitlines()[0]}") from err


def ranks() -> tuple[int, int]:
    """``(rank, size)`` of ``PETSc.COMM_WORLD``."""
    comm = import_petsc().COMM_WORLD
    return comm.getRank(), comm.getSize()


def ownership(n: int, rank: int, size: int) -> tuple[int, int]:
    """The rows ``[start, end)`` a rank owns: PETSc's default split of n rows."""
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


@dataclass
class Operator:
    """(I - A) of a square system as lagrad sees it, before PETSc does.

    ``matrix`` gives the assembled forward operator (scipy sparse); ``mult``
    and ``mult_transpose`` its matrix-free products with a whole vector.
    """

    n: int
    matrix: Callable[[], sp.spmatrix]
    mult: Product
    mult_transpose: Product


class _PythonMat:
    """The context of a PETSc Python matrix: products by JVP/VJP sweeps. Each
    product gathers its distributed input on every rank (the sweep runs on
    the whole vector) and keeps the rows the rank owns."""

    def __init__(self, petsc: Any, op: Operator, rows: tuple[int, int]) -> None:
        self.petsc, self.op, self.rows = petsc, op, rows
        self.scatter: Any = None
        self.full: Any = None

    def _gather(self, x: Any) -> Array:
        if self.scatter is None:
            self.scatter, self.full = self.petsc.Scatter.toAll(x)
        self.scatter.scatter(x, self.full, addv=self.petsc.InsertMode.INSERT,
                             mode=self.petsc.ScatterMode.FORWARD)
        return np.asarray(self.full.getArray(readonly=True))

    def mult(self, mat: Any, x: Any, y: Any) -> None:
        y.setArray(self.op.mult(self._gather(x))[self.rows[0]:self.rows[1]])

    def multTranspose(self, mat: Any, x: Any, y: Any) -> None:  # noqa: N802 (PETSc's name)
        y.setArray(self.op.mult_transpose(self._gather(x))[self.rows[0]:self.rows[1]])


def _petsc_matrix(petsc: Any, op: Operator, mat_type: str) -> Any:
    """The distributed PETSc matrix of ``op``: each rank's own rows."""
    comm = petsc.COMM_WORLD
    rows = ownership(op.n, comm.getRank(), comm.getSize())
    local = rows[1] - rows[0]
    sizes = ((local, op.n), (local, op.n))
    if mat_type == "python":
        mat = petsc.Mat().createPython(sizes, _PythonMat(petsc, op, rows), comm=comm)
        mat.setUp()
        return mat
    a = sp.csr_matrix(op.matrix())[rows[0]:rows[1]]
    a.sum_duplicates()
    a.sort_indices()
    csr = (a.indptr.astype(petsc.IntType), a.indices.astype(petsc.IntType),
           a.data.astype(petsc.ScalarType))
    mat = petsc.Mat().createAIJ(sizes, csr=csr, comm=comm)
    mat.assemble()
    return mat


class KrylovSolve:
    """One operator with its KSP, set up once and solved with as often as
    needed, in either orientation (``solve`` for (I - A) x = b,
    ``solve_transpose`` for (I - A)^T x = b): how a forward solve's KSP is
    reused by the adjoint one."""

    def __init__(self, op: Operator, options: LinearOptions, name: str = "") -> None:
        petsc = self.petsc = import_petsc()
        self.op, self.options, self.name = op, options, name
        self.mat_type = options.mat_type or "aij"
        with petsc_errors(petsc, "set up the KSP"):
            self._setup(petsc, options)

    def _setup(self, petsc: Any, options: LinearOptions) -> None:
        self.matrix = _petsc_matrix(petsc, self.op, self.mat_type)
        ksp = self.ksp = petsc.KSP().create(petsc.COMM_WORLD)
        ksp.setOperators(self.matrix)
        ksp.setType(options.ksp_type or "gmres")
        default_pc = "none" if self.mat_type == "python" else \
            ("ilu" if petsc.COMM_WORLD.getSize() == 1 else "bjacobi")
        ksp.getPC().setType(options.pc_type or default_pc)
        ksp.setTolerances(rtol=options.tolerance, atol=0.0, divtol=1e12,
                          max_it=options.maxiter or MAXITER)
        self._from_options(options.petsc_options or {})
        self.x, self.b = self.matrix.createVecs()
        self.scatter, self.full = petsc.Scatter.toAll(self.x)
        self.reasons = {getattr(petsc.KSP.ConvergedReason, name): name
                        for name in dir(petsc.KSP.ConvergedReason) if name.isupper()}

    def _from_options(self, entries: dict[str, Any]) -> None:
        """Generic options through PETSc's database, under a prefix of this KSP's
        own (removed again once read, so no other solve sees them)."""
        if not entries:
            return
        prefix = f"lagrad{next(_prefixes)}_"
        db = self.petsc.Options()
        for key, value in entries.items():
            db[prefix + key.lstrip("-")] = "" if value is None else str(value)
        self.ksp.setOptionsPrefix(prefix)
        self.ksp.setFromOptions()
        for key in entries:
            db.delValue(prefix + key.lstrip("-"))

    def run(self, rhs: Array, transposed: bool, result: BlockResult) -> Array | None:
        """x with (I - A) x = rhs (``transposed``: (I - A)^T x = rhs), every rank
        the whole vector; None with ``result`` marked failed if the KSP failed."""
        start, end = self.matrix.getOwnershipRange()
        self.b.setArray(rhs[start:end])
        self.x.set(0.0)
        t0 = time.perf_counter()
        with petsc_errors(self.petsc, "solve the transposed system" if transposed
                          else "solve the system"):
            (self.ksp.solveTranspose if transposed else self.ksp.solve)(self.b, self.x)
        result.seconds = time.perf_counter() - t0
        reason = self.ksp.getConvergedReason()
        result.iterations = self.ksp.getIterationNumber()
        result.extra.update(ksp_seconds=result.seconds, ksp_type=self.ksp.getType(),
                            pc_type=self.ksp.getPC().getType(),
                            mat_type=self.mat_type, reason=self.reasons.get(reason, reason),
                            ranks=self.petsc.COMM_WORLD.getSize(),
                            transposed_solve=transposed)
        if reason <= 0:
            self._fail(result, reason)
            return None
        result.residual = self._true_residual(transposed)
        limit = max(RESIDUAL_SLACK * self.options.tolerance, RESIDUAL_FLOOR)
        if not result.residual <= limit:  # NaN too
            result.status = Status.BREAKDOWN
            result.message = (
                f"the PETSc KSP ({self.ksp.getType()}, pc {self.ksp.getPC().getType()}) "
                f"reported {self.reasons.get(reason, reason)}, but the true relative residual "
                f"is {result.residual:.2e} > {limit:.0e} (a preconditioned or skipped residual "
                "test, as with ksp_type='preonly' and an inexact pc_type); lower tol or "
                "choose an exact pc_type")
            return None
        self.scatter.scatter(self.x, self.full, addv=self.petsc.InsertMode.INSERT,
                             mode=self.petsc.ScatterMode.FORWARD)
        x = np.array(self.full.getArray(readonly=True), dtype=float)
        if not all_finite(x):
            result.status, result.message = Status.NONFINITE, "the KSP's solution is not finite"
            return None
        result.status = Status.CONVERGED
        return x

    def _true_residual(self, transposed: bool) -> float:
        """||b - A x|| / ||b|| of the last solve (A^T with ``transposed``)."""
        r = self.b.duplicate()
        (self.matrix.multTranspose if transposed else self.matrix.mult)(self.x, r)
        r.aypx(-1.0, self.b)
        scale = self.b.norm()
        out = r.norm() / scale if scale > 0 else r.norm()
        r.destroy()
        return float(out)

    def solve(self, rhs: Array, trans: str = "N") -> Array:
        """x with (I - A) x = rhs (``trans="T"``: the transpose), as scipy's
        ``SuperLU.solve``; raises ConvergenceError or SingularSystemError."""
        result = BlockResult(self.name or "the system", "petsc")
        x = self.run(rhs, trans == "T", result)
        raise_for(result)
        assert x is not None
        return x

    def _fail(self, result: BlockResult, reason: int) -> None:
        name = self.reasons.get(reason, str(reason))
        status = REASONS.get(name, Status.BREAKDOWN)
        if status is Status.SINGULAR and self.ksp.getPC().getType() != "lu":
            status = Status.BREAKDOWN
        result.status = status
        ksp, pc = self.ksp.getType(), self.ksp.getPC().getType()
        result.message = (f"the PETSc KSP ({ksp}, pc {pc}) stopped with {name} after "
                          f"{result.iterations} iterations (relative tolerance "
                          f"{self.options.tolerance:g})")
        result.message += {
            Status.MAX_ITERATIONS: "; raise maxiter or choose a stronger pc_type",
            Status.SINGULAR: "; the matrix is singular: the constraints do not determine "
                             "the variables",
            Status.NONFINITE: "; a NaN or inf appeared in the Krylov iteration",
        }.get(status, "; choose another ksp_type or pc_type (e.g. ksp_type='preonly', "
                      "pc_type='lu' on one rank)")

    def destroy(self) -> None:
        """Free the PETSc objects (collective)."""
        for obj in (self.ksp, self.matrix, self.x, self.b, self.scatter, self.full):
            obj.destroy()


def krylov_solve(op: Operator, rhs: Array, transposed: bool, options: LinearOptions,
                 result: BlockResult) -> Array | None:
    """One solve with a fresh KSP (destroyed after it)."""
    solver = KrylovSolve(op, options)
    try:
        return solver.run(rhs, transposed, result)
    finally:
        solver.destroy()


# ------------------------------------------------------------ whole system

def system_operator(system: System) -> Operator:
    """(I - J) of a whole system: assembled from the system's sparse J, or
    applied by a JVP sweep (mult) and a VJP sweep (multTranspose)."""
    n = system.rhs.size
    tangent = System(system.schedule, system.values, TANGENT, system.rhs)

    def matrix() -> sp.spmatrix:
        return sp.identity(n, format="csr") - system.jacobian

    return Operator(n, matrix, tangent.matvec, tangent.T.matvec)


def solve_system_petsc(system: System, options: LinearOptions) -> tuple[Array, BlockResult]:
    """The whole multiplier (or tangent) system in one distributed KSP solve;
    raises ConvergenceError or SingularSystemError when the KSP fails."""
    result = BlockResult(f"the {system.kind} system", "petsc")
    x = krylov_solve(system_operator(system), system.rhs, system.orientation.transposed,
                     options, result)
    raise_for(result)
    assert x is not None
    return x, result


# ------------------------------------------------------------------ blocks

class BlockLike(Protocol):
    """What :func:`block_method` needs of a block operator
    (:class:`lagrad.solve.blockop.BlockOperator`)."""

    unit: CyclicBlock
    z: Array
    transposed: bool

    def result(self, method: str) -> BlockResult: ...

    def residual(self, x: Array, b: Array) -> float: ...


def _block_product(unit: CyclicBlock, z: Array, orientation: Orientation) -> Product:
    """x -> (I - J_SS) x (TANGENT) or (I - J_SS)^T x (ADJOINT), on the block's
    own entries; the block's inner steps only touch its own positions."""
    w, w2 = np.zeros(z.size), np.zeros(z.size)
    s = unit.s_index

    def product(x: Array) -> Array:
        w[s] = x
        unit.zero(w2)
        for step in unit.inner_interior + unit.inner_closing:
            orientation.propagate(step, z, w, w2)
        return x - w2[s]
    return product


def block_operator(unit: CyclicBlock, z: Array) -> Operator:
    """(I - J_SS) of one cyclic block at z, over ``unit.s_index``."""
    return Operator(unit.s_index.size, lambda: block_matrix(unit, z),
                    _block_product(unit, z, TANGENT), _block_product(unit, z, ADJOINT))


def block_method(block: BlockLike, b: Array, options: LinearOptions, *, factor: Any = None,
                 budget: int | None = None) -> BlockResult:
    """Block method "petsc": (I - J_SS) x = b, or its transpose for the adjoint
    (``ksp.solveTranspose``), by a PETSc KSP on all ranks; ``factor``, a
    :class:`KrylovSolve` left by the forward solve, is reused when given."""
    result = block.result("petsc")
    result.reused_factorization = isinstance(factor, KrylovSolve)
    if isinstance(factor, KrylovSolve):
        x = factor.run(b, block.transposed, result)
    else:
        x = krylov_solve(block_operator(block.unit, block.z), b, block.transposed, options,
                         result)
    if x is not None:
        result.x, result.residual = x, block.residual(x, b)
    return result


def describe(result: BlockResult) -> str:
    """One line on a PETSc solve, for SolveInfo.notes."""
    e = result.extra
    return (f"PETSc KSP {e.get('ksp_type')} / PC {e.get('pc_type')} on a {e.get('mat_type')} "
            f"matrix, {e.get('ranks')} rank(s), {result.iterations} iterations "
            f"({e.get('reason')}){'; solveTranspose' if e.get('transposed_solve') else ''}")
