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

__all__ = ["ForwardOptions", "LinearOptions", "BackwardOptions", "AdjointOptions", "SolveOptions",
           "FORWARD_METHODS", "BACKWARD_MODES", "BLOCK_LINEAR_METHODS", "DEFAULT_TOL",
           "DEFAULT_STEPS", "PETSC_MAT_TYPES", "PETSC_OPTIONS"]

DEFAULT_TOL = 1e-13
"""Relative tolerance of the nonlinear and iterative linear solves."""

FORWARD_METHODS = ("auto", "newton", "fixed_point", "anderson", "petsc")
"""Names of the forward (nonlinear) block methods; :mod:`lagrad.solve.nonlinear`
holds the table that implements them."""

BACKWARD_MODES = ("implicit", "unrolled", "neumann", "phantom", "jfb")
"""Names of the backward modes of a cyclic block; "implicit" is the exact
adjoint solve, the others are truncations of its Neumann series, which
:mod:`lagrad.solve.blocksolve` implements as block methods of the same names."""

DEFAULT_STEPS = 10
PETSC_MAT_TYPES = ("aij", "python")
"""Method "petsc": the operator assembled (distributed AIJ) or matrix-free."""
PETSC_OPTIONS = ("ksp_type", "pc_type", "mat_type", "petsc_options")
"""The :class:`LinearOptions` fields that only method "petsc" takes."""
"""Terms of an "unrolled" or "neumann" backward mode given without ``steps``."""


BLOCK_LINEAR_METHODS = ("auto", "splu", "dense", "lstsq", "gmres", "bicgstab", "lgmres",
                        "fixed_point", "reduced_lu", "petsc")
"""Names of the linear methods inside one cyclic block (its adjoint and tangent
solves); :mod:`lagrad.solve.blocksolve` holds the table that implements them."""


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
    method : {"auto", "newton", "fixed_point", "anderson", "petsc"} or None
        "petsc": Newton's method with PETSc KSP steps (needs petsc4py).
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
    ksp_type, pc_type : str or None
        Method "petsc" only: the PETSc Krylov method and preconditioner
        (``"gmres"``, ``"bcgs"``, ``"preonly"``; ``"ilu"``, ``"bjacobi"``,
        ``"lu"``, ``"none"``); None: GMRES, with block Jacobi/ILU on an
        assembled matrix and no preconditioner on a matrix-free one.
    mat_type : {"aij", "python"} or None
        Method "petsc" only: the operator as an assembled, distributed AIJ
        matrix ("aij", the default) or matrix-free ("python": a PETSc Python
        matrix whose products are JVP and VJP sweeps).
    petsc_options : mapping or None
        Method "petsc" only: further PETSc options database entries, without
        the leading dash (``{"ksp_gmres_restart": 100}``).
    """

    tol: float | None = None
    maxiter: int | None = None
    preconditioner: Any = None
    ksp_type: str | None = None
    pc_type: str | None = None
    mat_type: str | None = None
    petsc_options: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tol", check_tol(self.tol, "linear solve"))
        object.__setattr__(self, "maxiter", check_maxiter(self.maxiter, "linear solve"))
        for name in ("ksp_type", "pc_type"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and value):
                raise OptionError(f"method 'petsc': {name} must be a PETSc type name such as "
                                  f"'gmres' or 'ilu', got {value!r}")
        if self.mat_type not in (None, *PETSC_MAT_TYPES):
            raise OptionError(f"method 'petsc': mat_type must be one of "
                              f"{list(PETSC_MAT_TYPES)}, got {self.mat_type!r}")
        if self.petsc_options is not None and not (
                isinstance(self.petsc_options, Mapping)
                and all(isinstance(k, str) and k for k in self.petsc_options)):
            raise OptionError("method 'petsc': petsc_options must be a dict of option names "
                              f"(without the leading dash) to values, got "
                              f"{self.petsc_options!r}")

    @property
    def petsc_given(self) -> bool:
        """True when any option of method "petsc" was given."""
        return any(getattr(self, name) is not None for name in PETSC_OPTIONS)

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any], method: str) -> LinearOptions:
        """Options given as keywords to ``method``; unknown names raise OptionError."""
        names = {f.name for f in fields(cls)}
        unknown = set(options) - names
        if unknown:
            raise OptionError(f"method {method!r}: unknown options {sorted(unknown)}; "
                              f"accepted: {sorted(names)}")
        where = f"method {method!r}"
        foreign = sorted(set(options) & set(PETSC_OPTIONS))
        if foreign and not method.startswith("petsc"):
            raise OptionError(f"method {method!r}: the options {foreign} belong to method "
                              "'petsc'")
        check_tol(options.get("tol"), where)  # named by the method they were given to
        check_maxiter(options.get("maxiter"), where)
        return cls(**options)

    @property
    def given(self) -> bool:
        """True when any option was given."""
        return self.tol is not None or self.maxiter is not None or \
            self.preconditioner is not None or self.petsc_given

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
        return replace(options, maxiter=self.terms)


@dataclass(frozen=True)
class AdjointOptions:
    """A cyclic block's own defaults for its linear solves (adjoint and tangent).

    Declared with the block (``fixed_point(..., adjoint_method="gmres")``) and
    used by the default sweep (``method="auto"``) for that block only; a
    method or tolerance given to the solve itself wins.

    Attributes
    ----------
    method : one of BLOCK_LINEAR_METHODS, or None
    tol : float or None
        Relative residual tolerance of the iterative methods.
    """

    method: str | None = None
    tol: float | None = None

    def __post_init__(self) -> None:
        if self.method is not None and (not isinstance(self.method, str)
                                        or self.method not in BLOCK_LINEAR_METHODS):
            raise OptionError(f"unknown adjoint method {self.method!r}; choose one of "
                              f"{sorted(BLOCK_LINEAR_METHODS)}")
        object.__setattr__(self, "tol", check_tol(self.tol, "adjoint solve"))


@dataclass(frozen=True)
class SolveOptions:
    """Solver options of a functional transform (``grad(fn, solve_options=...)``).

    Attributes
    ----------
    method, tol, maxiter
        The forward (nonlinear) solve of every cyclic block, as
        :class:`ForwardOptions`; they win over a block's own.
    adjoint_method : str or None
        The linear method of the adjoint and tangent solves: a block method
        used inside every cyclic block ("splu", "gmres", "lgmres",
        "bicgstab", "fixed_point", "reduced_lu", "dense", "lstsq", "petsc"), or
        a whole-system one ("auto" = "backsub", "levels", "spsolve", "dense",
        "petsc", "petsc_blocks").
        None: each block's declared method, else the automatic choice.
    adjoint_tol, adjoint_maxiter : float or int or None
        Tolerance and iteration limit of the iterative linear methods.
    backward : str, tuple or BackwardOptions or None
        The backward mode of every cyclic block (:class:`BackwardOptions`:
        "implicit", ("unrolled", K), ("neumann", K), "phantom", "jfb"), as
        ``program.solve(backward=...)``; None: each block's own.
    """

    method: str | None = None
    tol: float | None = None
    maxiter: int | None = None
    adjoint_method: str | None = None
    adjoint_tol: float | None = None
    adjoint_maxiter: int | None = None
    backward: Any = None

    def __post_init__(self) -> None:
        ForwardOptions(self.method, self.tol, self.maxiter)  # raises OptionError
        if self.adjoint_method is not None and not isinstance(self.adjoint_method, str):
            raise OptionError(f"adjoint_method must be a method name, got "
                              f"{self.adjoint_method!r}")
        object.__setattr__(self, "tol", check_tol(self.tol, "forward solve"))
        object.__setattr__(self, "adjoint_tol", check_tol(self.adjoint_tol, "adjoint solve"))
        object.__setattr__(self, "adjoint_maxiter",
                           check_maxiter(self.adjoint_maxiter, "adjoint solve"))
        object.__setattr__(self, "backward",
                           BackwardOptions.resolve(self.backward, "solve_options"))

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | SolveOptions | None) -> SolveOptions:
        """``options`` given as a dict (or already a SolveOptions; None: none);
        an unknown name raises OptionError listing the accepted ones."""
        if options is None:
            return cls()
        if isinstance(options, SolveOptions):
            return options
        if not isinstance(options, Mapping):
            raise OptionError("solve_options must be a dict of options, got "
                              f"{type(options).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = set(options) - names
        if unknown:
            raise OptionError(f"solve_options: unknown options {sorted(unknown)}; accepted: "
                              f"{sorted(names)}")
        return cls(**options)

    @property
    def forward(self) -> dict[str, Any]:
        """The forward options that were given, as keywords of ``program.solve``."""
        return {k: v for k, v in (("method", self.method), ("tol", self.tol),
                                  ("backward", self.backward),
                                  ("maxiter", self.maxiter)) if v is not None}

    @property
    def linear(self) -> dict[str, Any]:
        """The linear options that were given, as keywords of ``solve_system``."""
        return {k: v for k, v in (("tol", self.adjoint_tol),
                                  ("maxiter", self.adjoint_maxiter)) if v is not None}
