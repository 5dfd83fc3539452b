"""Linear solves inside a cyclic block, for the adjoint and tangent sweeps.

Inside block S = I + U (interior variables I, unknowns U) the sweep must solve
(I - J_SS)^T lambda_S = b_S (adjoint) or (I - J_SS) zdot_S = c_S (tangent).
Two equivalent forms:

* *direct* ("splu", "dense", "lstsq"): factorize the assembled (I - J_SS);
* *reduced* ("gmres", "bicgstab", "lgmres", "fixed_point", "reduced_lu"): eliminate the
  interior, which is acyclic given z_U. With G the block's map z_U -> f_U,
  dG/dz_U = J_UU + J_UI (I - J_II)^-1 J_IU, and the adjoint becomes
  (I - dG/dz_U)^T lambda_U = b_U + J_IU^T (I - J_II)^-T b_I, an n_U x n_U
  system applied matrix-free by one VJP sweep through the block per product;
  lambda_I then follows by back-substitution. The tangent is the transpose.
  "reduced_lu" builds that n_U x n_U matrix from n_U products and factorizes
  it: exact, and the cheapest choice when n_U is smaller than the number of
  iterations an iterative method would take (a chain of small blocks).

Afterwards the block's contributions to outside parents are added with the
``outer`` steps (derivatives only with respect to variables outside S).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse.linalg as spla
from numpy.typing import NDArray

from lagrad.compile.jacobian import block_matrix
from lagrad.compile.schedule import CyclicBlock
from lagrad.errors import ConvergenceError, OptionError, SingularSystemError
from lagrad.numeric import norm2

__all__ = ["Workspace", "BlockSolveInfo", "solve_adjoint_block", "solve_tangent_block",
           "BLOCK_METHODS", "SingularBlockWarning"]

Array = NDArray[np.float64]
SINGULAR_CONDITION = 1e13
DIRECT_LIMIT = 20_000  # block entries above which "auto" goes matrix-free
NEUMANN_BUDGET = 300  # iterations "auto" accepts for the Neumann series
REDUCED_LU_LIMIT = 200  # "auto": at most this many unknowns for the reduced dense LU
KRYLOV_BUDGET = 500  # "auto": BiCGSTAB iterations before GMRES takes over


class SingularBlockWarning(RuntimeWarning):
    """A block is singular and "lstsq" returned minimum-norm multipliers."""


@dataclass
class BlockSolveInfo:
    """Diagnostics of one linear solve inside a cyclic block."""

    block: str
    method: str
    iterations: int
    residual: float
    seconds: float
    reused_factorization: bool = False
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Workspace:
    """Two scratch vectors in the flat layout, allocated once per sweep and
    shared by its blocks (each block only touches its own positions), so that
    a chain of many small blocks costs time linear in their number."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._vectors: tuple[Array, Array] | None = None

    def vectors(self) -> tuple[Array, Array]:
        if self._vectors is None:
            self._vectors = (np.zeros(self.size), np.zeros(self.size))
        return self._vectors


class _Block:
    """(I - J_SS) of one block at z, in direct and reduced (matrix-free) form."""

    def __init__(self, unit: CyclicBlock, z: Array, workspace: Workspace | None = None) -> None:
        self.unit, self.z = unit, z
        self.w, self.w2 = (workspace or Workspace(z.size)).vectors()

    def matrix(self) -> Any:
        return block_matrix(self.unit, self.z, self.z.size)

    # reduced adjoint: v -> v - (dG/du)^T v
    def g_vjp(self, v: Array, b_interior: Array | None = None) -> Array:
        """(dG/du)^T v, or with ``b_interior`` the back-substituted interior seed."""
        u = self.unit
        u.zero(self.w2)
        self.w[u.u_at] = v  # the closing pullbacks read only the unknowns' entries
        for step in u.inner_closing:
            step.pullback(self.z, self.w, into=self.w2)
        if b_interior is not None:
            self.w2[u.i_at] += b_interior
        for step in reversed(u.inner_interior):
            step.pullback(self.z, self.w2)
        return self.w2[u.u_at].copy()

    def g_jvp(self, v: Array, c_interior: Array | None = None) -> Array:
        """(dG/du) v, with an optional interior source term ``c_interior``."""
        u = self.unit
        u.zero(self.w)
        u.zero(self.w2)
        self.w[u.u_at] = v
        if c_interior is not None:
            self.w[u.i_at] = c_interior
        for step in u.inner_interior:
            step.pushforward(self.z, self.w)
        for step in u.inner_closing:
            step.pushforward(self.z, self.w, into=self.w2)
        return self.w2[u.u_at].copy()


# ----------------------------------------------------------------- methods

def _condition(lu: Any) -> float:
    d = np.abs(lu.U.diagonal())
    return float(d.max() / d.min()) if d.size and d.min() > 0 else float("inf")


def _direct(blk: _Block, b: Array, transpose: bool, options: dict[str, Any],
            factor: Any) -> tuple[Array, dict[str, Any]]:
    name = blk.unit.block.name
    if factor is None:
        try:
            factor = spla.splu(blk.matrix())
        except RuntimeError as err:
            raise SingularSystemError(f"{name}: I - J is exactly singular (estimated "
                                      "condition inf); the constraints do not determine "
                                      "the block's variables") from err
    cond = _condition(factor)
    if cond > SINGULAR_CONDITION:
        raise SingularSystemError(f"{name}: I - J is numerically singular (estimated "
                                  f"condition {cond:.2e}); use method='lstsq' for "
                                  "minimum-norm multipliers")
    x = factor.solve(b, trans="T" if transpose else "N")
    return x, {"condition": cond}


def _dense(blk: _Block, b: Array, transpose: bool, options: dict[str, Any],
           factor: Any) -> tuple[Array, dict[str, Any]]:
    a = blk.matrix().toarray()
    lu, piv = scipy.linalg.lu_factor(a, check_finite=False)
    d = np.abs(np.diag(lu))
    cond = float(d.max() / d.min()) if d.min() > 0 else float("inf")
    if cond > SINGULAR_CONDITION:
        raise SingularSystemError(f"{blk.unit.block.name}: I - J is singular (estimated "
                                  f"condition {cond:.2e}); use method='lstsq' for "
                                  "minimum-norm multipliers")
    return scipy.linalg.lu_solve((lu, piv), b, trans=1 if transpose else 0), {"condition": cond}


def _lstsq(blk: _Block, b: Array, transpose: bool, options: dict[str, Any],
           factor: Any) -> tuple[Array, dict[str, Any]]:
    a = blk.matrix().toarray()
    a = a.T if transpose else a
    x, _, rank, sv = np.linalg.lstsq(a, b, rcond=None)
    if rank < a.shape[0]:
        warnings.warn(f"{blk.unit.block.name} is singular (rank {rank} of {a.shape[0]}): "
                      "lstsq returns the minimum-norm solution; the gradient is defined "
                      "only up to the null space of (I - J)", SingularBlockWarning,
                      stacklevel=2)
    cond = float(sv[0] / sv[-1]) if sv[-1] > 0 else float("inf")
    return x, {"rank": int(rank), "condition": cond}


def _krylov(solver: Callable[..., Any]) -> Callable[..., tuple[Array, dict[str, Any]]]:
    def run(op: spla.LinearOperator, c: Array, tol: float, maxiter: int | None,
            options: dict[str, Any]) -> tuple[Array, dict[str, Any]]:
        count = [0]

        def callback(*_: Any) -> None:
            count[0] += 1
        extra: dict[str, Any] = {"callback_type": "pr_norm"} if solver is spla.gmres else {}
        if maxiter is not None:
            extra["maxiter"] = int(maxiter)
        x, info = solver(op, c, rtol=tol, atol=0.0, M=options.get("preconditioner"),
                         callback=callback, **extra)
        return x, {"iterations": count[0], "converged": info == 0}
    return run


def _neumann(op: spla.LinearOperator, c: Array, tol: float, maxiter: int | None,
             options: dict[str, Any]) -> tuple[Array, dict[str, Any]]:
    # x = c + K x with K = I - op: the Neumann series, converging when rho(K) < 1
    # Under "auto" (a ``_budget`` option) it gives up as soon as its own observed
    # rate predicts more iterations than the budget, so that GMRES takes over.
    x = c.copy()
    scale = max(norm2(c), np.finfo(float).tiny)
    limit = maxiter or 10_000
    budget = options.get("_budget")
    history: list[float] = []
    for k in range(1, limit + 1):
        r = c - op.matvec(x)
        res = norm2(r)
        history.append(res)
        if res <= tol * scale:
            return x, {"iterations": k - 1, "converged": True}
        if not np.isfinite(res) or res > 1e12 * scale:
            break
        if budget is not None and k >= 4:  # the series' own rate, early: the forward
            rate = (history[-1] / history[-4]) ** (1 / 3)  # rate can be far too hopeful
            if rate >= 1 or k + np.log(tol * scale / res) / np.log(rate) > budget:
                return x, {"iterations": k, "converged": False, "abandoned": True,
                           "rate": float(rate)}
        x = x + r
    return x, {"iterations": k, "converged": False}


def _reduced_lu(op: spla.LinearOperator, c: Array, tol: float, maxiter: int | None,
                options: dict[str, Any]) -> tuple[Array, dict[str, Any]]:
    # the reduced matrix column by column (n_U products), then one dense LU
    n = c.size
    a = np.empty((n, n))
    e = np.zeros(n)
    for j in range(n):
        e[j] = 1.0
        a[:, j] = op.matvec(e)
        e[j] = 0.0
    with warnings.catch_warnings():  # a singular matrix is reported below, by block
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        lu, piv = scipy.linalg.lu_factor(a, check_finite=False)
    d = np.abs(np.diag(lu))
    cond = float(d.max() / d.min()) if n and d.min() > 0 else float("inf") if n else 1.0
    if cond > SINGULAR_CONDITION:
        raise SingularSystemError(f"the reduced {n} x {n} matrix I - dG/dz_U is singular "
                                  f"(estimated condition {cond:.2e}); use method='lstsq' for "
                                  "minimum-norm multipliers")
    x = scipy.linalg.lu_solve((lu, piv), c, check_finite=False) if n else c.copy()
    return x, {"iterations": n, "converged": True, "condition": cond}


DIRECT = {"splu": _direct, "dense": _dense, "lstsq": _lstsq}
REDUCED = {"gmres": _krylov(spla.gmres), "bicgstab": _krylov(spla.bicgstab),
           "lgmres": _krylov(spla.lgmres), "fixed_point": _neumann,
           "reduced_lu": _reduced_lu}
BLOCK_METHODS = ("auto", *DIRECT, *REDUCED)
OPTIONS = {"tol", "maxiter", "preconditioner"}


@dataclass(frozen=True)
class _Choice:
    name: str
    reason: str
    neumann_budget: int | None = None  # iterations after which the series gives way


def _choose(unit: CyclicBlock, method: str, fwd: Any, tol: float) -> _Choice:
    """The block method for ``method`` and why ("auto" decides from structure and
    from what the forward solve observed)."""
    if method != "auto":
        return _Choice(method, "requested")
    if fwd is not None and fwd.factorization is not None:
        return _Choice("splu", "reuses the forward Newton factorization")
    rho = getattr(fwd, "contraction", None)
    n_u = unit.u_index.size
    if rho is not None and rho < 0.99:
        # the Neumann series contracts at the forward iteration's rate
        expected = int(np.ceil(np.log(tol) / np.log(max(rho, 1e-3))))
        if n_u < expected and n_u <= REDUCED_LU_LIMIT:
            return _Choice("reduced_lu", f"{n_u} unknowns: {n_u} products and a dense LU "
                           f"cost less than ~{expected} Neumann iterations")
        if expected <= NEUMANN_BUDGET:
            return _Choice("fixed_point", f"forward iteration contracted at rate {rho:.2f}: "
                           f"Neumann series expected in ~{expected} iterations",
                           2 * expected + 20)
        return _Choice("bicgstab", f"forward contraction {rho:.3f} is slow (~{expected} "
                       "Neumann iterations): matrix-free BiCGSTAB")
    size = unit.s_index.size
    if size <= DIRECT_LIMIT:
        return _Choice("splu", f"block of {size} entries: sparse LU")
    return _Choice("bicgstab", f"block of {size} entries is too large to factorize: "
                   "matrix-free BiCGSTAB")


def _solve(unit: CyclicBlock, z: Array, b: Array, transpose: bool, method: str,
           options: dict[str, Any], fwd: Any,
           workspace: Workspace | None) -> tuple[Array, BlockSolveInfo]:
    """Solve (I - J_SS)^T x = b (transpose) or (I - J_SS) x = b over the block."""
    unknown = set(options) - OPTIONS
    if unknown:
        raise OptionError(f"unknown solver options {sorted(unknown)}; accepted: "
                          f"{sorted(OPTIONS)}")
    tol = float(options.get("tol") or 1e-13)
    choice = _choose(unit, method, fwd, tol)
    name, reason = choice.name, choice.reason
    if method != "auto":
        return _solve_with(unit, z, b, transpose, name, reason, tol, options, fwd, workspace)
    # "auto" never returns an inexact result: Neumann -> BiCGSTAB -> GMRES -> sparse LU.
    # BiCGSTAB takes as many products as GMRES here, with less work between
    # them; it may stall, so it gets a budget and GMRES follows.
    chain = {"fixed_point": "bicgstab", "bicgstab": "gmres", "gmres": "splu"}
    if choice.neumann_budget is not None:
        options = {**options, "_budget": choice.neumann_budget}
    while True:
        attempt = options
        if name == "bicgstab" and not options.get("maxiter"):
            attempt = {**options, "maxiter": KRYLOV_BUDGET}
        try:
            return _solve_with(unit, z, b, transpose, name, reason, tol, attempt, fwd, workspace)
        except ConvergenceError as err:
            nxt = chain.get(name)
            if nxt is None or (nxt == "splu" and unit.s_index.size > DIRECT_LIMIT):
                raise
            reason = f"{name} was not converging ({_first_line(err)}): {nxt} instead"
            name = nxt


def _first_line(err: Exception) -> str:
    return str(err).split(";")[0]


def _solve_with(unit: CyclicBlock, z: Array, b: Array, transpose: bool, name: str,
                reason: str, tol: float, options: dict[str, Any], fwd: Any,
                workspace: Workspace | None) -> tuple[Array, BlockSolveInfo]:
    blk = _Block(unit, z, workspace)
    factor = getattr(fwd, "factorization", None) if name == "splu" else None
    t0 = time.perf_counter()
    if name in DIRECT:
        x, extra = DIRECT[name](blk, b, transpose, options, factor)
        iterations = 1
    elif name in REDUCED:
        x, extra = _reduced(blk, b, transpose, REDUCED[name], tol, options)
        iterations = int(extra.get("iterations", 0))
    else:
        raise OptionError(f"unknown method {name!r}; choose one of {sorted(BLOCK_METHODS)}")
    if extra.get("abandoned"):  # no residual to check: "auto" moves on
        raise ConvergenceError(f"{unit.block.name}: {name} abandoned after {iterations} "
                               f"iterations (observed rate {extra['rate']:.3f})")
    res = _residual(blk, x, b, transpose)
    info = BlockSolveInfo(unit.block.name, name, iterations, res, time.perf_counter() - t0,
                          reused_factorization=factor is not None, reason=reason,
                          extra=extra)
    if name in REDUCED and not (np.isfinite(res) and (extra.get("converged")
                                                      or res <= tol)):
        raise ConvergenceError(f"{unit.block.name}: {name} did not converge within "
                               f"{iterations} iterations (relative residual {res:.3e}, "
                               f"tolerance {tol:g}); raise maxiter or use a direct method")
    return x, info


def _reduced(blk: _Block, b: Array, transpose: bool, solver: Callable[..., Any], tol: float,
             options: dict[str, Any]) -> tuple[Array, dict[str, Any]]:
    unit = blk.unit
    n = unit.u_index.size
    pos_u, pos_i = unit.pos_u, unit.pos_i
    b_u, b_i = b[pos_u], b[pos_i]
    if transpose:
        c = b_u + blk.g_vjp(np.zeros(n), b_i)
        op = spla.LinearOperator((n, n), matvec=lambda v: v - blk.g_vjp(v), dtype=float)
    else:
        c = b_u + blk.g_jvp(np.zeros(n), b_i)
        op = spla.LinearOperator((n, n), matvec=lambda v: v - blk.g_jvp(v), dtype=float)
    x_u, extra = solver(op, c, tol, options.get("maxiter"), options)
    # recover the interior from x_u
    if transpose:
        blk.g_vjp(x_u, b_i)
        x_i = blk.w2[unit.i_at]
    else:
        blk.g_jvp(x_u, b_i)
        x_i = blk.w[unit.i_at]
    x = np.empty(unit.s_index.size)
    x[pos_u], x[pos_i] = x_u, x_i
    return x, extra


def _residual(blk: _Block, x: Array, b: Array, transpose: bool) -> float:
    """Relative residual of the full-block system, matrix-free."""
    unit, s = blk.unit, blk.unit.s_index
    blk.w[s] = x
    unit.zero(blk.w2)
    for step in unit.inner_interior + unit.inner_closing:
        if transpose:
            step.pullback(blk.z, blk.w, into=blk.w2)
        else:
            step.pushforward(blk.z, blk.w, into=blk.w2)
    r = x - blk.w2[s] - b
    return norm2(r) / max(norm2(b), np.finfo(float).tiny)


def solve_adjoint_block(unit: CyclicBlock, z: Array, lam: Array, method: str,
                        options: dict[str, Any], forward: Any = None,
                        workspace: Workspace | None = None) -> BlockSolveInfo:
    """Replace lam[S] (holding b_S) by the block's multipliers and add the
    block's contributions to its outside parents."""
    x, info = _solve(unit, z, lam[unit.s_index].copy(), True, method, options, forward,
                     workspace)
    lam[unit.s_index] = x
    for step in unit.outer:
        step.pullback(z, lam)
    return info


def solve_tangent_block(unit: CyclicBlock, z: Array, zdot: Array, method: str,
                        options: dict[str, Any], forward: Any = None,
                        workspace: Workspace | None = None) -> BlockSolveInfo:
    """Replace zdot[S] (holding the rhs) by the block's tangents, using the
    already-final tangents of its outside parents."""
    for step in unit.outer:
        step.pushforward(z, zdot)
    x, info = _solve(unit, z, zdot[unit.s_index].copy(), False, method, options, forward,
                     workspace)
    zdot[unit.s_index] = x
    return info
