"""Linear solves inside a cyclic block, for the adjoint and tangent sweeps.

Inside block S = I + U (interior variables I, unknowns U) a sweep must solve
(I - J_SS) x_S = b_S, or its transpose; a :class:`BlockOperator` holds either
(the :class:`~lagrad.solve.system.Orientation` of the system), so each method
below is written once for both. Two equivalent forms:

* *direct* ("splu", "dense", "lstsq"): factorize the assembled (I - J_SS);
* *reduced* ("gmres", "bicgstab", "lgmres", "fixed_point", "reduced_lu"):
  eliminate the interior, which is acyclic given z_U. With G the block's map
  z_U -> f_U, dG/dz_U = J_UU + J_UI (I - J_II)^-1 J_IU, and the adjoint becomes
  (I - dG/dz_U)^T lambda_U = b_U + J_IU^T (I - J_II)^-T b_I, an n_U x n_U
  system applied matrix-free by one VJP sweep through the block per product;
  lambda_I then follows by back-substitution. The tangent is the transpose.
  "reduced_lu" builds that n_U x n_U matrix from n_U products and factorizes
  it: exact, and the cheapest choice when n_U is smaller than the number of
  iterations an iterative method would take (a chain of small blocks).

*Truncated* ("unrolled", "neumann", "phantom"/"jfb"): the backward modes of
:class:`~lagrad.options.BackwardOptions`, K terms of the Neumann series of the
reduced system, lambda_U ~ sum_{k<K} (dG/dz_U^T)^k c, with an a-posteriori
error estimate; their status is ``TRUNCATED`` (not a failure).

Every method has one signature, ``method(block, b, options, *, factor=None,
budget=None) -> BlockResult``, and sits in one table, :data:`METHODS`;
:func:`choose` is the "auto" policy and :func:`solve_auto` runs its chain
(or, for a block given a truncated backward mode, that mode).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import scipy.linalg
import scipy.sparse.linalg as spla
from numpy.typing import NDArray

from lagrad.compile.schedule import CyclicBlock
from lagrad.errors import SingularSystemError
from lagrad.numeric import all_finite, lu_condition, norm2
from lagrad.options import DEFAULT_STEPS, BackwardOptions, LinearOptions
from lagrad.solve import neumann, petsc
from lagrad.solve.blockop import BlockOperator, ReducedOperator, Workspace
from lagrad.solve.borrow import Borrowed
from lagrad.solve.results import BlockResult, Status, raise_for
from lagrad.solve.system import Orientation

__all__ = ["Workspace", "BlockOperator", "METHODS", "BLOCK_METHODS", "choose", "solve_auto",
           "substitute_block", "check_determined", "SingularBlockWarning", "SENSITIVITY_LIMIT",
           "backward_of"]

Array = NDArray[np.float64]
SINGULAR_CONDITION = 1e13
DIRECT_LIMIT = 20_000  # block entries above which "auto" goes matrix-free
BLIND_DIRECT_LIMIT = 2_000
"""Block entries up to which "auto" factorizes a block whose forward solve
observed no contraction rate (Anderson, for one): above it BiCGSTAB runs
first, sparse LU only if the Krylov methods stall. A DEQ layer of width 1000
(7001 entries, a dense 1000 x 1000 part) with Anderson's forward solve: 425 ms
for forward and gradient with SuperLU's adjoint, 26 ms with 13 BiCGSTAB
iterations (``lagrad bench --only deq --quick``, row "anderson")."""
NEUMANN_BUDGET = 300  # iterations "auto" accepts for the Neumann series
REDUCED_LU_LIMIT = 200  # "auto": at most this many unknowns for the reduced dense LU
KRYLOV_BUDGET = 500  # "auto": BiCGSTAB iterations before GMRES takes over
RATE_SAMPLES = 5  # truncated modes: ratios of successive terms behind a rate estimate
ESTIMATE_SAFETY = 2.0  # truncated modes: the error estimate is this times ||r|| / (1 - rho)
DIRECT_REFINE = 1e-12  # direct solves: refine above this relative residual (see _held_to_residual)
DIRECT_ACCEPT = 1e-10  # and fail above this one (both scaled up by eps * cond when larger)
DIRECT_REFINEMENTS = 4
SENSITIVITY_LIMIT = 1e-3
"""A block whose forward Newton solve ended where (I - J_SS) has condition c
and still moved by d (largest entry) over the last step has an estimated
relative error c * d in its derivative; above this limit the block is taken
as singular at the solution (a double root, a fixed point where the map's
slope is 1) and its linear solve raises SingularSystemError, unless
method="lstsq" asks for minimum-norm multipliers."""


class SingularBlockWarning(RuntimeWarning):
    """A block is singular and "lstsq" returned minimum-norm multipliers."""


class BlockMethod(Protocol):
    def __call__(self, block: BlockOperator, b: Array, options: LinearOptions, *,
                 factor: Any = None, budget: int | None = None) -> BlockResult: ...


# ------------------------------------------------------------------ direct

def _singular(result: BlockResult, cond: float, what: str = "I - J") -> BlockResult:
    result.status, result.condition = Status.SINGULAR, cond
    exact = "exactly" if cond == float("inf") else "numerically"
    result.message = (f"{what} is {exact} singular (estimated condition {cond:.2e}); the "
                      "constraints do not determine the block's variables: use "
                      "method='lstsq' for minimum-norm multipliers")
    return result


def splu(block: BlockOperator, b: Array, options: LinearOptions, *, factor: Any = None,
         budget: int | None = None) -> BlockResult:
    """Sparse LU of (I - J_SS) (or the forward Newton solve's ``factor``)."""
    result = block.result("splu")
    result.reused_factorization = factor is not None
    if factor is None:
        try:
            factor = spla.splu(block.matrix())
        except RuntimeError:
            return _singular(result, float("inf"))
    result.condition = lu_condition(factor.U.diagonal())
    if result.condition > SINGULAR_CONDITION:
        return _singular(result, result.condition)
    trans = "T" if block.transposed else "N"
    result.x = factor.solve(b, trans=trans)
    return _held_to_residual(block, result, b, lambda r: factor.solve(r, trans=trans))


def dense(block: BlockOperator, b: Array, options: LinearOptions, *, factor: Any = None,
          budget: int | None = None) -> BlockResult:
    """Dense LU of (I - J_SS)."""
    result = block.result("dense")
    lu, piv = scipy.linalg.lu_factor(block.matrix().toarray(), check_finite=False)
    result.condition = lu_condition(np.diag(lu))
    if result.condition > SINGULAR_CONDITION:
        return _singular(result, result.condition)
    trans = 1 if block.transposed else 0
    result.x = scipy.linalg.lu_solve((lu, piv), b, trans=trans)
    return _held_to_residual(block, result, b,
                             lambda r: scipy.linalg.lu_solve((lu, piv), r, trans=trans))


def _held_to_residual(block: BlockOperator, result: BlockResult, b: Array,
                      solve: Callable[[Array], Array]) -> BlockResult:
    """A direct solve's ``result.x`` held to its residual, which the block
    computes through its equations' own derivative rules, not through the
    factorized matrix: refined with the factorization (``solve``) while above
    what a backward-stable LU leaves (DIRECT_REFINE, or 10 eps cond), and
    marked BREAKDOWN when still above DIRECT_ACCEPT (or 1e3 eps cond). An I - J
    assembled wrong would otherwise give a wrong gradient with nothing failing."""
    eps = float(np.finfo(float).eps)
    cond = result.condition if result.condition is not None else 1.0
    refine, accept = max(DIRECT_REFINE, 10 * eps * cond), max(DIRECT_ACCEPT, 1e3 * eps * cond)
    scale = max(norm2(b), np.finfo(float).tiny)
    x, steps = result.x, 0
    r = block.residual_vector(x, b)
    res = norm2(r) / scale
    while res > refine and steps < DIRECT_REFINEMENTS:
        x = x + solve(r)
        steps += 1
        r = block.residual_vector(x, b)
        res = norm2(r) / scale
    result.x, result.iterations, result.residual = x, 1 + steps, res
    if steps:
        result.extra["refinements"] = steps
    if res > accept:  # (not NaN: a non-finite result is named by the sweep's checks)
        result.status = Status.BREAKDOWN
        result.message = (f"{result.method} left a relative residual of {res:.1e} after "
                          f"{steps} refinements (estimated condition {cond:.1e}): the factorized "
                          "I - J (the equations' Jacobian rules) disagrees with their VJP/JVP "
                          "rules: a derivative rule is wrong (lagrad.check_grad tests one); "
                          "method='gmres' uses the VJP/JVP rules only")
    return result


def lstsq(block: BlockOperator, b: Array, options: LinearOptions, *, factor: Any = None,
          budget: int | None = None) -> BlockResult:
    """Least squares: the minimum-norm solution of a singular block, with a warning."""
    result = block.result("lstsq")
    a = block.matrix().toarray()
    a = a.T if block.transposed else a
    x, _, rank, sv = np.linalg.lstsq(a, b, rcond=None)
    if rank < a.shape[0]:
        warnings.warn(f"{block.name} is singular (rank {rank} of {a.shape[0]}): lstsq "
                      "returns the minimum-norm solution; the gradient is defined only up "
                      "to the null space of (I - J)", SingularBlockWarning, stacklevel=2)
    result.condition = float(sv[0] / sv[-1]) if sv[-1] > 0 else float("inf")
    result.x, result.iterations, result.extra["rank"] = x, 1, int(rank)
    result.residual = block.residual(x, b)
    return result


# ----------------------------------------------------------------- reduced

ReducedSolver = Callable[[spla.LinearOperator, Array, LinearOptions, BlockResult, "int | None"],
                         "Array | None"]


def _reduced(name: str, solver: ReducedSolver) -> BlockMethod:
    """A block method from a solver of the reduced n_U x n_U system; the result's
    status is set from the residual of the whole block."""
    def method(block: BlockOperator, b: Array, options: LinearOptions, *, factor: Any = None,
               budget: int | None = None) -> BlockResult:
        result = block.result(name)
        op, c = block.reduced(b)
        x_u = solver(op, c, options, result, budget)
        if x_u is None:  # singular, or given up: status and message are set
            return result
        known = result.extra.get("reduced_residual") if block.interior_free and \
            result.converged else None
        result.x = block.recover(x_u, b)
        # the interior rows hold by construction: with no interior rhs the block's
        # relative residual is the reduced system's, when the solver measured it
        res = result.residual = known if known is not None else block.residual(result.x, b)
        if not (np.isfinite(res) and (result.converged or res <= options.tolerance)):
            broke = result.status is Status.BREAKDOWN
            result.status = Status.BREAKDOWN if broke else Status.MAX_ITERATIONS
            result.message = (
                f"{name} broke down after {result.iterations} iterations (scipy's info "
                f"{result.extra.get('scipy_info')}; relative residual {res:.3e}, tolerance "
                f"{options.tolerance:g}); use gmres or a direct method" if broke else
                f"{name} did not converge within {result.iterations} "
                f"iterations (relative residual {res:.3e}, tolerance "
                f"{options.tolerance:g}); raise maxiter or use a direct method")
        else:
            result.status = Status.CONVERGED
        return result
    method.__name__ = method.__qualname__ = name
    method.__doc__ = solver.__doc__
    return method


def _krylov(scipy_solver: Callable[..., Any]) -> ReducedSolver:
    def run(op: spla.LinearOperator, c: Array, options: LinearOptions, result: BlockResult,
            budget: int | None) -> Array:
        count = [0]

        def callback(*_: Any) -> None:
            count[0] += 1
        extra: dict[str, Any] = {"callback_type": "pr_norm"} if scipy_solver is spla.gmres \
            else {}
        if options.maxiter is not None:
            extra["maxiter"] = options.maxiter
        x, info = scipy_solver(op, c, rtol=options.tolerance, atol=0.0,
                               M=options.preconditioner, callback=callback, **extra)
        result.iterations = count[0]
        result.status = Status.CONVERGED if info == 0 else \
            Status.MAX_ITERATIONS if info > 0 else Status.BREAKDOWN
        if info < 0:  # (BiCGSTAB: a zero rho or omega, often just short of the tolerance)
            result.extra["scipy_info"] = int(info)
        return np.asarray(x, dtype=float)
    run.__doc__ = f"scipy's {scipy_solver.__name__} on the reduced system (matrix-free)."
    return run


def _neumann(op: spla.LinearOperator, c: Array, options: LinearOptions, result: BlockResult,
             budget: int | None) -> Array | None:
    """The Neumann series x = c + K x with K = I - op (converges when rho(K) < 1).
    With a ``budget`` it gives up as soon as its own observed rate predicts more
    iterations than that, so that "auto" moves on. Once the residual r of x is
    small enough it returns x + r, the next iterate, which costs no product
    (the reported residual is that of x: the returned one's is smaller by
    about the contraction rate)."""
    if isinstance(op, ReducedOperator) and op.block.viewable:
        product, a_x = op.block.in_place_product()
        return neumann.series_in_place(product, a_x, c, options, result, budget)
    x = c.copy()
    tol = options.tolerance
    scale = max(norm2(c), np.finfo(float).tiny)
    history: list[float] = []
    for k in range(1, (options.maxiter or 10_000) + 1):
        r = c - op.matvec(x)
        res = norm2(r)
        history.append(res)
        result.iterations = k - 1
        if res <= tol * scale:
            result.status, result.extra["reduced_residual"] = Status.CONVERGED, res / scale
            return x + r  # (a new array: the last product's argument was x)
        if not np.isfinite(res) or res > 1e12 * scale:
            break
        if budget is not None and k >= 4:  # the series' own rate, early: the forward
            rate = (history[-1] / history[-4]) ** (1 / 3)  # rate can be far too hopeful
            if rate >= 1 or k + np.log(tol * scale / res) / np.log(rate) > budget:
                result.status, result.iterations = Status.BREAKDOWN, k
                result.extra["rate"] = float(rate)
                result.message = (f"fixed_point abandoned after {k} iterations (observed "
                                  f"rate {rate:.3f})")
                return None
        x = x + r
    result.iterations, result.status = k, Status.MAX_ITERATIONS
    return x


def _reduced_lu(op: spla.LinearOperator, c: Array, options: LinearOptions, result: BlockResult,
                budget: int | None) -> Array | None:
    """The reduced matrix column by column (n_U products), then one dense LU."""
    n = c.size
    a = np.empty((n, n))
    e = np.zeros(n)
    for j in range(n):
        e[j] = 1.0
        a[:, j] = op.matvec(e)
        e[j] = 0.0
    result.iterations = n
    if not n:
        return c.copy()
    with warnings.catch_warnings():  # a singular matrix is reported below, by block
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        lu, piv = scipy.linalg.lu_factor(a, check_finite=False)
    result.condition = lu_condition(np.diag(lu))
    if result.condition > SINGULAR_CONDITION:
        _singular(result, result.condition, f"the reduced {n} x {n} matrix I - dG/dz_U")
        return None
    result.status = Status.CONVERGED
    x = scipy.linalg.lu_solve((lu, piv), c, check_finite=False)
    # the reduced system's residual, by the matrix at hand (n^2 flops): with no
    # interior rhs it is the block's, and no matrix-free sweep has to measure it
    scale = max(norm2(c), np.finfo(float).tiny)
    result.extra["reduced_residual"] = norm2(c - a @ x) / scale
    return x


# --------------------------------------------------------------- truncated

def _truncated(name: str, one_step: bool, early_stop: bool) -> BlockMethod:
    """A truncated backward mode (see :class:`~lagrad.options.BackwardOptions`)."""
    def method(block: BlockOperator, b: Array, options: LinearOptions, *, factor: Any = None,
               budget: int | None = None) -> BlockResult:
        result = block.result(name)
        steps = 1 if one_step else (options.maxiter or DEFAULT_STEPS)
        unit = block.unit
        # with A = dG/dz_U^T (the adjoint; dG/dz_U for the tangent) and c the reduced
        # rhs, the K-term sum x_K = sum_{k<K} A^k c leaves the residual
        # c - (I - A) x_K = A^K c, the next term: so the terms are all it needs
        term = b[unit.pos_u] + block.reduced_product(np.zeros(unit.u_index.size), b[unit.pos_i])
        x = np.zeros_like(term)
        norms = [norm2(term)]
        k = 0
        while k < steps and np.isfinite(norms[-1]):
            if early_stop and norms[-1] <= options.tolerance * norms[0]:
                break
            x += term
            term = block.reduced_product(term)
            norms.append(norm2(term))
            k += 1
        residual = norms[-1]
        probes = 0  # a short series sees too few terms to estimate its rate:
        while len(norms) <= RATE_SAMPLES and 0 < norms[-1] < np.inf:  # a few more
            term = block.reduced_product(term)
            norms.append(norm2(term))
            probes += 1
        result.iterations = k
        _estimate(result, norms, residual, block.rate, norm2(x))
        result.extra["estimate_products"] = probes + (k > 0)  # + the residual's product
        if not np.isfinite(residual) or not all_finite(x):
            result.status = Status.NONFINITE
            result.message = (f"the {name} series overflowed after {k} terms (observed rate "
                              f"{result.extra['rate']:.3g}): the block's map does not "
                              "contract here; use backward='implicit'")
            return result
        result.x = block.recover(x, b)
        result.residual = block.residual(result.x, b)
        exact = residual <= options.tolerance * norms[0]
        result.status = Status.CONVERGED if exact else Status.TRUNCATED
        return result
    method.__name__ = method.__qualname__ = name
    method.__doc__ = (f"Backward mode {name!r}: " +
                      ("one term, lambda_U = c." if one_step else
                       "K = maxiter terms of the Neumann series" +
                       (", fewer once converged." if early_stop else ", exactly.")))
    return method


def _estimate(result: BlockResult, norms: list[float], residual: float, hint: float | None,
              size: float) -> None:
    """The a-posteriori error estimate of a truncated series: ``norms`` are
    the norms of its terms A^k c (and of the probes after them), ``residual``
    that of r = A^K c. The error of the multipliers is e = (I - A)^-1 r =
    sum_j A^j r, so ||e|| <= ||r|| / (1 - rho) when every product shrinks a
    vector by rho at least. rho is the largest ratio of successive terms
    (at least RATE_SAMPLES of them), or the forward iteration's contraction
    ``hint`` if larger: an estimate of the rate, not a proof (a slow mode may
    not show in a few terms, and a non-normal A may shrink less at first), so
    the estimate is ESTIMATE_SAFETY times that bound."""
    ratios = [b / a for a, b in zip(norms, norms[1:]) if a > 0]
    rho = max([*ratios, hint or 0.0])
    bound = 0.0 if residual == 0 else (residual / (1 - rho) if rho < 1 else float("inf"))
    estimate = ESTIMATE_SAFETY * bound
    result.extra.update(steps=result.iterations, rate=float(rho), error_estimate=float(estimate),
                        relative_error_estimate=float(estimate / max(size, np.finfo(float).tiny)),
                        adjoint_residual=float(residual))


METHODS: dict[str, BlockMethod] = {
    "splu": splu, "dense": dense, "lstsq": lstsq,
    "gmres": _reduced("gmres", _krylov(spla.gmres)),
    "bicgstab": _reduced("bicgstab", _krylov(spla.bicgstab)),
    "lgmres": _reduced("lgmres", _krylov(spla.lgmres)),
    "fixed_point": _reduced("fixed_point", _neumann),
    "reduced_lu": _reduced("reduced_lu", _reduced_lu),
    "unrolled": _truncated("unrolled", one_step=False, early_stop=False),
    "neumann": _truncated("neumann", one_step=False, early_stop=True),
    "phantom": _truncated("phantom", one_step=True, early_stop=False),
    "jfb": _truncated("jfb", one_step=True, early_stop=False),
    "petsc": petsc.block_method,  # a PETSc KSP, distributed over the MPI ranks
}
"""The block methods by name ("auto" is the policy :func:`choose`)."""
BLOCK_METHODS = ("auto", *METHODS)


# -------------------------------------------------------------------- auto

@dataclass(frozen=True)
class Choice:
    """What "auto" runs first, and why."""

    name: str
    reason: str
    neumann_budget: int | None = None  # iterations after which the series gives way


def choose(unit: CyclicBlock, forward: BlockResult | None, tol: float) -> Choice:
    """The "auto" policy: the first block method for ``unit`` and why, from its
    structure and what its forward solve observed. Reuse Newton's LU; after a
    contracting iteration, the reduced LU when it needs fewer products than the
    Neumann series, else the series at the observed rate, else BiCGSTAB; with
    no forward hint, sparse LU for a small block (BLIND_DIRECT_LIMIT), else
    BiCGSTAB."""
    if forward is not None and isinstance(forward.factorization, petsc.KrylovSolve):
        return Choice("petsc", "reuses the forward Newton KSP (solveTranspose)")
    if forward is not None and forward.factorization is not None:
        return Choice("splu", "reuses the forward Newton factorization")
    rho = forward.contraction if forward is not None else None
    n_u = unit.u_index.size
    if rho is not None and rho < 0.99:
        # the Neumann series contracts at the forward iteration's rate
        expected = int(np.ceil(np.log(tol) / np.log(max(rho, 1e-3))))
        if n_u < expected and n_u <= REDUCED_LU_LIMIT:
            return Choice("reduced_lu", f"{n_u} unknowns: {n_u} products and a dense LU "
                          f"cost less than ~{expected} Neumann iterations")
        if expected <= NEUMANN_BUDGET:
            return Choice("fixed_point", f"forward iteration contracted at rate {rho:.2f}: "
                          f"Neumann series expected in ~{expected} iterations",
                          2 * expected + 20)
        return Choice("bicgstab", f"forward contraction {rho:.3f} is slow (~{expected} "
                      "Neumann iterations): matrix-free BiCGSTAB")
    size = unit.s_index.size
    if size <= BLIND_DIRECT_LIMIT:
        return Choice("splu", f"block of {size} entries: sparse LU")
    if size <= DIRECT_LIMIT:
        return Choice("bicgstab", f"block of {size} entries and no forward contraction rate: "
                      "matrix-free BiCGSTAB first (sparse LU if it stalls)")
    return Choice("bicgstab", f"block of {size} entries is too large to factorize: "
                  "matrix-free BiCGSTAB")


FALLBACK = {"fixed_point": "bicgstab", "bicgstab": "gmres", "gmres": "splu"}
"""What "auto" runs when a method does not converge: it never returns an
inexact result. BiCGSTAB takes as many products as GMRES here, with less work
between them; it may stall, so it gets a budget (KRYLOV_BUDGET) and GMRES
follows; sparse LU last, when the block is small enough to factorize."""


def solve_auto(block: BlockOperator, b: Array, options: LinearOptions,
               forward: BlockResult | None,
               backward: BackwardOptions | None = None) -> BlockResult:
    """Run the "auto" chain: :func:`choose`, then :data:`FALLBACK` while the
    method in hand stops short of the tolerance. A truncated ``backward`` mode
    of an adjoint solve runs instead: the block method of its name, with K terms."""
    if backward is not None and backward.truncated and block.transposed:
        result = _run(backward.mode, block, b, backward.linear_options(options), forward)
        result.reason = f"backward mode {backward.mode!r}, K = {backward.terms}"
        return result
    choice = choose(block.unit, forward, options.tolerance)
    name, reason = choice.name, choice.reason
    while True:
        attempt = options
        if name == "bicgstab" and options.maxiter is None:
            attempt = LinearOptions(options.tol, KRYLOV_BUDGET, options.preconditioner)
        result = _run(name, block, b, attempt, forward,
                      choice.neumann_budget if name == "fixed_point" else None)
        result.reason = reason
        nxt = FALLBACK.get(name)
        stalled = result.status in (Status.MAX_ITERATIONS, Status.BREAKDOWN)
        if not stalled or nxt is None or (nxt == "splu" and block.unit.s_index.size >
                                          DIRECT_LIMIT):
            return result
        reason = f"{block.name}: {result.message or 'not converging'}".split(";")[0]
        reason = f"{name} was not converging ({reason}): {nxt} instead"
        name = nxt


def _run(name: str, block: BlockOperator, b: Array, options: LinearOptions,
         forward: BlockResult | None, budget: int | None = None) -> BlockResult:
    factor = forward.factorization if forward is not None else None
    if name not in ("splu", "petsc") or (name == "petsc") != isinstance(factor, petsc.KrylovSolve):
        factor = None  # a factorization serves only the method that made it
    t0, before = time.perf_counter(), block.products
    result = METHODS[name](block, b, options, factor=factor, budget=budget)
    result.seconds = time.perf_counter() - t0
    result.extra["products"] = block.products - before
    return result


def backward_of(program: Any, unit: CyclicBlock,
                override: BackwardOptions | None) -> BackwardOptions | None:
    """The backward mode of a block: ``override`` (given to ``program.solve``),
    else the one declared with its first unknown that has one, else None."""
    if override is not None:
        return override
    for u in unit.unknowns:
        declared = program.block_backward.get(u.index)
        if declared is not None:
            return declared
    return None


def check_determined(unit: CyclicBlock, forward: BlockResult | None) -> None:
    """Raise SingularSystemError when the forward solve shows (I - J_SS) is
    singular at the solution (see SENSITIVITY_LIMIT)."""
    if forward is None or forward.condition is None:
        return
    moved = forward.extra.get("jacobian_change", 0.0)
    if forward.condition * moved > SENSITIVITY_LIMIT:
        raise SingularSystemError(
            f"{unit.block.name}: I - J is singular at the solution: its estimated condition "
            f"is {forward.condition:.1e} and it still moved by {moved:.1e} over the last "
            f"Newton step, so the derivative is not determined (estimated relative error "
            f"{forward.condition * moved:.0e} > {SENSITIVITY_LIMIT:g}); the constraints "
            "may have a double root or a fixed point of slope 1 here. Use method='lstsq' "
            "for minimum-norm multipliers")


def substitute_block(unit: CyclicBlock, z: Array, vec: Array, orientation: Orientation,
                     method: str, options: LinearOptions, forward: BlockResult | None = None,
                     workspace: Workspace | None = None,
                     backward: BackwardOptions | None = None, *,
                     pass_on: bool = True, borrowed: Borrowed | None = None) -> BlockResult:
    """One cyclic block's step of a substitution sweep, in place in ``vec``:
    take in what flows from outside, replace vec[S] (holding the block's rhs)
    by the block's solution, pass on what flows out (unless ``pass_on`` is
    False: the caller then does). Inputs in ``borrowed`` are read from the
    caller's arrays (:mod:`lagrad.solve.borrow`). Raises (ConvergenceError,
    SingularSystemError) naming the block when the solve fails. With ``method``
    "auto", a truncated ``backward`` mode replaces the exact adjoint solve."""
    if method != "lstsq":
        check_determined(unit, forward)
    if borrowed is not None and (pass_on or not orientation.transposed):
        borrowed.fill(z)  # entering or leaving reads z's inputs
    orientation.enter_block(unit, z, vec)
    block = BlockOperator(unit, z, orientation, workspace,
                          forward.contraction if forward is not None else None, borrowed)
    b = vec[unit.s_index]  # a copy: fancy indexing
    if method == "auto":
        result = solve_auto(block, b, options, forward, backward)
    else:
        result = _run(method, block, b, options, forward)
        result.reason = "requested"
    raise_for(result)
    assert result.x is not None
    vec[unit.s_index] = result.x
    if pass_on:
        orientation.leave_block(unit, z, vec)
    return result
