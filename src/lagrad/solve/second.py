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

from lagrad.compile.schedule import CyclicBlock, Schedule, Single
from lagrad.errors import OptionError
from lagrad.solve.linsolve import SolveInfo, solve_system
from lagrad.solve.solution import truncated_backward
from lagrad.solve.system import System

__all__ = ["second_order_rhs", "second_order_rhs_many", "MultiplierTangent",
           "multiplier_tangent", "multiplier_tangents"]

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
    _exact_adjoints(sol)
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
    iterated once), and so are the second-order right-hand sides
    (:func:`second_order_rhs_many`). Returns ``(zdot, lamdot)``, both (n, k):
    the columns of H on the inputs are ``lamdot``'s input rows."""
    _exact_adjoints(sol)
    schedule = sol.schedule
    tangent = System(schedule, sol.z, "tangent", directions, sol.diagnostics)
    zdot = solve_system(tangent, method, options, compute_residual=False).x
    rhs = second_order_rhs_many(schedule, sol.z, zdot, lam)
    adjoint = System(schedule, sol.z, "adjoint", rhs, sol.diagnostics, sol.backward)
    return zdot, solve_system(adjoint, method, options, compute_residual=False).x


def _exact_adjoints(sol: Any) -> None:
    """Second derivatives differentiate the exact multiplier equations; with a
    truncated backward mode the multipliers are a truncated series, whose own
    derivative is another formula: mixing the two gave numbers that were
    neither the exact Hessian nor the derivative of the truncated gradient."""
    truncated = truncated_backward(sol)
    if truncated is not None:
        raise OptionError(f"second derivatives (hessian, hvp): {truncated}; they are defined "
                          "for the exact adjoint only: pass backward='implicit' for this "
                          "solve (solve_options={'backward': 'implicit'}) for the exact "
                          "Hessian, or difference the truncated gradient")


def second_order_rhs_many(schedule: Schedule, z: Array, zdot: Array, lam: Array) -> Array:
    """:func:`second_order_rhs` for the k tangents in the columns of ``zdot``
    (n, k), returned as (n, k). An elementwise equation with no broadcasting
    computes its second partials once for all k columns; any other step runs
    column by column."""
    k = zdot.shape[1]
    x = np.ascontiguousarray(zdot.T)  # (k, n): each tangent a contiguous row
    out = np.zeros_like(x)
    for step in schedule.steps:
        for inner in step.steps if isinstance(step, CyclicBlock) else (step,):
            if not (isinstance(inner, Single) and _pull_jvp_many(inner, z, x, lam, out)):
                for j in range(k):
                    inner.pullback_jvp(z, x[j], lam, out[j])
    return out.T


def _pull_jvp_many(step: Single, z: Array, x: Array, lam: Array, out: Array) -> bool:
    """``step.pullback_jvp`` for the k tangents in the rows of ``x`` at once,
    added into the rows of ``out``; False (nothing done) unless the step is
    elementwise with a second-order rule and every variable argument has the
    output's shape (no broadcasting to undo)."""
    prim, shape = step.eq.primitive, step.shape
    if prim.constant_partials is not None:
        return True  # linear: no second-order term
    if prim.partials is None or prim.second is None or \
            any(s != shape for _, _, _, s in step.vslots):
        return False
    g = lam[step.start:step.stop].reshape(shape)
    if not step.dslots or not g.any():
        return True
    k = x.shape[0]
    ans, args, params = z[step.start:step.stop].reshape(shape), step.gather(z), step.eq.params
    ts = [(m, x[:, a:b].reshape((k, *shape))) for m, a, b, _ in step.vslots]
    for pos, a, b, _ in step.dslots:
        total = sum(prim.second_partials(pos, m, ans, args, params) * t for m, t in ts)
        out[:, a:b] += (g * total).reshape(k, b - a)
    return True
