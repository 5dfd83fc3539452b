"""Typed, validated options of the solvers.

Options are checked once, where they are given (``program.solve(tol=...)``,
``program.unknown(maxiter=...)``, ``sol.grad(method, tol=...)``): a wrong type
or value, or an unknown name, raises :class:`~lagrad.OptionError` naming it.
``None`` means "not given" (the method's default applies); every given value
is used as given, so ``tol=0`` asks for an exact solve.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from lagrad.errors import OptionError

__all__ = ["ForwardOptions", "LinearOptions", "FORWARD_METHODS", "DEFAULT_TOL"]

DEFAULT_TOL = 1e-13
"""Relative tolerance of the nonlinear and iterative linear solves."""

FORWARD_METHODS = ("auto", "newton", "fixed_point", "anderson")
"""Names of the forward (nonlinear) block methods; :mod:`lagrad.solve.nonlinear`
holds the table that implements them."""


def check_tol(tol: Any, where: str) -> float | None:
    """``tol`` as a float (None stays None); a negative, non-finite or non-numeric
    value raises OptionError."""
    if tol is None:
        return None
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real):
        raise OptionError(f"{where}: tol must be a real number >= 0, got {tol!r}")
    value = float(tol)
    if not (value >= 0 and math.isfinite(value)):
        raise OptionError(f"{where}: tol must be a finite number >= 0, got {tol!r}")
    return value


def check_maxiter(maxiter: Any, where: str) -> int | None:
    """``maxiter`` as an int >= 1 (None stays None), else OptionError."""
    if maxiter is None:
        return None
    if isinstance(maxiter, bool) or not isinstance(maxiter, numbers.Integral):
        raise OptionError(f"{where}: maxiter must be an integer >= 1, got {maxiter!r}")
    if maxiter < 1:
        raise OptionError(f"{where}: maxiter must be at least 1, got {maxiter!r}")
    return int(maxiter)


@dataclass(frozen=True)
class ForwardOptions:
    """How a cyclic block's nonlinear solve runs.

    Attributes
    ----------
    method : {"auto", "newton", "fixed_point", "anderson"} or None
    tol : float or None
        Relative tolerance: ||G(z_U) - z_U|| <= tol * max(1, ||z_U||).
    maxiter : int or None
        Iteration limit (None: the method's own default).
    """

    method: str | None = None
    tol: float | None = None
    maxiter: int | None = None

    def __post_init__(self) -> None:
        where = "forward solve"
        if self.method is not None and (not isinstance(self.method, str)
                                        or self.method not in FORWARD_METHODS):
            raise OptionError(f"unknown forward method {self.method!r}; choose one of "
                              f"{sorted(FORWARD_METHODS)}")
        object.__setattr__(self, "tol", check_tol(self.tol, where))
        object.__setattr__(self, "maxiter", check_maxiter(self.maxiter, where))

    def over(self, fallback: ForwardOptions) -> ForwardOptions:
        """These options, with ``fallback``'s values where these are not given."""
        if self.method is None and self.tol is None and self.maxiter is None:
            return fallback
        given = {f.name: getattr(self, f.name) for f in fields(self)
                 if getattr(self, f.name) is not None}
        return replace(fallback, **given)

    @property
    def tolerance(self) -> float:
        return DEFAULT_TOL if self.tol is None else self.tol


@dataclass(frozen=True)
class LinearOptions:
    """Options of the linear solves inside cyclic blocks.

    Attributes
    ----------
    tol : float or None
        Relative residual tolerance of the iterative methods (default 1e-13).
    maxiter : int or None
        Iteration limit of the iterative methods (None: the method's default).
    preconditioner : LinearOperator, matrix or None
        Passed to scipy's Krylov solvers as ``M``.
    """

    tol: float | None = None
    maxiter: int | None = None
    preconditioner: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tol", check_tol(self.tol, "linear solve"))
        object.__setattr__(self, "maxiter", check_maxiter(self.maxiter, "linear solve"))

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any], method: str) -> LinearOptions:
        """Options given as keywords to ``method``; unknown names raise OptionError."""
        names = {f.name for f in fields(cls)}
        unknown = set(options) - names
        if unknown:
            raise OptionError(f"method {method!r}: unknown options {sorted(unknown)}; "
                              f"accepted: {sorted(names)}")
        where = f"method {method!r}"
        check_tol(options.get("tol"), where)  # named by the method they were given to
        check_maxiter(options.get("maxiter"), where)
        return cls(**options)

    @property
    def given(self) -> bool:
        """True when any option was given."""
        return self.tol is not None or self.maxiter is not None or \
            self.preconditioner is not None

    @property
    def tolerance(self) -> float:
        return DEFAULT_TOL if self.tol is None else self.tol
