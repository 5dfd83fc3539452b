"""Newton on a group of same-structure cyclic blocks (solve/grouped.py).

One Newton iteration on F(U) = U - G(U) over the unknowns U (B, n_U) of all B
elements (U without the running sums carried along the group: those are
cumulative sums after it, solve/groupcarry.py), converged when every
element's ||U_k - G_k(U)|| <= tol max(1, ||U_k||). What it costs, measured
on the blocks chain: one evaluation of G is the unit; a factorization of
I - dG/dU (one seeded Jacobian sweep, the elements' LU and the band of L)
about 4 of them; a solve with it under one. Hence:

* with the default method, a few fixed-point sweeps first (each kept only
  while it contracts the unknowns' residual), a cheap start;
* a factorization is reused for the next step (a chord step) while the last
  step with it cut the largest residual by REUSE_RATE;
* at the solution I - dG/dU is factorized once more, for the multipliers and
  tangents (exact there; refining the adjoint with the last step's
  factorization would take 3 to 6 matrix-free sweeps at the chord steps'
  rates, which cost as much).
"""

from __future__ import annotations

import operator
import time
from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from lagrad.compile.groups import CyclicGroup
from lagrad.options import ForwardOptions
from lagrad.solve.groupcarry import prefix_sums
from lagrad.solve.grouped import GroupMap, factorize
from lagrad.solve.nonlinear import NEWTON_MAXITER
from lagrad.solve.results import BlockResult, Status, raise_for

__all__ = ["newton_group", "solve_group", "GROUP_METHODS", "REUSE_RATE", "WARMUP"]

Array = NDArray[np.float64]
GROUP_METHODS = ("auto", "newton")
"""Forward methods a group is solved with together (any other named method
solves its blocks one by one)."""
REUSE_RATE = 0.1
WARMUP = 5
"""Fixed-point sweeps before Newton with the default method (see _warmup)."""


def _norms(x: Array) -> Array:
    return np.sqrt(np.einsum("ki,ki->k", x, x))


def _converged(group: CyclicGroup, u: Array, gu: Array, tol: float, r: Array | None = None,
               res: Array | None = None) -> NDArray[np.bool_]:
    """Per element: ||U_k - G_k|| <= tol max(1, ||U_k||), tested apart for the
    unknowns and the carries (a long sum carried along the chain must not
    loosen the test of the unknowns). ``r`` is +-(U - G) and ``res`` its
    norms when already computed."""
    n = group.n_unknowns
    if r is None:
        r = u - gu
    rn = res if res is not None and n == u.shape[1] else _norms(r[:, :n])
    ok = rn <= tol * np.maximum(1.0, _norms(u[:, :n]))
    if n < u.shape[1]:
        ok &= _norms(r[:, n:]) <= tol * np.maximum(1.0, _norms(u[:, n:]))
    return ok


def _failed(group: CyclicGroup, result: BlockResult, status: Status, k: int,
            message: str) -> BlockResult:
    """Mark the group's result failed, naming element ``k``'s block."""
    result.status, result.block = status, group.units[k].block.name
    result.number = group.units[k].block.number
    result.message = f"{message} (element {k} of the {group.name})"
    return result


def newton_group(gm: GroupMap, u0: Array, tol: float, maxiter: int,
                 warmup: int = 0) -> BlockResult:
    """Newton on U - G(U) = 0 over all elements, converged when every element's
    ||U_k - G_k(U)|| <= tol max(1, ||U_k||). Backtracks (see _line_search);
    reuses a factorization while it contracts the residual by REUSE_RATE; the
    factorization returned is made at the solution. ``warmup``: at most this
    many fixed-point sweeps U <- G(U) first, while they contract."""
    group = gm.group
    result = BlockResult(group.name, "newton", group.units[0].block.number)
    result.reason = "a group of blocks of one structure: batched Newton"
    u, gu = _warmup(gm, u0, gm(u0), warmup)
    factor, made_at, rate = None, -2, 1.0  # the factorization and the iteration it was made at
    res = None  # the residuals' norms, when the line search computed them
    for it in range(maxiter + 1):
        r = gu - u
        if res is None:
            res = _norms(r)
        result.residuals.append(float(res.max()))
        if not np.all(np.isfinite(res)) or not np.all(np.isfinite(u)):
            k = int(np.argmax(~np.isfinite(res) | ~np.isfinite(u).all(axis=1)))
            return _failed(group, result, Status.NONFINITE, k, "newton met a non-finite "
                           f"value at iteration {it + 1}: the residual is not finite; check the "
                           "block's equations and inputs for NaN or inf, or try another init")
        done = bool(np.all(_converged(group, u, gu, tol, r, res)))
        if done or factor is None or rate > REUSE_RATE:
            previous = factor.diagonal if factor is not None and made_at == it - 1 else None
            made = factorize(gm)
            if isinstance(made, int):
                return _failed(group, result, Status.SINGULAR, made, "I - J is singular at "
                               "the current iterate; the constraints do not determine the "
                               "unknowns")
            factor, made_at = made, it
            result.extra["factorizations"] = result.extra.get("factorizations", 0) + 1
        if done:
            result.iterations, result.factorization, result.x = it, factor, u
            result.extra["element_residuals"] = res
            if previous is not None:  # D's change over the last (Newton) step
                result.extra["jacobian_change"] = np.abs(factor.diagonal - previous).max(
                    axis=(1, 2))
            return result
        if it == maxiter:
            scale = np.maximum(1.0, _norms(u))
            k = int(np.argmax(res / scale))
            return _failed(group, result, Status.MAX_ITERATIONS, k,
                           f"newton did not converge in {maxiter} iterations (final residual "
                           f"{res[k]:.3e}); raise maxiter, another init, or check the map")
        step = factor.solve(r, transposed=False)
        u, gu, new = _line_search(gm, u, step, res, tol)
        if new is None:
            new = _norms(u - gu)
        rate = float(new.max()) / max(float(res.max()), 1e-300)
        res = new
    raise AssertionError("unreachable")


def _warmup(gm: GroupMap, u: Array, gu: Array, sweeps: int) -> tuple[Array, Array]:
    """Up to ``sweeps`` fixed-point sweeps U <- G(U) over all elements at once,
    each kept only if it cuts the largest residual of the unknowns (carries
    aside: a carry's error moves one element down the chain per sweep) to
    0.95 of the last one; a cheap start for Newton (one sweep costs one evaluation of G)."""
    n = gm.group.n_unknowns
    last = float(_norms((u - gu)[:, :n]).max())
    for _ in range(sweeps):
        g2 = gm(gu)
        new = float(_norms((gu - g2)[:, :n]).max())
        if not new <= 0.95 * last:  # also when not finite
            gm(u)  # leave the map at the kept iterate
            break
        u, gu, last = gu, g2, new
    return u, gu


def _line_search(gm: GroupMap, u: Array, step: Array, res: Array, tol: float
                 ) -> tuple[Array, Array, Array | None]:
    """The full step where it reduces an element's residual; halved (up to 30
    times) for the elements where it does not. In a chain an element's
    residual also depends on the steps of the elements it reads, so there the
    step is halved for all at once, on the sum of squares of the residuals.
    Returns the iterate, G there and its residuals' norms (None: not computed)."""
    trial = u + step
    g = gm(trial)
    if gm.core.chained:
        return _chain_line_search(gm, u, step, res, tol, trial, g)
    t = np.ones(u.shape[0])
    for _ in range(30):
        r = trial - g
        new = _norms(r)
        done = _converged(gm.group, trial, g, tol, r, new)  # at the floor: no descent
        bad = ~(np.isfinite(new) & ((new <= (1 - 1e-4 * t) * res) | done))
        if not bad.any():
            return trial, g, new
        t[bad] *= 0.5
        trial[bad] = u[bad] + t[bad, None] * step[bad]
        g = gm(trial)
    return trial, g, None


def _chain_line_search(gm: GroupMap, u: Array, step: Array, res: Array, tol: float,
                       trial: Array, g: Array) -> tuple[Array, Array, Array | None]:
    merit = float(res @ res)
    t = 1.0
    for _ in range(30):
        r = trial - g
        new = _norms(r)
        if np.all(np.isfinite(new)) and (float(new @ new) <= (1 - 1e-4 * t) * merit
                                         or np.all(_converged(gm.group, trial, g, tol, r,
                                                              new))):
            return trial, g, new
        t *= 0.5
        trial = u + t * step
        g = gm(trial)
    return trial, g, None


def solve_group(group: CyclicGroup, z: Array, options: ForwardOptions,
                inits: Mapping[int, Array]) -> BlockResult:
    """Solve every block of the group in place in z; the group's result, or
    raise (ConvergenceError, SingularSystemError) naming the stubborn block."""
    t0 = time.perf_counter()
    with np.errstate(all="ignore"):
        gm = GroupMap(group, z)
        warmup = WARMUP if (options.method or "auto") == "auto" else 0
        result = newton_group(gm, _starts(group, inits)[:, :gm.core.n], options.tolerance,
                              options.maxiter or NEWTON_MAXITER, warmup)
        raise_for(result)
        assert result.x is not None
        _finish(gm, result)
        raise_for(result)
        gm.write()
        result.factorization.map = gm  # at the solution: the linear solves start from it
    result.seconds = time.perf_counter() - t0
    result.residual = result.residuals[-1]
    result.extra["blocks"] = group.block_numbers
    return result


def _finish(gm: GroupMap, result: BlockResult) -> None:
    """Leave ``gm`` evaluated over the whole region at the solution of the core
    (result.x; its last call was there). The running sums left out of the core
    (groupcarry) are the cumulative sums of their terms: the steps left out,
    run with the sums at zero, give each element's term (the first element's
    with the value from outside added)."""
    n, n_u = gm.core.n, gm.group.n_u
    if n == n_u:
        return
    u = np.zeros((gm.b, n_u), order="F")
    u[:, :n] = result.x
    sums = prefix_sums(gm.complete(u))
    gm.zl[:, gm.group.n_w + n:] = sums
    bad = ~np.isfinite(sums).all(axis=1)
    if bad.any():
        _failed(gm.group, result, Status.NONFINITE, int(np.argmax(bad)), "a running sum "
                "carried along the group is not finite")


def _starts(group: CyclicGroup, inits: Mapping[int, Array]) -> Array:
    """U0 (B, n_U) from the unknowns' starting points (zeros where none); the
    array is rebuilt only when a starting point object changed. The same
    mapping as last time, of the same length (the program's own ``inits``
    when a solve is given none: entries are only ever added to it, for new
    unknowns), is not looked through again: B lookups a solve."""
    cached = group.cache.get("starts")
    if cached is not None and cached[2] is inits and cached[3] == len(inits):
        return cached[1].copy(order="F")
    found = list(map(inits.get, group.unknown_ids))
    if cached is not None and all(map(operator.is_, found, cached[0])):
        group.cache["starts"] = (found, cached[1], inits, len(inits))
        return cached[1].copy(order="F")
    sizes = [u.size for u in group.units[0].unknowns]
    u0 = np.zeros((group.size, group.n_u), order="F")
    per = len(sizes)
    for i, value in enumerate(found):
        if value is not None:
            k, j = divmod(i, per)
            a = sum(sizes[:j])
            u0[k, a:a + sizes[j]] = np.ravel(value)
    group.cache["starts"] = (found, u0, inits, len(inits))
    return u0.copy(order="F")


