"""Satisfy the constraints and solve the multiplier and tangent systems:
forward evaluation, nonlinear block solves, linear solves inside cyclic
blocks, the System and the Solution.

The solver interface in one place: :class:`Status` and :class:`BlockResult`
(what every block solve returns), :func:`solve_system` (the one entry point
of linear solves), :class:`System` with its :class:`Orientation`.
"""

from lagrad.solve.linsolve import METHODS, SolveInfo, SystemSolution, solve_system
from lagrad.solve.results import BlockResult, Status
from lagrad.solve.system import ADJOINT, TANGENT, Orientation, System

__all__ = ["Status", "BlockResult", "solve_system", "SolveInfo", "SystemSolution", "METHODS",
           "System", "Orientation", "ADJOINT", "TANGENT"]
