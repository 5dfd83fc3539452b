"""Programs of scalar equations built in bulk from arrays.

``Program.from_arrays`` takes equation kinds and parent indices as arrays and
returns a :class:`BulkProgram`: a Program whose equations are held as columns
(no Python object per equation). Variables and equations are materialized on
demand (printing, the graph, error messages); :mod:`lagrad.compile.bulk`
compiles the columns with a few vectorized passes. A program of 10^6
equations builds and compiles in a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.errors import ProgramError
from lagrad.ir import primitives as P
from lagrad.ir.program import Equation, Program, Shape, Variable

__all__ = ["BulkEquations", "BulkProgram", "from_arrays"]

Array = NDArray[np.float64]
Ints = NDArray[np.intp]
# the elementwise primitives without parameters, by name, with their arity
_ARITY = {"identity": 1, "neg": 1, "exp": 1, "log": 1, "sin": 1, "cos": 1, "tanh": 1,
          "sigmoid": 1, "relu": 1, "sqrt": 1, "abs": 1, "add": 2, "sub": 2, "mul": 2,
          "div": 2, "pow": 2, "maximum": 2, "minimum": 2}
_BY_NAME = {p.name: p for p in P.ELEMENTWISE if p.name in _ARITY}
_OTHER = {p.name for p in P.ELEMENTWISE} - set(_BY_NAME)  # where, weighted_sum


@dataclass(eq=False)
class BulkEquations:
    """Columns of a program of scalar equations z_{d+i} = prim_i(args_i)."""

    n_inputs: int
    primitives: tuple[P.Primitive, ...]  # the distinct primitives
    kind: Ints  # (m,) index into ``primitives``
    parents: Ints  # (m, 2) variable indices, -1 for a constant operand or none
    constants: Array  # (m, 2) operand values where ``parents`` is -1
    arity: Ints  # (m,) 1 or 2
    weights: Array | None  # output = sum_j weights[j] z_j, or None: the last variable

    @property
    def n_equations(self) -> int:
        return len(self.kind)

    @property
    def n_variables(self) -> int:
        """Inputs, equations and (with weights) the output readout."""
        return self.n_inputs + self.n_equations + (self.weights is not None)


def _complete() -> ProgramError:
    return ProgramError("a program built by from_arrays is complete: it takes no new "
                        "variables or equations")


class _Lazy(Sequence[Any]):
    """A read-only sequence whose items are built on first access."""

    def __init__(self, n: int, make: Any) -> None:
        self._n, self._make, self._cache = n, make, {}

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self._n))]
        i = int(i)
        if not -self._n <= i < self._n:
            raise IndexError(i)
        i %= self._n
        if i not in self._cache:
            self._cache[i] = self._make(i)
        return self._cache[i]

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(self._n))


def from_arrays(kinds: Sequence[str] | NDArray[Any], parents: NDArray[Any], *, n_inputs: int,
                constants: NDArray[Any] | None = None, output_weights: NDArray[Any] | None = None,
                primitives: Sequence[str] | None = None, name: str = "") -> Program:
    """See :meth:`lagrad.Program.from_arrays`.

    Every array is checked and copied (the program keeps read-only copies):
    ``kinds`` (m,), ``parents`` (m, 2), (m, 1) or (m,) of integers,
    ``constants`` (m, 2) and ``output_weights`` (n_inputs + m,) of real numbers;
    a wrong shape or type raises :class:`~lagrad.ProgramError` naming the
    argument. With no equations (m = 0) the output is, by the same rule as
    always, the last variable: the last input, or the weighted sum of the
    inputs; a program with no variables at all raises.
    """
    d = _count(n_inputs, "n_inputs")
    prims, kind = _kinds(kinds, primitives)
    m = len(kind)
    if d + m == 0:
        raise ProgramError("from_arrays: no inputs and no equations; the output is the last "
                           "variable, so give at least one")
    parents = _parents(parents, m, d)
    consts = np.zeros((m, 2)) if constants is None else _reals(
        constants, (m, 2), "constants", f"shape ({m}, 2), one row per equation")
    arity = np.array([_ARITY[p.name] for p in prims], dtype=np.intp)[kind]
    weights = None
    if output_weights is not None:
        weights = _reals(output_weights, (d + m,), "output_weights",
                         f"{d + m} entries, one per variable (inputs, then equations)")
    for arr in (kind, parents, consts, arity):
        arr.flags.writeable = False
    bulk = BulkEquations(d, prims, kind, parents, consts, arity, weights)
    return BulkProgram(bulk, name)


def _count(n: Any, what: str) -> int:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise ProgramError(f"from_arrays: {what}={n!r} must be a non-negative int")
    return int(n)


def _integers(values: Any, what: str) -> NDArray[np.intp]:
    arr = np.asarray(values)
    if arr.size and arr.dtype.kind not in "iu":
        raise ProgramError(f"from_arrays: {what} must be integers, got dtype {arr.dtype}")
    return np.array(arr, dtype=np.intp)  # a copy: the program keeps it


def _kinds(kinds: Any, primitives: Any) -> tuple[tuple[P.Primitive, ...], NDArray[np.intp]]:
    """The distinct primitives and each equation's index into them."""
    if primitives is not None:  # kinds are integer codes into ``primitives``
        names = [str(k) for k in np.asarray(primitives, dtype=str).ravel()]
        kind = _integers(kinds, "kinds (codes into primitives)")
        if kind.size and (kind.min() < 0 or kind.max() >= len(names)):
            raise ProgramError(f"from_arrays: kind codes must lie in 0..{len(names) - 1}")
    else:
        unique, kind = np.unique(np.asarray(kinds, dtype=str), return_inverse=True)
        names, kind = [str(k) for k in unique], kind.astype(np.intp)
    if kind.ndim != 1:
        raise ProgramError(f"from_arrays: kinds must be 1-D (one per equation), got shape "
                           f"{kind.shape}")
    unsupported = sorted({k for k in names if k in _OTHER})
    if unsupported:
        raise ProgramError(f"from_arrays: equation kinds {unsupported} take parameters and "
                           f"cannot be built in bulk; choose from {sorted(_BY_NAME)}, or build "
                           "the program by tracing")
    unknown = sorted({k for k in names if k not in _BY_NAME})
    if unknown:
        raise ProgramError(f"from_arrays: unknown equation kinds {unknown}; choose from "
                           f"{sorted(_BY_NAME)}")
    return tuple(_BY_NAME[k] for k in names), kind


def _parents(parents: Any, m: int, d: int) -> NDArray[np.intp]:
    """(m, 2) parent indices, checked to be earlier variables or -1."""
    arr = _integers(parents, "parents")
    if arr.ndim == 1 and arr.shape == (m,):
        arr = arr[:, None]
    if arr.size == 0 and m == 0:
        arr = arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[0] != m or arr.shape[1] not in (1, 2):
        raise ProgramError(f"from_arrays: parents has shape {arr.shape} for {m} equations; "
                           f"give one row per equation, shape ({m}, 2) (or ({m}, 1) for "
                           "unary equations)")
    if arr.shape[1] == 1:
        arr = np.concatenate([arr, np.full((m, 1), -1, np.intp)], axis=1)
    own = d + np.arange(m)
    if (arr >= own[:, None]).any() or (arr < -1).any():
        bad = int(np.argmax((arr >= own[:, None]).any(axis=1) | (arr < -1).any(axis=1)))
        raise ProgramError(f"from_arrays: equation {bad} (variable v{d + bad}) reads "
                           f"{arr[bad].tolist()}: parents must be earlier variables or -1")
    return arr


def _reals(values: Any, shape: Shape, what: str, needs: str) -> Array:
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf":
        raise ProgramError(f"from_arrays: {what} must be real numbers, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ProgramError(f"from_arrays: {what} needs {needs}, got shape {arr.shape}")
    out = np.array(arr, dtype=float)  # a copy: the program keeps it
    out.flags.writeable = False
    return out


class BulkProgram(Program):
    """A program of scalar equations held as the columns of :class:`BulkEquations`.

    It reads like any Program (variables ``x0..``, ``v..``, equations, graph,
    printing), materializing each variable and equation on first access; it is
    complete when made and takes no new variables or equations.
    """

    def __init__(self, bulk: BulkEquations, name: str = "") -> None:
        super().__init__(name)
        self.bulk = bulk
        n, d = bulk.n_variables, bulk.n_inputs
        self.variables = _Lazy(n, self._make_variable)  # type: ignore[assignment]
        self.equations = _Lazy(n - d, self._make_equation_k)  # type: ignore[assignment]
        self.output(self.variables[n - 1])

    def _make_variable(self, i: int) -> Variable:
        d = self.bulk.n_inputs
        return Variable(self, i, (), "input" if i < d else "defined", f"x{i}" if i < d else f"v{i}")

    def _make_equation_k(self, k: int) -> Equation:
        """Equation k (a bound method, not a lambda: programs pickle)."""
        return self._make_equation(self.bulk.n_inputs + k)

    def _make_equation(self, i: int) -> Equation:
        """The Equation defining variable i (for printing and errors)."""
        bulk = self.bulk
        k = i - bulk.n_inputs
        if k == bulk.n_equations:  # the readout
            assert bulk.weights is not None
            args = tuple(range(bulk.n_inputs + bulk.n_equations))
            return Equation(i, P.weighted_sum, args, {"weights": bulk.weights},
                            tuple(enumerate(args)))
        args = tuple(int(p) if p >= 0 else np.asarray(c)
                     for p, c in zip(bulk.parents[k][:bulk.arity[k]], bulk.constants[k]))
        slots = tuple((pos, a) for pos, a in enumerate(args) if isinstance(a, int))
        return Equation(i, bulk.primitives[bulk.kind[k]], args, {}, slots)

    def _new_variable(self, shape: Shape, kind: str, name: str | None) -> Variable:
        raise _complete()

    def _record(self, prim: Any, args: tuple[Any, ...], params: Any, shape: Shape) -> Variable:
        raise _complete()

    @property
    def inputs(self) -> tuple[Variable, ...]:
        return tuple(self.variables[i] for i in range(self.bulk.n_inputs))

    def equation(self, v: Variable | str | int) -> Equation | None:
        i = self.variable(v).index
        return None if i < self.bulk.n_inputs else self.equations[i - self.bulk.n_inputs]

    def defining(self, index: int) -> Equation | None:
        d = self.bulk.n_inputs
        return None if index < d else self.equations[index - d]

    def variable(self, key: Variable | str | int) -> Variable:
        """``x{i}`` (an input) or ``v{i}`` (a defined variable), by name or index."""
        if not isinstance(key, str):
            return super().variable(key)
        n, d = len(self.variables), self.bulk.n_inputs
        head, digits = key[:1], key[1:]
        if digits.isdigit():
            i = int(digits)
            if (head == "x" and i < d) or (head == "v" and d <= i < n):
                return self.variables[i]
        raise ProgramError(f"no variable named {key!r} in this program: its variables are "
                           f"x0..x{d - 1} and v{d}..v{n - 1}")

    __getitem__ = variable
