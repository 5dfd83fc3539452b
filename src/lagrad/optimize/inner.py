"""The inner minimization of the relaxed methods: L_mu over (x, z) at fixed
lambda and mu, by L-BFGS-B in coordinates preconditioned by the program's
own I - J.

Over z itself the problem is badly conditioned: the penalty
(mu / 2) ||c(z)||^2 couples each variable to its parents, so along a chain
of T equations its curvature spreads over a range growing like T^2, and
L-BFGS-B needs thousands of steps. The change of variables, with
A = I - J at the point z_k where the inner minimization starts (D the
defined positions, X the optimized inputs),

    z_X = z_kX + dx,    z_D = z_kD + A_DD^{-1} (w / sqrt(mu) + J_DX dx),

makes c(z) = c(z_k) + w / sqrt(mu) to first order, so the penalty is
||w||^2 / 2 plus higher-order terms, and the objective in (dx, w) is, to
first order, the program's reduced objective in x. The map is linear and
fixed during one inner minimization, so the gradient is exact: with
g = dL_mu / dz (one product with the program's (I - J)^T at z) and
y = A_DD^{-T} g_D,

    dL/dw = y / sqrt(mu),    dL/ddx = g_X + J_DX^T y.

A_DD is the assembled sparse block of I - J at z_k, factorized once per inner
minimization (unit lower triangular in program order for an acyclic program,
so the factorization has no fill-in). If it is singular (a cyclic block at a
relaxed point), z itself is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.optimize
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from numpy.typing import NDArray

from lagrad.errors import NonFiniteError
from lagrad.optimize.relaxation import Relaxation

__all__ = ["minimize_inner"]

Array = NDArray[np.float64]


class _Lagrangian:
    """L_mu and its gradient in z, at fixed lambda and mu."""

    def __init__(self, rel: Relaxation, lam: Array, mu: float) -> None:
        self.rel, self.lam, self.mu = rel, lam, mu
        self.evaluations = 0
        self.last: tuple[Array, float] = (np.empty(0), np.inf)

    def __call__(self, z: Array) -> tuple[float, Array]:
        """(L_mu(z), dL_mu/dz), or (inf, 0) where z leaves the domain."""
        self.evaluations += 1
        rel = self.rel
        c = rel.residual(z)
        self.last = (z, float(np.linalg.norm(c[rel.defined])))
        try:
            phi, seed = rel.objective(z)
            g = seed - rel.rmatvec(z, self.lam - self.mu * c, c)
        except NonFiniteError:  # a trial step left the domain: reject it
            return np.inf, np.zeros_like(z)
        value = phi - self.lam @ c + 0.5 * self.mu * (c @ c)
        if not (np.isfinite(value) and np.all(np.isfinite(g))):
            return np.inf, np.zeros_like(z)
        return float(value), g

    def violation(self, z: Array) -> float:
        """||c(z)|| (from the last evaluation when it was at z)."""
        if self.last[0].shape == z.shape and np.array_equal(self.last[0], z):
            return self.last[1]
        return float(np.linalg.norm(self.rel.residual(z)[self.rel.defined]))


class _Coordinates:
    """The preconditioned coordinates v = (dx, w) around z_k (see the module)."""

    def __init__(self, rel: Relaxation, z: Array, mu: float) -> None:
        self.z0 = z
        self.d = np.flatnonzero(rel.defined)
        self.x = np.asarray(rel.x_positions)
        jac = rel.jacobian(z).tocsc()
        a_dd = (sp.identity(self.d.size, format="csc") - jac[self.d][:, self.d]).tocsc()
        self.j_dx = jac[self.d][:, self.x].tocsr()
        self.j_xd = self.j_dx.T.tocsr()
        self.lu = spla.splu(a_dd, permc_spec="NATURAL")
        self.scale = 1.0 / np.sqrt(mu)

    def point(self, v: Array) -> Array:
        nx = self.x.size
        dx, w = v[:nx], v[nx:]
        z = self.z0.copy()
        z[self.x] += dx
        z[self.d] += self.lu.solve(self.scale * w + self.j_dx @ dx)
        return z

    def gradient(self, g: Array) -> Array:
        y = self.lu.solve(g[self.d], trans="T")
        return np.concatenate([g[self.x] + self.j_xd @ y, self.scale * y])

    def start(self) -> Array:
        return np.zeros(self.x.size + self.d.size)


def _coordinates(rel: Relaxation, z: Array, mu: float) -> _Coordinates | None:
    """The coordinates around z, or None where they do not exist."""
    if not rel.defined.any():
        return None
    try:
        coords = _Coordinates(rel, z, mu)
    except (RuntimeError, ValueError, NonFiniteError):  # A_DD singular, J not finite at z
        return None
    probe = coords.point(coords.start() + 1e-3)
    return coords if np.all(np.isfinite(probe)) else None


RELINEARIZE = 50
"""L-BFGS-B iterations between two re-linearizations of the coordinates (J at
the current point, refactorized): far from z_k the first J is stale."""


def minimize_inner(rel: Relaxation, z: Array, lam: Array, mu: float,
                   options: Mapping[str, Any], limit: float = np.inf,
                   precondition: bool = True) -> tuple[Array, int]:
    """Minimize L_mu(.; lambda) over the free positions from ``z`` by L-BFGS-B.

    In the preconditioned coordinates, re-linearized every
    :data:`RELINEARIZE` iterations, up to ``options["maxiter"]`` iterations in
    all. The minimization stops early at an iterate whose violation ||c(z)||
    exceeds ``limit`` (mu too weak to hold the constraints: the caller grows
    it). Returns the point reached (a new flat z) and the number of evaluations.
    """
    lagrangian = _Lagrangian(rel, lam, mu)
    budget = int(options.get("maxiter", 15000))
    while True:
        coords = _coordinates(rel, z, mu) if precondition else None
        chunk = budget if coords is None else min(budget, RELINEARIZE)
        res, z = _lbfgs(lagrangian, rel, z, coords, {**options, "maxiter": chunk}, limit)
        budget -= res.nit
        if res.status != 1 or budget <= 0 or lagrangian.violation(z) > limit:
            return z, lagrangian.evaluations


def _lbfgs(lagrangian: _Lagrangian, rel: Relaxation, z: Array, coords: _Coordinates | None,
           options: Mapping[str, Any], limit: float
           ) -> tuple[scipy.optimize.OptimizeResult, Array]:
    """One run of L-BFGS-B from z in the coordinates ``coords`` (None: z itself)."""
    if coords is None:
        def point(v: Array) -> Array:
            out = z.copy()
            out[rel.free] = v
            return out

        def fun(v: Array) -> tuple[float, Array]:
            value, g = lagrangian(point(v))
            return value, g[rel.free]
        start = z[rel.free]
    else:
        point, start = coords.point, coords.start()

        def fun(v: Array) -> tuple[float, Array]:
            value, g = lagrangian(coords.point(v))
            return (value, np.zeros_like(v)) if not np.isfinite(value) else \
                (value, coords.gradient(g))

    def watch(intermediate_result: scipy.optimize.OptimizeResult) -> None:
        if lagrangian.violation(point(intermediate_result.x)) > limit:
            raise StopIteration
    res = scipy.optimize.minimize(fun, start, jac=True, method="L-BFGS-B", callback=watch,
                                  options=dict(options))
    return res, point(res.x)
