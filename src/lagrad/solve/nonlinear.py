"""Forward solves of cyclic blocks: find z_U with z_U = G(z_U).

G runs the block's interior equations (acyclic once the unknowns z_U are
given) and its closing equations. Three methods, by name (:data:`METHODS`):

* "newton": Newton's method on F(z_S) = z_S - f_S(z_S) over all the block's
  variables, with (I - J_SS) assembled from local Jacobians and factorized by
  sparse LU at each step, and a backtracking line search on ||F||;
* "fixed_point": plain iteration z_U <- G(z_U);
* "anderson": Anderson acceleration of that iteration;
* "auto" (default): root constraints by Newton; fixed points by iteration while
  the map contracts fast enough, switching to Newton when it stalls or diverges.
  The observed contraction rate is kept: it tells the adjoint solve how fast
  the Neumann series will converge.

Convergence: ||G(z_U) - z_U|| <= tol * max(1, ||z_U||). Failure raises
ConvergenceError naming the block; no values are returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse.linalg as spla
from numpy.typing import NDArray

from lagrad.compile.jacobian import block_matrix
from lagrad.compile.schedule import CyclicBlock
from lagrad.errors import ConvergenceError, OptionError, SingularSystemError
from lagrad.numeric import norm2

__all__ = ["BlockDiagnostics", "solve_block", "METHODS", "DEFAULTS"]

Array = NDArray[np.float64]


DEFAULTS = {"method": "auto", "tol": 1e-13, "maxiter": 100}
SWITCH_BUDGET = 500  # "auto": predicted fixed-point iterations beyond which Newton takes over
ITERATIVE_MAXITER = 10_000


@dataclass
class BlockDiagnostics:
    """What the forward solve of one cyclic block did."""

    block: Any
    method: str
    iterations: int
    residuals: list[float]
    seconds: float = 0.0
    converged: bool = True
    factorization: Any = field(default=None, repr=False)  # LU of (I - J_SS) at the solution
    contraction: float | None = None  # observed rate ||r_k+1|| / ||r_k|| of an iteration
    reason: str = ""  # why "auto" chose the method

    @property
    def residual(self) -> float:
        return self.residuals[-1] if self.residuals else 0.0




class _Map:
    """G and F for one block, writing into the shared z."""

    def __init__(self, unit: CyclicBlock, z: Array, scratch: Array | None = None) -> None:
        self.unit, self.z = unit, z
        # only the unknowns' positions are written: one scratch serves all blocks
        self.scratch = np.empty_like(z) if scratch is None else scratch

    def __call__(self, u: Array) -> Array:
        """Set z_U = u, run the interior, return G(u)."""
        z, at = self.z, self.unit.u_at
        z[at] = u
        for step in self.unit.interior:
            step.run(z)
        for step in self.unit.closing:
            step.run(z, self.scratch)
        return self.scratch[at].copy() if isinstance(at, slice) else self.scratch[at]


def _converged(unit: CyclicBlock, diag: BlockDiagnostics, res: float, u: Array,
               tol: float) -> bool:
    """res <= tol * max(1, ||u||), raising ConvergenceError on divergence."""
    scale = norm2(u)
    first = diag.residuals[0] if diag.residuals else res
    if not (np.isfinite(res) and np.isfinite(scale)) or res > 1e8 * max(first, 1.0):
        diag.iterations = len(diag.residuals)
        diag.converged = False
        raise ConvergenceError(
            f"{unit.block.name}: {diag.method} diverges: final residual {res:.3e} after "
            f"{diag.iterations} iterations (from {first:.3e}); the map is not contractive "
            "here: try method='newton', another init, or check the equations")
    return res <= tol * max(1.0, scale)


def _fixed_point(unit: CyclicBlock, g: _Map, u: Array, tol: float, maxiter: int,
                 diag: BlockDiagnostics) -> Array:
    for k in range(maxiter):
        gu = g(u)
        res = norm2(gu - u)
        diag.residuals.append(res)
        u = gu
        if _converged(unit, diag, res, u, tol):
            diag.iterations, diag.contraction = k + 1, _rate(diag.residuals)
            return u
    diag.iterations = maxiter
    return _fail(unit, diag)


def _anderson(unit: CyclicBlock, g: _Map, u: Array, tol: float, maxiter: int,
              diag: BlockDiagnostics, memory: int = 5, beta: float = 1.0) -> Array:
    us: list[Array] = []  # past iterates
    rs: list[Array] = []  # past residuals G(u) - u
    for k in range(maxiter):
        gu = g(u)
        r = gu - u
        res = norm2(r)
        diag.residuals.append(res)
        if _converged(unit, diag, res, gu, tol):
            diag.iterations = k + 1
            return gu
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
    diag.iterations = maxiter
    return _fail(unit, diag)


def _newton(unit: CyclicBlock, g: _Map, u: Array, tol: float, maxiter: int,
            diag: BlockDiagnostics) -> Array:
    z, size = g.z, g.z.size
    pos_u = unit.pos_u
    gu = g(u)
    for k in range(maxiter + 1):
        f = u - gu
        res = norm2(f)
        diag.residuals.append(res)
        converged = _converged(unit, diag, res, u, tol)
        lu = _factor(unit, z, size)
        if converged:
            diag.iterations = k
            diag.factorization = lu
            return u
        if k == maxiter:
            break
        rhs = np.zeros(unit.s_index.size)
        rhs[pos_u] = -f  # interior rows are already satisfied (F_I = 0)
        step = lu.solve(rhs)[pos_u]
        t = 1.0
        for _ in range(30):  # backtracking on ||F||
            trial = u + t * step
            g_trial = g(trial)
            if np.isfinite(g_trial).all() and \
                    norm2(trial - g_trial) <= (1 - 1e-4 * t) * res:
                break
            t *= 0.5
        u, gu = trial, g_trial
    diag.iterations = maxiter
    return _fail(unit, diag)


def _factor(unit: CyclicBlock, z: Array, size: int) -> Any:
    a = block_matrix(unit, z, size)
    try:
        return spla.splu(a)
    except RuntimeError as err:
        raise SingularSystemError(f"{unit.block.name}: I - J is exactly singular at the "
                                  f"current iterate (estimated condition inf: {err}); the "
                                  "constraints do not determine the unknowns there") from err


def _fail(unit: CyclicBlock, diag: BlockDiagnostics) -> Array:
    diag.converged = False
    raise ConvergenceError(
        f"{unit.block.name}: {diag.method} did not converge in {diag.iterations} iterations "
        f"(final residual {diag.residual:.3e}); raise maxiter, try another method, or check "
        "that the map is contractive / the root is well posed")


def _rate(residuals: list[float]) -> float | None:
    """Geometric mean of the last few residual ratios."""
    r = [x for x in residuals[-4:] if x > 0]
    if len(r) < 2:
        return None
    return float((r[-1] / r[0]) ** (1.0 / (len(r) - 1)))


def _auto(unit: CyclicBlock, g: _Map, u: Array, tol: float, maxiter: int,
          diag: BlockDiagnostics) -> Array:
    if any(s.eq.kind == "root" for s in unit.closing):
        diag.method, diag.reason = "newton", "a root constraint: Newton"
        return _newton(unit, g, u, tol, DEFAULTS["maxiter"], diag)
    diag.method = "fixed_point"
    for k in range(maxiter):
        gu = g(u)
        res = norm2(gu - u)
        if not np.isfinite(res):
            break
        diag.residuals.append(res)
        scale = max(1.0, norm2(gu))
        if res <= tol * scale:
            diag.iterations, diag.contraction = k + 1, _rate(diag.residuals)
            diag.reason = "the map contracts: fixed-point iteration"
            return gu
        rho = _rate(diag.residuals)
        if k >= 4 and (rho is None or rho >= 0.99 or
                       np.log(tol * scale / res) / np.log(rho) > SWITCH_BUDGET):
            break
        u = gu
    rate = _rate(diag.residuals)
    diag.method = "newton"
    diag.reason = (f"fixed-point iteration contracted too slowly (rate {rate:.3f}) after "
                   f"{len(diag.residuals)} iterations: Newton" if rate is not None
                   else "fixed-point iteration failed: Newton")
    start = diag.residuals.copy()
    diag.residuals.clear()
    best = u if np.isfinite(u).all() else np.zeros_like(u)
    out = _newton(unit, g, best, tol, DEFAULTS["maxiter"], diag)
    diag.residuals[:0] = start
    return out


METHODS: dict[str, Callable[..., Array]] = {
    "auto": _auto, "newton": _newton, "fixed_point": _fixed_point, "anderson": _anderson}


def solve_block(unit: CyclicBlock, z: Array, options: Mapping[str, Any],
                inits: Mapping[int, Array], scratch: Array | None = None) -> BlockDiagnostics:
    """Solve one cyclic block in place in z; returns its diagnostics."""
    method = options.get("method") or DEFAULTS["method"]
    if method not in METHODS:
        raise OptionError(f"unknown forward method {method!r} for {unit.block.name}; choose "
                          f"one of {sorted(METHODS)}")
    tol = options.get("tol") or DEFAULTS["tol"]
    maxiter = options.get("maxiter") or (
        DEFAULTS["maxiter"] if method == "newton" else ITERATIVE_MAXITER)
    if method == "auto":
        maxiter = options.get("maxiter") or SWITCH_BUDGET
    u0 = np.concatenate([np.ravel(inits.get(v.index, np.zeros(v.shape)))
                         for v in unit.unknowns])
    diag = BlockDiagnostics(unit.block, method, 0, [])
    t0 = time.perf_counter()
    with np.errstate(all="ignore"):
        g = _Map(unit, z, scratch)
        u = METHODS[method](unit, g, u0.astype(float), float(tol), int(maxiter), diag)
        g(u)  # leave z at the solution, with the interior evaluated there
    diag.seconds = time.perf_counter() - t0
    return diag
