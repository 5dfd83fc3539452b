"""What a block solve returns: one result type with a status, for every method
of every role (the forward nonlinear solve, the adjoint and tangent linear
solves inside a cyclic block).

A method never raises for not converging: it returns its result with a
:class:`Status`, and the caller decides (the ``auto`` policies move on to the
next method; everything else raises with :func:`raise_for`). So a result that
reaches a user has status ``CONVERGED``, or ``TRUNCATED`` when a truncated
backward mode ("unrolled", "neumann", "phantom") was asked for: then
``extra["error_estimate"]`` says how far its multipliers may be off.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.errors import (
    ConvergenceError,
    NonFiniteError,
    NonFiniteSolveError,
    SingularSystemError,
    SolveError,
)

__all__ = ["Status", "BlockResult", "raise_for"]

Array = NDArray[np.float64]


class Status(enum.Enum):
    """How a block solve ended. A failed result's ``message`` says what to do."""

    CONVERGED = "converged"
    MAX_ITERATIONS = "max_iterations"  # stopped at maxiter before the tolerance
    BREAKDOWN = "breakdown"  # diverged, stagnated, or gave up as too slow
    SINGULAR = "singular"  # (I - J) of the block is (numerically) singular
    NONFINITE = "nonfinite"  # a value became NaN or infinite
    TRUNCATED = "truncated"  # a truncated backward mode stopped after its K terms, as asked


_ERRORS: dict[Status, type[SolveError] | type[NonFiniteError]] = {
    Status.MAX_ITERATIONS: ConvergenceError, Status.BREAKDOWN: ConvergenceError,
    Status.SINGULAR: SingularSystemError, Status.NONFINITE: NonFiniteSolveError,
}


@dataclass
class BlockResult:
    """The outcome of one solve of one cyclic block.

    Attributes
    ----------
    block : str
        The block's name, ``block 3 (z)``.
    number : int
        The block's number (its position in ``program.blocks``).
    method : str
        The method that produced the result (for ``auto``, the one it chose).
    status : Status
    iterations : int
    residual : float
        Final residual: relative for a linear solve; ||G(z_U) - z_U|| for a
        forward solve (see ``residuals`` for its history).
    seconds : float
    reason : str
        Why ``auto`` chose the method ("requested" when it was asked for).
    message : str
        What happened, in words (for a failure: the error's text).
    residuals : list of float
        Forward solves: the residual at every iteration.
    contraction : float or None
        Forward fixed-point iterations: the observed rate ||r_k+1|| / ||r_k||.
    factorization : object or None
        Forward Newton solves: the LU factors of (I - J_SS) at the solution,
        which the adjoint and tangent solves reuse.
    reused_factorization : bool
        Linear solves: the forward factorization was reused.
    condition : float or None
        Estimated condition number, where the method computes one.
    extra : dict
        Method-specific figures (rank, observed rate, ...).
    """

    block: str
    method: str
    number: int = -1
    status: Status = Status.CONVERGED
    iterations: int = 0
    residual: float = 0.0
    seconds: float = 0.0
    reason: str = ""
    message: str = ""
    residuals: list[float] = field(default_factory=list)
    contraction: float | None = None
    factorization: Any = field(default=None, repr=False)
    reused_factorization: bool = False
    condition: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    x: Array | None = field(default=None, repr=False)

    @property
    def converged(self) -> bool:
        return self.status is Status.CONVERGED

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the LU factors (scipy's SuperLU does not pickle; a
        later solve factorizes again)."""
        return {**self.__dict__, "factorization": None}


def raise_for(result: BlockResult) -> None:
    """Raise the error that a result's status calls for (nothing if converged)."""
    if result.converged or result.status is Status.TRUNCATED:
        return
    raise _ERRORS[result.status](f"{result.block}: {result.message}")
