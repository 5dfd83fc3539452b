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

__all__ = ["ForwardOptions", "LinearOptions", "BackwardOptions", "FORWARD_METHODS",
           "BACKWARD_MODES", "DEFAULT_TOL", "DEFAULT_STEPS"]

DEFAULT_TOL = 1e-13
"""Relative tolerance of the nonlinear and iterative linear solves."""

FORWARD_METHODS = ("auto", "newton", "fixed_point", "anderson")
"""Names of the forward (nonlinear) block methods; :mod:`lagrad.solve.nonlinear`
holds the table that implements them."""

BACKWARD_MODES = ("implicit", "unrolled", "neumann", "phantom", "jfb")
"""Names of the backward modes of a cyclic block; "implicit" is the exact
adjoint solve, the others are truncations of its Neumann series, which
:mod:`lagrad.solve.blocksolve` implements as block methods of the same names."""

DEFAULT_STEPS = 10
"""Terms of an "unrolled" or "neumann" backward mode given without ``steps``."""


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


@dataclass(frozen=True)
class BackwardOptions:
    """How the multipliers of a cyclic block are computed (its backward mode).

    Attributes
    ----------
    mode : {"implicit", "unrolled", "neumann", "phantom", "jfb"}
        "implicit" (default): the exact adjoint solve of the block.
        "unrolled": backpropagation through ``steps`` steps of the block's map
        z_U <- G(z_U) taken from the fixed point, i.e. lambda_U =
        sum_{k < K} (dG/dz_U^T)^k c, exactly K terms.
        "neumann": the same series, at most ``steps`` terms, stopping early
        once it has converged to the linear tolerance.
        "phantom" / "jfb": one term, lambda_U = c (Jacobian-free backprop:
        (I - dG/dz_U)^-T replaced by the identity).
    steps : int or None
        K, the number of terms ("unrolled", "neumann"; default
        :data:`DEFAULT_STEPS`); "phantom" and "jfb" take 1 only, "implicit" none.

    Notes
    -----
    A truncated mode returns no ConvergenceError: truncation is the point. Its
    block result (``sol.adjoint_diagnostics``) has status ``TRUNCATED`` and an
    a-posteriori ``extra["error_estimate"]`` of its multipliers' error.
    """

    mode: str = "implicit"
    steps: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.mode, str) or self.mode not in BACKWARD_MODES:
            raise OptionError(f"unknown backward mode {self.mode!r}; choose one of "
                              f"{list(BACKWARD_MODES)}")
        steps = check_maxiter(self.steps, f"backward mode {self.mode!r}: steps")
        if steps is not None and self.mode == "implicit":
            raise OptionError("backward mode 'implicit' takes no steps (it solves exactly); "
                              "use 'unrolled' or 'neumann' for a truncated series")
        if steps not in (None, 1) and self.mode in ("phantom", "jfb"):
            raise OptionError(f"backward mode {self.mode!r} is one step; got steps={steps} "
                              "(use 'unrolled' for more)")
        object.__setattr__(self, "steps", steps)

    @classmethod
    def resolve(cls, value: Any, where: str) -> BackwardOptions | None:
        """``value`` (None, a mode name, ``(mode, steps)`` or BackwardOptions) as
        BackwardOptions (None stays None); anything else raises OptionError."""
        if value is None or isinstance(value, cls):
            return value
        try:
            if isinstance(value, str):
                return cls(value)
            if isinstance(value, tuple) and len(value) == 2:
                return cls(*value)
        except OptionError as err:
            raise OptionError(f"{where}: {err}") from None
        raise OptionError(f"{where}: backward must be a mode name {list(BACKWARD_MODES)}, a "
                          f"tuple (mode, steps) or BackwardOptions, got {value!r}")

    @property
    def truncated(self) -> bool:
        """True for every mode but the exact "implicit" one."""
        return self.mode != "implicit"

    @property
    def terms(self) -> int:
        """K, the number of Neumann terms the mode takes."""
        if self.mode in ("phantom", "jfb"):
            return 1
        return DEFAULT_STEPS if self.steps is None else self.steps

    def linear_options(self, options: LinearOptions) -> LinearOptions:
        """``options`` with maxiter = K: how the block method receives K."""
        return LinearOptions(options.tol, self.terms, options.preconditioner)
