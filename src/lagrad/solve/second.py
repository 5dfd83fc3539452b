"""Second order: the multiplier system differentiated along a tangent.

With z(x) satisfying the constraints and lambda(x) solving
(I - J)^T lambda = e_n, the gradient is lambda on the inputs. Along an input
direction v, z moves by zdot, the solution of the tangent system
(I - J) zdot = e_v, and differentiating the multiplier equations gives

    (I - J)^T lambdadot - (dJ/dt)^T lambda = 0,
    ((dJ/dt)^T lambda)_j = sum_i lambda_i sum_k d^2 f_i / dz_j dz_k zdot_k,

(e_n does not move). So lambdadot solves the multiplier system again, with
the second-order right-hand side built equation by equation from each
primitive's second derivative (``Step.pullback_jvp``), and its input part is
the Hessian-vector product H v: forward over reverse, one tangent solve and
one adjoint solve. Inside a cyclic block both are linear solves with the same
I - J_SS as the multipliers', so :func:`~lagrad.solve.linsolve.solve_system`
handles them (reusing the forward solve's factorization) given the vector.
Many directions (a Hessian's columns) share both matrices: they are solved
as systems with a block of right-hand sides (:func:`multiplier_tangents`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from lagrad.compile.schedule import Schedule
from lagrad.solve.linsolve import SolveInfo, solve_system
from lagrad.solve.system import System

__all__ = ["second_order_rhs", "MultiplierTangent", "multiplier_tangent",
           "multiplier_tangents"]

Array = NDArray[np.float64]


def second_order_rhs(schedule: Schedule, z: Array, zdot: Array, lam: Array) -> Array:
    """(dJ/dt)^T lambda along the tangent ``zdot``, flat in the schedule's index.

    Raises
    ------
    MissingDerivativeError
        If an equation's primitive has no second-order rule.
    """
    rhs = np.zeros(schedule.size)
    for step in schedule.steps:
        step.pullback_jvp(z, zdot, lam, rhs)
    return rhs


class MultiplierTangent(NamedTuple):
    """The derivatives of z and lambda along one direction, and their solves."""

    zdot: Array
    lamdot: Array
    tangent_info: SolveInfo
    adjoint_info: SolveInfo


def multiplier_tangent(sol: Any, lam: Array, direction: Array, method: Any = "auto",
                       options: Any = None) -> MultiplierTangent:
    """Differentiate the solution ``sol`` and its multipliers ``lam`` along the
    flat input direction ``direction`` (zero outside the inputs).

    Parameters
    ----------
    sol : Solution
        A solved program (values ``sol.z``, forward results ``sol.diagnostics``).
    lam : ndarray
        Its multipliers, the solution of (I - J)^T lambda = e_n.
    direction : ndarray
        e_v: the input direction, in the flat index.
    method, options
        The linear method and its options, as :func:`solve_system` takes them,
        for both solves.

    Returns
    -------
    MultiplierTangent
        ``zdot``, ``lamdot`` (its input part is H v) and the two solves' info.
    """
    schedule = sol.schedule
    tangent = System(schedule, sol.z, "tangent", direction, sol.diagnostics)
    zdot, tangent_info = solve_system(tangent, method, options, compute_residual=False)
    rhs = second_order_rhs(schedule, sol.z, zdot, lam)
    adjoint = System(schedule, sol.z, "adjoint", rhs, sol.diagnostics, sol.backward)
    lamdot, adjoint_info = solve_system(adjoint, method, options, compute_residual=False)
    return MultiplierTangent(zdot, lamdot, tangent_info, adjoint_info)


def multiplier_tangents(sol: Any, lam: Array, directions: Array, method: Any = "auto",
                        options: Any = None) -> tuple[Array, Array]:
    """:func:`multiplier_tangent` for k directions at once, the columns of
    ``directions`` (n, k): the tangent and the adjoint solves each take all k
    right-hand sides together (one sweep, each cyclic block factorized or
    iterated once); the second-order right-hand sides are built column by
    column. Returns ``(zdot, lamdot)``, both (n, k): the columns of H on the
    inputs are ``lamdot``'s input rows."""
    schedule = sol.schedule
    tangent = System(schedule, sol.z, "tangent", directions, sol.diagnostics)
    zdot = solve_system(tangent, method, options, compute_residual=False).x
    rhs = np.empty_like(zdot)
    for j in range(zdot.shape[1]):
        rhs[:, j] = second_order_rhs(schedule, sol.z, np.ascontiguousarray(zdot[:, j]), lam)
    adjoint = System(schedule, sol.z, "adjoint", rhs, sol.diagnostics, sol.backward)
    return zdot, solve_system(adjoint, method, options, compute_residual=False).x
