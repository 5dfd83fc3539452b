"""Exception classes. Every error lagrad raises on purpose is a ``LagradError``.

The subclasses also derive from the builtin a numpy/scipy user would catch
(``ValueError``, ``RuntimeError``, ...), so generic handlers keep working.
"""

from __future__ import annotations

__all__ = [
    "LagradError",
    "ProgramError",
    "CycleError",
    "TracedIndexError",
    "InputDtypeError",
    "NotCallableError",
    "NonFiniteError",
    "SolveError",
    "ConvergenceError",
    "NonFiniteSolveError",
    "SingularSystemError",
    "GradientCheckError",
    "OptionError",
    "MissingDerivativeError",
    "BatchingError",
    "MissingDependencyError",
]


class LagradError(Exception):
    """Base class of every error raised by lagrad."""


class ProgramError(LagradError, ValueError):
    """The program is malformed: unknown, foreign or twice-defined variables,
    shape mismatches, unsupported operations, a non-scalar output where a
    scalar is required."""


class CycleError(ProgramError):
    """An acyclic program was required but the dependency graph has a cycle."""


class TracedIndexError(ProgramError, IndexError):
    """An index is out of range for a traced variable's shape. An IndexError too,
    so that Python's iteration and unpacking protocols see the end of the axis."""


class BatchingError(ProgramError, NotImplementedError):
    """:func:`lagrad.vmap` met an operation it cannot batch (named in the
    message); a NotImplementedError too."""


class InputDtypeError(LagradError, TypeError):
    """A differentiated input holds integers or booleans. A TypeError too, as
    JAX raises for them (without ``allow_int``): their derivative is not defined
    on a discrete set; pass floats, or leave the argument out of ``argnums``."""


class NotCallableError(ProgramError, TypeError):
    """A function was expected (by ``lagrad.grad``, ``trace``, ``fixed_point``
    ...) and something else was given. A TypeError too, as JAX raises."""


def require_callable(fn: object, where: str) -> None:
    """Raise :class:`NotCallableError` naming ``where`` unless ``fn`` is callable."""
    if not callable(fn):
        shown = repr(fn)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise NotCallableError(f"{where}: expected a function, got {type(fn).__name__} "
                               f"{shown}; pass the function itself, not its value")


class NonFiniteError(LagradError, FloatingPointError):
    """A value, tangent or multiplier became NaN or infinite.

    Attributes
    ----------
    equation : str
        The equation (printed) where the non-finite number first appeared.
    """

    def __init__(self, message: str, equation: str = "") -> None:
        super().__init__(message)
        self.equation = equation


class SolveError(LagradError, RuntimeError):
    """A linear or nonlinear solve failed; no result is returned.

    Attributes
    ----------
    equation : str
        The equation (printed) whose value failed, such as a singular
        ``linalg.solve``; empty when a block solve failed as a whole.
    """

    def __init__(self, message: str = "", equation: str = "") -> None:
        super().__init__(message)
        self.equation = equation


class ConvergenceError(SolveError):
    """An iterative solver stopped before reaching its tolerance."""


class NonFiniteSolveError(NonFiniteError, ConvergenceError):
    """A cyclic block's solve met a NaN or infinite value (one it reads, or one
    its iteration made). Both a :class:`NonFiniteError` (a value is not
    finite) and a :class:`ConvergenceError` (the solve failed): either
    handler catches it."""


class SingularSystemError(SolveError, ArithmeticError):
    """The system matrix (or one of its blocks) is singular: the constraints do
    not determine the variables."""


class GradientCheckError(LagradError, AssertionError):
    """A derivative check found a mismatch between modes or finite differences."""


class OptionError(LagradError, ValueError):
    """An argument has a value lagrad does not accept (unknown method name,
    mode, argnums out of range, ...)."""


class MissingDerivativeError(LagradError, NotImplementedError):
    """A primitive lacks the derivative rule a transform needs (for example a
    second-order rule, for :func:`lagrad.hessian` and :func:`lagrad.hvp`). The
    message names the primitive."""


class MissingDependencyError(LagradError, ImportError):
    """An optional dependency a method needs is not installed (an ImportError
    too); the message names the extra to install, such as
    ``pip install "lagrad[petsc]"``."""
