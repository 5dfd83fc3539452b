"""Forward solves of cyclic blocks: find z_U with z_U = G(z_U).

G runs the block's interior equations (acyclic once the unknowns z_U are
given) and its closing equations. The methods, one table (:data:`METHODS`),
one signature ``method(g, u0, tol, maxiter, *, budget=None) -> BlockResult``:

* "newton": Newton's method on F(z_S) = z_S - f_S(z_S) over all the block's
  variables, with (I - J_SS) assembled from local Jacobians and factorized by
  sparse LU at each step, and a backtracking line search on ||F||;
* "fixed_point": plain iteration z_U <- G(z_U); with a ``budget`` it gives up
  as soon as its observed rate predicts more iterations than that;
* "anderson": Anderson acceleration of that iteration;
* "petsc": Newton's method with each step a PETSc KSP solve (see
  :mod:`lagrad.solve.petsc`), distributed over the MPI ranks; its last KSP
  serves the block's adjoint solve by ``solveTranspose``.

:func:`auto_solve` is the "auto" policy (the default): root constraints by
Newton; fixed points by iteration while the map contracts fast enough, then
Newton. The observed contraction rate is kept: it tells the adjoint solve how
fast the Neumann series will converge.

Convergence: ||G(z_U) - z_U|| <= tol * max(1, ||z_U||). A method returns its
result with a status; :func:`solve_block` raises for any status but
converged, so no values are returned from a failed solve.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any, Protocol

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from numpy.typing import NDArray

from lagrad.compile.guards import blame_block
from lagrad.compile.jacobian import blame_steps, block_matrix, dense_block_matrix
from lagrad.compile.schedule import CyclicBlock, Single
from lagrad.numeric import lu_condition, norm2
from lagrad.options import ForwardOptions, LinearOptions
from lagrad.solve import petsc
from lagrad.solve.borrow import Borrowed
from lagrad.solve.bound import bind_runs
from lagrad.solve.results import BlockResult, Status, raise_for

__all__ = ["BlockMap", "solve_block", "auto_solve", "METHODS", "ForwardMethod",
           "NEWTON_MAXITER", "ITERATIVE_MAXITER", "SWITCH_BUDGET"]

Array = NDArray[np.float64]
NEWTON_MAXITER = 100
ITERATIVE_MAXITER = 10_000
SWITCH_BUDGET = 500  # "auto": predicted fixed-point iterations beyond which Newton takes over
SETTLE_MIN = 256  # unknowns from which a converged iteration skips its last evaluation
RHO_SLOW_CUBED = 0.99 ** 3  # "auto" leaves the iteration at a rate of 0.99 or more
DENSE_NEWTON = 64
"""Block entries up to which Newton's steps factorize I - J densely (LAPACK,
:class:`DenseLU`): on a block of a few equations SuperLU and scipy.sparse's
bookkeeping cost more than the arithmetic."""
DIVERGED = 1e8  # a residual this many times the first one (or 1) counts as divergence


class BlockMap:
    """G for one block, writing into the shared z: ``g(u)`` sets z_U = u,
    runs the interior and returns the closing equations' values. Inputs in
    ``borrowed`` are read from the caller's arrays; reading :attr:`z` copies
    them into z first (see :mod:`lagrad.solve.borrow`)."""

    def __init__(self, unit: CyclicBlock, z: Array, scratch: Array | None = None,
                 borrowed: Borrowed | None = None) -> None:
        self.unit, self._z, self.borrowed = unit, z, borrowed
        # only the unknowns' positions are written: one scratch serves all blocks
        self.scratch = np.empty_like(z) if scratch is None else scratch
        self.last: Array | None = None  # the argument of the last call: z is evaluated there
        self.last_out: Array | None = None  # and its value G(last)
        self.calls: list[Callable[[], Any]] | None = None  # bound on the first call

    @property
    def z(self) -> Array:
        """The shared z, with every input in it (borrowed ones copied in now)."""
        if self.borrowed is not None:
            self.borrowed.fill(self._z)
        return self._z

    def bind(self) -> Array:
        """Bind the block's calls to z and the scratch vector (once); returns z,
        its inputs possibly borrowed (see :attr:`z`)."""
        if self.calls is None:
            z = self._z
            lent = self.borrowed.arrays if self.borrowed is not None else None
            self.calls = bind_runs(self.unit.interior, z, None, lent) + \
                bind_runs(self.unit.closing, z, self.scratch, lent)
        return self._z

    def __call__(self, u: Array) -> Array:
        z, at = self.bind(), self.unit.u_at
        z[at] = u
        self.last = u
        assert self.calls is not None
        for call in self.calls:  # the interior in order, then the closing equations
            call()
        out = self.scratch[at].copy() if isinstance(at, slice) else self.scratch[at]
        self.last_out = out
        return out

    def settle(self, x: Array) -> None:
        """Leave z at the solution ``x``. When ``x`` is the last call's argument,
        z is already there. When it is that call's value G(u) (a converged
        fixed-point iteration, ||G(u) - u|| <= tol), z_U is set to it and the
        interior is kept at u: the closing equations hold exactly, the
        interior ones to within the tolerance, and one evaluation of the block
        (a product with the whole of a dense W, say) is saved. Small blocks,
        where that evaluation costs little, are evaluated again at ``x``: z is
        then consistent to rounding (second derivatives read it)."""
        if x is self.last:
            return
        if x is self.last_out and x.size >= SETTLE_MIN:
            self._z[self.unit.u_at] = x
            return
        self(x)

    def result(self, method: str) -> BlockResult:
        return BlockResult(self.unit.block.name, method, self.unit.block.number)

    def zero_start_calls(self) -> list[Callable[[], Any]]:
        """The block's calls for an evaluation at u = 0, with each interior
        matrix product of the unknowns and an operand from outside the block
        (an input, or a value computed before it) replaced by writing zeros:
        a product with a DEQ's W at the default start, saved. Exact whenever
        the solve succeeds: that operand is unchanged by the solve and read by
        its final non-finite check, so it is finite and its product with zeros
        is zero (up to the sign of a zero)."""
        self.bind()
        calls = list(self.calls or [])
        at = self.unit.u_at
        if not isinstance(at, slice):
            return calls
        own = self.unit.runs
        for i, step in self._interior_products():
            spans = [(a, b) for _, a, b, _ in step.vslots]
            zero = [at.start <= a and b <= at.stop for a, b in spans]
            outside = [not any(s <= a < t or s < b <= t for s, t in own) for a, b in spans]
            if (zero[0] and outside[1]) or (zero[1] and outside[0]):
                calls[i] = partial(self._z[step.start:step.stop].fill, 0.0)
        return calls

    def certify_borrowed(self) -> None:
        """Record in ``borrowed.finite`` each borrowed input that the block's
        last evaluation shows finite, so that the solve's final check need not
        read it again (a DEQ's W: a pass over N^2 entries). Call it with z as
        that evaluation left it. The proof: an interior matrix product a @ b
        (a borrowed, of at most two dimensions) multiplies every entry a_ij by
        the entries b_jk, and adds each product into a sum of its own; with
        every b_jk finite and nonzero, a non-finite a_ij makes that product
        (inf times nonzero is inf, NaN anything is NaN) and so its sum
        non-finite, whatever the other terms (inf - inf is NaN). So a finite
        result with such a b shows a finite; likewise for b @ a."""
        borrowed = self.borrowed
        if borrowed is None or not borrowed.arrays:
            return
        z = self._z
        for _, step in self._interior_products():  # (their values are in z)
            spans = {pos: (a, b) for pos, a, b, _ in step.vslots}
            for pos in (0, 1):
                span, other = spans.get(pos), spans.get(1 - pos)
                if span not in borrowed.arrays or span in borrowed.finite or \
                        other is None or other in borrowed.arrays:
                    continue
                ndim = [len(shape) for _, _, _, shape in step.vslots]
                factor = z[other[0]:other[1]]
                if max(ndim) <= 2 and factor.size and np.isfinite(factor).all() and \
                        factor.all() and np.isfinite(z[step.start:step.stop]).all():
                    borrowed.finite.add(span)

    def _interior_products(self) -> Iterator[tuple[int, Single]]:
        """(position, step) of each interior matrix product of two variables
        computed in place (the steps :meth:`zero_start_calls` and
        :meth:`certify_borrowed` reason about)."""
        for i, step in enumerate(self.unit.interior):
            if step.eq.primitive.value is np.matmul and step.ufunc and len(step.vslots) == 2:
                yield i, step


class ForwardMethod(Protocol):
    def __call__(self, g: BlockMap, u0: Array, tol: float, maxiter: int, *,
                 budget: int | None = None) -> BlockResult: ...


def _diverged(g: BlockMap, result: BlockResult, res: float, u: Array) -> bool:
    """Mark ``result`` as failed when the residual is not finite (NONFINITE,
    naming the equation where the last evaluation of G first went non-finite)
    or blew up (BREAKDOWN)."""
    first = result.residuals[0] if result.residuals else res
    finite = bool(np.isfinite(res)) and bool(np.isfinite(norm2(u)))
    if finite and res <= DIVERGED * max(first, 1.0):
        return False
    result.iterations = len(result.residuals)
    if not finite:
        what, equation = blame_block(g.unit, g.z, g.scratch)
        result.status, result.extra["equation"] = Status.NONFINITE, equation
        result.message = (f"{result.method} met a non-finite value at iteration "
                          f"{result.iterations}: {what}")
        return True
    result.status = Status.BREAKDOWN
    other = "method='newton', " if result.method != "newton" else ""
    result.message = (f"{result.method} diverges: final residual {res:.3e} after "
                      f"{result.iterations} iterations (from {first:.3e}); the map is not "
                      f"contractive here: try {other}another init, or check the equations")
    return True


def _out_of_iterations(result: BlockResult, maxiter: int) -> BlockResult:
    result.status, result.iterations = Status.MAX_ITERATIONS, maxiter
    final = result.residuals[-1] if result.residuals else 0.0
    result.message = (f"{result.method} did not converge in {maxiter} iterations (final "
                      f"residual {final:.3e}); raise maxiter, try another method, or check "
                      "that the map is contractive / the root is well posed")
    return result


def _rate(residuals: list[float]) -> float | None:
    """Geometric mean of the last few residual ratios."""
    r = [x for x in residuals[-4:] if x > 0]
    if len(r) < 2:
        return None
    return float((r[-1] / r[0]) ** (1.0 / (len(r) - 1)))


def _too_slow(residuals: list[float], tol: float, scale: float) -> bool:
    """The observed rate predicts more than SWITCH_BUDGET iterations (or none)."""
    rho, res = _rate(residuals), residuals[-1]
    return rho is None or rho >= 0.99 or \
        np.log(tol * scale / res) / np.log(rho) > SWITCH_BUDGET


def _too_slow_fast(residuals: list[float], target: float) -> bool:
    """:func:`_too_slow` over the last four residuals, all positive (none has
    met ``target`` = tol * scale): with q = r_k / r_{k-3} = rho^3, the predicted
    log(target / r_k) / log(rho) iterations exceed SWITCH_BUDGET exactly when
    r_k rho^SWITCH_BUDGET > target; one power, no logarithms."""
    q = residuals[-1] / residuals[-4]
    return q >= RHO_SLOW_CUBED or residuals[-1] * q ** (SWITCH_BUDGET / 3) > target


def fixed_point(g: BlockMap, u0: Array, tol: float, maxiter: int, *,
                budget: int | None = None) -> BlockResult:
    """Iterate u <- G(u). With ``budget`` (the auto policy) stop without error
    checks as soon as the iteration is not finite or predicted too slow; the
    result then holds the last iterate in ``x`` and status BREAKDOWN."""
    if isinstance(g.unit.u_at, slice):
        return _fixed_point_in_place(g, u0, tol, maxiter, budget)
    result, u = g.result("fixed_point"), u0
    for k in range(maxiter):
        gu = g(u)
        res = norm2(gu - u)
        if budget is not None and not np.isfinite(res):
            return _gave_up(result, u)
        result.residuals.append(res)
        if budget is None and _diverged(g, result, res, gu):
            return result
        scale = max(1.0, norm2(gu))
        if res <= tol * scale:
            result.iterations, result.contraction, result.x = k + 1, _rate(result.residuals), gu
            return result
        if budget is not None and k >= 4 and _too_slow(result.residuals, tol, scale):
            return _gave_up(result, u)
        u = gu
    if budget is not None:
        return _gave_up(result, u)
    return _out_of_iterations(result, maxiter)


def _fixed_point_in_place(g: BlockMap, u0: Array, tol: float, maxiter: int,
                          budget: int | None) -> BlockResult:
    """:func:`fixed_point` for a block whose unknowns are one run of z: the
    iterate stays in z, G writes its value into the scratch vector, and the
    step lives in one preallocated vector, so an iteration is the block's
    bound calls and four numpy calls (step, two dot products, copy back), with
    no allocation: on a DEQ layer of width 1000, whose G is one product with W
    of about 0.1 ms, generic bookkeeping was a sizeable part of each iteration."""
    result = g.result("fixed_point")
    residuals = result.residuals
    at = g.unit.u_at
    z_u, g_u = g.bind()[at], g.scratch[at]  # views: the iterate, and G at it
    step = np.empty_like(u0)
    z_u[...] = u0
    calls, dot, subtract, copyto = g.calls or [], np.dot, np.subtract, np.copyto
    first = calls if u0.any() else g.zero_start_calls()
    for k in range(maxiter):
        for call in first if k == 0 else calls:
            call()
        subtract(g_u, z_u, out=step)
        squares = float(dot(step, step))
        res = math.sqrt(squares) if squares < math.inf else norm2(step)
        if budget is not None and not math.isfinite(res):
            return _gave_up(result, z_u.copy())
        residuals.append(res)
        if budget is None and _diverged(g, result, res, g_u):
            g.last = None
            return result
        squares = float(dot(g_u, g_u))
        scale = max(1.0, math.sqrt(squares) if squares < math.inf else norm2(g_u))
        if res <= tol * scale:
            result.iterations, result.contraction = k + 1, _rate(residuals)
            g.certify_borrowed()  # z is as this evaluation left it
            result.x = g.last_out = g_u.copy()  # z holds its argument: settle() keeps it
            g.last = None
            return result
        if budget is not None and k >= 4 and _too_slow_fast(residuals, tol * scale):
            return _gave_up(result, z_u.copy())
        copyto(z_u, g_u)
    g.last = None
    if budget is not None:
        return _gave_up(result, z_u.copy())
    return _out_of_iterations(result, maxiter)


def _gave_up(result: BlockResult, u: Array) -> BlockResult:
    result.status, result.x = Status.BREAKDOWN, u
    result.iterations = len(result.residuals)
    rate = _rate(result.residuals)
    result.message = (f"fixed-point iteration contracted too slowly (rate {rate:.3f}) after "
                      f"{len(result.residuals)} iterations" if rate is not None
                      else "fixed-point iteration failed")
    return result


def anderson(g: BlockMap, u0: Array, tol: float, maxiter: int, *,
             budget: int | None = None, memory: int = 5, beta: float = 1.0) -> BlockResult:
    """Anderson acceleration of u <- G(u), mixing the last ``memory`` iterates."""
    result, u = g.result("anderson"), u0
    us: list[Array] = []  # past iterates
    rs: list[Array] = []  # past residuals G(u) - u
    for k in range(maxiter):
        gu = g(u)
        r = gu - u
        res = norm2(r)
        result.residuals.append(res)
        if _diverged(g, result, res, gu):
            return result
        if res <= tol * max(1.0, norm2(gu)):
            result.iterations, result.x = k + 1, gu
            return result
        us.append(u)
        rs.append(r)
        if len(rs) > memory + 1:
            us.pop(0)
            rs.pop(0)
        if len(rs) == 1:
            u = u + beta * r
            continue
        # minimise ||r_k - dR gamma|| over gamma; mix the matching iterates
        d_r = np.stack([rs[i + 1] - rs[i] for i in range(len(rs) - 1)], axis=1)
        d_u = np.stack([us[i + 1] - us[i] for i in range(len(us) - 1)], axis=1)
        gamma = np.linalg.lstsq(d_r, r, rcond=None)[0]
        u = u + beta * r - (d_u + beta * d_r) @ gamma
    return _out_of_iterations(result, maxiter)


def newton(g: BlockMap, u0: Array, tol: float, maxiter: int, *,
           budget: int | None = None) -> BlockResult:
    """Newton's method with a backtracking line search on ||u - G(u)||."""
    dense = g.unit.s_index.size <= DENSE_NEWTON
    return _newton(g, u0, tol, maxiter, "newton", _factor,
                   dense_block_matrix if dense else block_matrix)


def newton_petsc(g: BlockMap, u0: Array, tol: float, maxiter: int, *,
                 budget: int | None = None) -> BlockResult:
    """Newton's method whose steps are PETSc KSP solves on (I - J_SS), as an
    assembled AIJ matrix distributed over the MPI ranks; the KSP of the last
    iterate is kept for the adjoint and tangent solves (``solveTranspose``)."""
    def factor(a: Any, result: BlockResult) -> Any:
        return petsc.KrylovSolve(petsc.Operator(a.shape[0], lambda: a, _no_product,
                                                _no_product), LinearOptions(),
                                 g.unit.block.name)
    return _newton(g, u0, tol, maxiter, "petsc", factor)


def _no_product(x: Array) -> Array:
    raise AssertionError("the forward Newton KSP is assembled (AIJ)")


def _newton(g: BlockMap, u0: Array, tol: float, maxiter: int, name: str,
            factorize: Callable[[Any, BlockResult], Any],
            assemble: Callable[[CyclicBlock, Array], Any] = block_matrix) -> BlockResult:
    unit, z = g.unit, g.z
    result, u = g.result(name), u0
    gu = g(u)
    previous = None  # I - J_SS at the last iterate
    for k in range(maxiter + 1):
        f = u - gu
        res = norm2(f)
        result.residuals.append(res)
        if _diverged(g, result, res, u):
            return result
        a = assemble(unit, z)
        if not np.isfinite(a if isinstance(a, np.ndarray) else a.data).all():
            return _nonfinite_jacobian(g, result)
        lu = factorize(a, result)
        if lu is None:
            return result
        if res <= tol * max(1.0, norm2(u)):
            result.iterations, result.factorization, result.x = k, lu, u
            if hasattr(lu, "U"):  # sparse LU: its pivots estimate the condition
                _record_conditioning(result, lu, a, previous)
            return result
        previous = a
        if k == maxiter:
            break
        rhs = np.zeros(unit.s_index.size)
        rhs[unit.pos_u] = -f  # interior rows are already satisfied (F_I = 0)
        step = lu.solve(rhs)[unit.pos_u]
        t = 1.0
        for _ in range(30):  # backtracking on ||F||
            trial = u + t * step
            g_trial = g(trial)
            if np.isfinite(g_trial).all() and norm2(trial - g_trial) <= (1 - 1e-4 * t) * res:
                break
            t *= 0.5
        u, gu = trial, g_trial
    return _out_of_iterations(result, maxiter)


def _record_conditioning(result: BlockResult, lu: Any, a: Any, previous: Any) -> None:
    """The condition estimate of (I - J_SS) at the solution, and how much the
    matrix still moved over the last Newton step: together they say whether
    the derivative is determined (see blocksolve.SENSITIVITY_LIMIT)."""
    result.condition = lu_condition(lu.U.diagonal())
    if previous is not None:
        moved = abs(a - previous)
        some = moved.nnz if sp.issparse(moved) else moved.size
        result.extra["jacobian_change"] = float(moved.max()) if some else 0.0


class DenseLU:
    """LAPACK's LU of a small dense (I - J_SS), read as SuperLU's is (the
    adjoint and tangent solves reuse Newton's factorization): ``solve(b,
    trans)`` and the factor ``U``."""

    def __init__(self, a: Array) -> None:
        with warnings.catch_warnings():  # an exactly singular matrix: seen by the caller
            warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
            self.lu, self.piv = scipy.linalg.lu_factor(a, check_finite=False)

    @property
    def U(self) -> Array:  # noqa: N802 (SuperLU's name)
        return np.triu(self.lu)

    def solve(self, b: Array, trans: str = "N") -> Array:
        return scipy.linalg.lu_solve((self.lu, self.piv), b, trans=1 if trans == "T" else 0,
                                     check_finite=False)


def _factor(a: Any, result: BlockResult) -> Any:
    """LU of (I - J_SS) (sparse, or LAPACK's for a dense ``a``), or None with
    the result marked singular."""
    if isinstance(a, np.ndarray):
        lu = DenseLU(a)
        return lu if np.all(np.diagonal(lu.lu)) else _exactly_singular(result, "a zero pivot")
    try:
        return spla.splu(a)
    except RuntimeError as err:
        return _exactly_singular(result, str(err))


def _nonfinite_jacobian(g: BlockMap, result: BlockResult) -> BlockResult:
    """I - J has a non-finite entry (an input's inf times a zero derivative,
    say): name the equation, not a singular matrix."""
    error = blame_steps(g.unit.unknowns[0].program, g.unit.steps, g.z)
    result.status, result.iterations = Status.NONFINITE, len(result.residuals)
    result.extra["equation"] = error.equation
    result.message = f"{result.method} met a non-finite Jacobian at iteration " \
        f"{result.iterations}: {error}; check the values it reads"
    return result


def _exactly_singular(result: BlockResult, why: str) -> None:
    result.status, result.iterations = Status.SINGULAR, len(result.residuals)
    result.condition = float("inf")
    result.message = (f"I - J is exactly singular at the current iterate (estimated "
                      f"condition inf: {why}); the constraints do not determine the "
                      "unknowns there")


METHODS: dict[str, ForwardMethod] = {
    "newton": newton, "fixed_point": fixed_point, "anderson": anderson, "petsc": newton_petsc}
"""The forward methods by name (``"auto"`` is the policy :func:`auto_solve`)."""


def auto_solve(g: BlockMap, u0: Array, tol: float, maxiter: int | None) -> BlockResult:
    """The "auto" policy: Newton for a root constraint; for a fixed point, the
    iteration while it contracts fast enough (within ``maxiter``, default
    SWITCH_BUDGET iterations), then Newton from its last finite iterate.
    ``maxiter`` also bounds Newton (default NEWTON_MAXITER)."""
    newton_maxiter = maxiter or NEWTON_MAXITER
    if any(s.eq.kind == "root" for s in g.unit.closing):
        result = newton(g, u0, tol, newton_maxiter)
        result.reason = "a root constraint: Newton"
        return result
    first = fixed_point(g, u0, tol, maxiter or SWITCH_BUDGET, budget=SWITCH_BUDGET)
    if first.converged:
        first.reason = "the map contracts: fixed-point iteration"
        return first
    assert first.x is not None
    start = first.x if np.isfinite(first.x).all() else np.zeros_like(u0)
    result = newton(g, start, tol, newton_maxiter)
    result.reason = f"{first.message}: Newton"
    result.residuals[:0] = first.residuals
    return result


def solve_block(unit: CyclicBlock, z: Array, options: ForwardOptions,
                inits: Mapping[int, Array], scratch: Array | None = None,
                borrowed: Borrowed | None = None) -> BlockResult:
    """Solve one cyclic block in place in z; returns its result, or raises
    (ConvergenceError, SingularSystemError) naming the block. Inputs in
    ``borrowed`` are read from the caller's arrays (:mod:`lagrad.solve.borrow`)."""
    u0 = np.concatenate([np.ravel(inits.get(v.index, np.zeros(v.shape)))
                         for v in unit.unknowns]).astype(float)
    method, tol = options.method or "auto", options.tolerance
    t0 = time.perf_counter()
    with np.errstate(all="ignore"):
        g = BlockMap(unit, z, scratch, borrowed)
        if not u0.size:  # unknowns of shape (0,): one evaluation of the interior solves it
            result = g.result("evaluation")
            result.x, result.reason = u0, "its unknowns have no entries"
        elif method == "auto":
            result = auto_solve(g, u0, tol, options.maxiter)
        else:
            run: Callable[..., BlockResult] = METHODS[method]
            limit = options.maxiter or (NEWTON_MAXITER if method in ("newton", "petsc")
                                        else ITERATIVE_MAXITER)
            result = run(g, u0, tol, limit)
        raise_for(result)
        assert result.x is not None
        g.settle(result.x)
    result.seconds = time.perf_counter() - t0
    result.residual = result.residuals[-1] if result.residuals else 0.0
    return result
