"""The linear solves of a group of same-structure cyclic blocks.

A group's region (solve/grouped.py) is split into its unknowns U and the rest
W (connectors, interiors); its tangent and adjoint systems reduce to U:

    tangent  (M - C) zdot_U = b_U + [sweep with zdot_U = 0](b_W, outside)
    adjoint  (M - C)^T lam_U = b_U + [reverse sweep with lam_U = 0](b_W)

solved with the factorization of M - C = I - dG/dU made at the solution (the
same L and M, transposed for the adjoint: L^T y = c, lam_U = M^-T y); one more
sweep then recovers W. Every sweep is batched: a solve costs a fixed number of
numpy calls whatever B is.

That last sweep applies dG/dU to the solution through the map's own
derivative rules, independently of the assembled Jacobian the factorization
was made from (solve/groupjac.py), so it also gives the reduced system's
residual, for a few array operations. A residual above REFINE_TOL (relative
to the largest of its terms) is refined with the same factorization, a
stationary iteration on the exact residual that converges when the
factorization is only close to exact; one still above ACCEPT_TOL after
MAX_REFINE steps raises ConvergenceError. A wrong or badly conditioned
factorization therefore never gives a gradient silently (one Jacobian bug once
did: a lost coupling column, gradients off by 1e-2).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.compile.groups import CyclicGroup
from lagrad.errors import ConvergenceError, SingularSystemError
from lagrad.solve.groupcarry import prefix_sums, suffix_sums
from lagrad.solve.grouped import (
    GroupFactor,
    GroupMap,
    factorize,
    gather,
    outside_of,
    scatter,
    shift_of,
)
from lagrad.solve.results import BlockResult

__all__ = ["solve_linear", "solve_linear_rows", "REFINE_TOL", "ACCEPT_TOL", "MAX_REFINE"]

Array = NDArray[np.float64]
Outer = dict[tuple[int, int], Array]
REFINE_TOL = 1e-12
ACCEPT_TOL = 1e-10
MAX_REFINE = 8


def solve_linear(group: CyclicGroup, z: Array, vec: Array, transposed: bool,
                 factor: GroupFactor | None) -> BlockResult:
    """The region's step of a substitution sweep, in place in ``vec``: its rhs
    (and, for the tangent, the outside tangents) in, its solution (and, for the
    adjoint, its pullbacks to the outside) out."""
    t0 = time.perf_counter()
    u = z[group.u_positions]
    gm = None if factor is None else factor.map
    if gm is None or gm.z is not z or not np.array_equal(gm.zl[:, group.n_w:], u):
        gm = GroupMap(group, z)
        gm(np.asfortranarray(u))
    if factor is None:
        factor = _factorize_here(gm)
    rhs = gather(group, vec)
    result = BlockResult(group.name, "grouped", group.units[0].block.number,
                         iterations=1, reason="reuses the group's Newton factorization")
    x = _adjoint(gm, factor, rhs, vec, result) if transposed else \
        _tangent(gm, factor, rhs, vec, result)
    scatter(group, vec, x)
    result.reused_factorization = True
    result.extra["elements"] = group.size
    result.seconds = time.perf_counter() - t0
    return result


def solve_linear_rows(group: CyclicGroup, z: Array, x: Array, transposed: bool,
                      factor: GroupFactor | None) -> BlockResult:
    """:func:`solve_linear` for each row of ``x`` (k, n), one right-hand side
    per row (the multi-seed sweep's layout), in place: the factorization is
    made once when the forward solve left none, and reused for every row."""
    if factor is None:
        gm = GroupMap(group, z)
        gm(np.asfortranarray(z[group.u_positions]))
        factor = _factorize_here(gm)
        factor.map = gm
    results = [solve_linear(group, z, row, transposed, factor) for row in x]
    result = results[0] if results else BlockResult(group.name, "grouped",
                                                    group.units[0].block.number)
    result.iterations = len(results)
    result.extra["refinements"] = sum(r.extra.get("refinements", 0) for r in results)
    result.extra["right_hand_sides"] = len(results)
    result.seconds = sum(r.seconds for r in results)
    return result


def _factorize_here(gm: GroupMap) -> Any:
    made = factorize(gm)
    if isinstance(made, int):
        raise SingularSystemError(f"{gm.group.units[made].block.name}: I - J is singular "
                                  "at the solution; use method='lstsq'")
    return made


def _adjoint(gm: GroupMap, factor: Any, rhs: Array, vec: Array, result: BlockResult) -> Array:
    """Multipliers of the region: the running sums' first (read by nothing but
    the next sum: suffix sums of their rhs), then the core's from the
    factorization. ``rhs`` (the region's, gathered) is overwritten."""
    group, n_w, n = gm.group, gm.group.n_w, gm.core.n
    lam_u = np.zeros((gm.b, group.n_u), order="F")
    lam_u[:, n:] = suffix_sums(rhs[:, n_w + n:])
    b_u = rhs[:, n_w:n_w + n].copy(order="F")
    ll = rhs.copy(order="F")
    ll[:, n_w:] = 0.0
    outer = gm.vjp(ll, lam_u)
    c = b_u + ll[:, n_w:n_w + n]
    _scatter(gm, outer, c, None)
    lam_u[:, :n] = factor.solve(c, transposed=True)
    ll = rhs  # gathered for this solve and not read again: reused
    ll[:, n_w:] = 0.0
    outer = gm.vjp(ll, lam_u)  # W's multipliers; its U part is c - b_u + (dG/dU)^T lam_U
    applied = ll[:, n_w:n_w + n].copy(order="F")
    _scatter(gm, outer, applied, vec)
    residual = b_u + applied - lam_u[:, :n]
    scale = _largest(c, applied, lam_u)

    def correct(r: Array) -> Array:
        delta = np.zeros((gm.b, group.n_u), order="F")
        delta[:, :n] = factor.solve(r, transposed=True)
        lam_u[:, :n] += delta[:, :n]
        more = np.zeros_like(ll)
        outer = gm.vjp(more, delta)
        ll[:, :n_w] += more[:, :n_w]
        applied = more[:, n_w:n_w + n].copy(order="F")
        _scatter(gm, outer, applied, vec)
        return r - delta[:, :n] + applied
    _refine(gm.group, "adjoint", residual, scale, correct, result)
    ll[:, n_w:] = lam_u
    return ll


def _tangent(gm: GroupMap, factor: Any, rhs: Array, vec: Array, result: BlockResult) -> Array:
    group, n_w = gm.group, gm.group.n_w
    outer_t = {}
    for p, step in enumerate(group.steps):
        for a, arg in enumerate(step.args):
            if arg[0] == "outer":
                outer_t[(p, a)] = vec[arg[1]].reshape((gm.b,) + arg[2])
    n = gm.core.n
    tl = rhs.copy(order="F")
    tl[:, n_w:] = 0.0
    c = rhs[:, n_w:n_w + n] + gm.jvp(tl, _with_cross(gm, outer_t, None))[:, :n]
    x_u = np.zeros((gm.b, group.n_u), order="F")
    x_u[:, :n] = factor.solve(c, transposed=False)
    tl = rhs.copy(order="F")
    tl[:, n_w:] = x_u
    gd = gm.jvp(tl, _with_cross(gm, outer_t, x_u))  # its U part: c - b_U + (dG/dU) x_U
    residual = rhs[:, n_w:n_w + n] + gd[:, :n] - x_u[:, :n]
    scale = _largest(c, gd[:, :n], x_u)
    crossed = {key: np.zeros_like(t) for key, t in outer_t.items()
               if group.steps[key[0]].args[key[1]][3] is not None}

    def correct(r: Array) -> Array:
        delta = np.zeros((gm.b, group.n_u), order="F")
        delta[:, :n] = factor.solve(r, transposed=False)
        x_u[:, :n] += delta[:, :n]
        more = np.zeros_like(tl)
        more[:, n_w:] = delta
        moved = gm.jvp(more, _with_cross(gm, crossed, delta))
        tl[:, :n_w] += more[:, :n_w]
        gd[...] += moved
        return r - delta[:, :n] + moved[:, :n]
    _refine(group, "tangent", residual, scale, correct, result)
    tl[:, n_w:] = x_u
    if n < group.n_u:  # running sums (groupcarry): of their tangents with the core's
        tl[:, n_w + n:] = prefix_sums(rhs[:, n_w + n:] + gd[:, n:])
    return tl


def _largest(*arrays: Array) -> float:
    """The largest magnitude among the terms of a residual: it is relative to
    them (a map with large derivatives makes large terms, and rounding in
    their sum)."""
    return max(_magnitude(a) for a in arrays)


def _magnitude(a: Array) -> float:
    """max |a| without a temporary (NaN when a holds one: max and min propagate it)."""
    return max(float(a.max(initial=0.0)), -float(a.min(initial=0.0)))


def _refine(group: CyclicGroup, kind: str, residual: Array, scale: float,
            correct: Any, result: BlockResult) -> None:
    """Refine while the relative residual is above REFINE_TOL (``correct(r)``
    adds the factorization's correction for r and returns the new residual);
    raise ConvergenceError when it stays above ACCEPT_TOL. A non-finite
    residual is left to the sweep's own checks of non-finite values."""
    scale = max(scale, np.finfo(float).tiny)
    error = _magnitude(residual) / scale
    steps = 0
    while error > REFINE_TOL and steps < MAX_REFINE:
        residual = correct(residual)
        steps += 1
        error = _magnitude(residual) / scale
    result.extra["refinements"] = steps
    result.extra["relative_residual"] = error
    if error > ACCEPT_TOL:
        raise ConvergenceError(
            f"{group.name}: the grouped {kind} solve left a relative residual of {error:.1e} "
            f"after {steps} refinements with the Newton factorization; solve the blocks one by "
            "one instead (method='splu')")


def _scatter(gm: GroupMap, outer: Outer, into_u: Array | None, into_vec: Array | None) -> None:
    """Outer cotangents: cross reads into the source elements' U (``into_u``,
    the core's columns: a running sum's read of the one before is its suffix
    sum), everything else into the flat vector (``into_vec``)."""
    group = gm.group
    for (p, a), ct in outer.items():
        arg = group.steps[p].args[a]
        cross = arg[3]
        if into_u is not None and cross is not None and cross.u.stop <= into_u.shape[1]:
            d = shift_of(group, cross)
            if d:  # element k read element k - d: a slice, no scattered add
                into_u[:-d, cross.u] += ct[d:]
            else:
                inside = cross.mask
                np.add.at(into_u, (cross.source[inside][:, None],
                                   np.arange(cross.u.start, cross.u.stop)[None, :]),
                          ct[inside])
        if into_vec is None:
            continue
        if cross is None:
            add_outer(group, (p, a), into_vec, arg[1], ct)
        else:
            rest = outside_of(group, cross)
            if rest.size:
                np.add.at(into_vec, arg[1][rest], ct[rest])


def add_outer(group: CyclicGroup, key: tuple[int, int], vec: Array, pos: NDArray[np.intp],
              ct: Array) -> None:
    """vec[pos] += ct with repeated positions summed: one sum when every
    element reads the same entries (an input all blocks share), a plain
    indexed add when no position repeats, else ``np.add.at``."""
    kind = group.cache.get(("outer kind", key))
    if kind is None:
        if np.all(pos == pos[0]):
            kind = "same"
        else:
            kind = "distinct" if np.unique(pos).size == pos.size else "repeated"
        group.cache[("outer kind", key)] = kind
    if kind == "same":
        vec[pos[0]] += ct.sum(axis=0)
    elif kind == "distinct":
        vec[pos] += ct
    else:
        np.add.at(vec, pos, ct)


def _with_cross(gm: GroupMap, outer_t: Outer, x_u: Array | None) -> Outer:
    """Outer tangents with the cross reads' entries taken from ``x_u`` (zero
    when None): inside the region they are unknowns being solved for."""
    out = dict(outer_t)
    for (p, a), t in outer_t.items():
        cross = gm.group.steps[p].args[a][3]
        if cross is None:
            continue
        t = t.copy()
        flat = t.reshape(gm.b, -1)
        flat[cross.mask] = 0.0 if x_u is None else x_u[cross.source[cross.mask], cross.u]
        out[(p, a)] = t
    return out
