"""Programs of scalar equations built in bulk from arrays.

``Program.from_arrays`` takes equation kinds and parent indices as arrays and
produces a Program and its schedule directly: no Python object per equation.
Variables and equations are materialized on demand (printing, the graph,
error messages); levels, Batch steps and the level plan are computed with a
few vectorized passes. A program of 10^6 equations builds and compiles in a
fraction of a second.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from . import primitives as P
from .errors import ProgramError

if TYPE_CHECKING:
    from .program import Equation, Program, Variable
    from .schedule import Schedule

__all__ = ["BulkEquations", "from_arrays", "compile_bulk", "Readout"]

Array = NDArray[np.float64]
Ints = NDArray[np.intp]
_BY_NAME = {p.name: p for p in P.ELEMENTWISE if not p.name == "where"}


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
    """See :meth:`lagrad.Program.from_arrays`."""
    from .program import Program, Variable

    if primitives is not None:  # kinds are integer codes into ``primitives``
        names = np.asarray(primitives, dtype=str)
        kind = np.asarray(kinds, dtype=np.intp)
        if kind.size and (kind.min() < 0 or kind.max() >= len(names)):
            raise ProgramError(f"from_arrays: kind codes must lie in 0..{len(names) - 1}")
    else:
        names, kind = np.unique(np.asarray(kinds, dtype=str), return_inverse=True)
    unknown = [k for k in names if k not in _BY_NAME]
    if unknown:
        raise ProgramError(f"from_arrays: unknown equation kinds {unknown}; choose from "
                           f"{sorted(_BY_NAME)}")
    prims = tuple(_BY_NAME[k] for k in names)
    m = len(kind)
    parents = np.asarray(parents, dtype=np.intp).reshape(m, -1)
    if parents.shape[1] == 1:
        parents = np.concatenate([parents, np.full((m, 1), -1, np.intp)], axis=1)
    if parents.shape != (m, 2):
        raise ProgramError(f"from_arrays: parents must have shape ({m}, 2), got {parents.shape}")
    own = n_inputs + np.arange(m)
    if (parents >= own[:, None]).any() or (parents < -1).any():
        bad = int(np.argmax((parents >= own[:, None]).any(axis=1) | (parents < -1).any(axis=1)))
        raise ProgramError(f"from_arrays: equation {bad} (variable v{n_inputs + bad}) reads "
                           f"{parents[bad].tolist()}: parents must be earlier variables or -1")
    consts = np.zeros((m, 2)) if constants is None else np.asarray(constants, float).reshape(m, 2)
    arity = np.array([_arity(p) for p in prims], dtype=np.intp)[kind]
    weights = None
    if output_weights is not None:
        weights = np.asarray(output_weights, dtype=float).ravel()
        if weights.size != n_inputs + m:
            raise ProgramError(f"from_arrays: output_weights needs {n_inputs + m} entries, got "
                               f"{weights.size}")
    bulk = BulkEquations(int(n_inputs), prims, kind.astype(np.intp), parents, consts, arity,
                         weights)
    program = Program(name)
    n = bulk.n_variables
    program._bulk = bulk

    def variable(i: int) -> Variable:
        kind_ = "input" if i < n_inputs else "defined"
        return Variable(program, i, (), kind_, f"x{i}" if i < n_inputs else f"v{i}")

    program.variables = _Lazy(n, variable)  # type: ignore[assignment]
    program.equations = _Lazy(n - n_inputs, lambda k: _equation(program, n_inputs + k))  # type: ignore[assignment]
    program._output = program.variables[n - 1]
    program._touch()
    return program


def variable_by_name(program: Program, name: str) -> Variable:
    """``x{i}`` (an input) or ``v{i}`` (a defined variable) of a bulk program."""
    n_inputs = program._bulk.n_inputs
    head, digits = name[:1], name[1:]
    if digits.isdigit():
        i = int(digits)
        defined = n_inputs <= i < len(program.variables)
        if (head == "x" and i < n_inputs) or (head == "v" and defined):
            return program.variables[i]
    raise ProgramError(f"no variable named {name!r} in this program: its variables are "
                       f"x0..x{n_inputs - 1} and v{n_inputs}..v{len(program.variables) - 1}")


def _arity(prim: P.Primitive) -> int:
    return 1 if prim.name in ("identity", "neg", "exp", "log", "sin", "cos", "tanh", "sigmoid",
                              "relu", "sqrt", "abs") else 2


def _equation(program: Program, i: int) -> Equation:
    """Materialize the Equation defining variable i (for printing and errors)."""
    from .program import Equation

    bulk: BulkEquations = program._bulk
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


# ------------------------------------------------------------------ compile

@dataclass(eq=False)
class Readout:
    """The output z_n = sum_j w_j z_j over every variable, as one dot product."""

    program: Any
    out: int
    weights: Array

    @property
    def equations(self) -> tuple[Any, ...]:
        return (self.program.equations[self.out - self.program._bulk.n_inputs],)

    def run(self, z: Array, out: Array | None = None) -> None:
        (z if out is None else out)[self.out] = self.weights @ z[:self.out]

    def pullback(self, z: Array, lam: Array, into: Array | None = None) -> None:
        (lam if into is None else into)[:self.out] += self.weights * lam[self.out]

    def pushforward(self, z: Array, zdot: Array, into: Array | None = None) -> None:
        (zdot if into is None else into)[self.out] += self.weights @ zdot[:self.out]

    def edges(self) -> list[tuple[Ints, Ints]]:
        return [(np.full(self.out, self.out, np.intp), np.arange(self.out, dtype=np.intp))]

    def jacobian_entries(self, z: Array) -> list[tuple[Any, Any, Any]]:
        (rows, cols), = self.edges()
        return [(rows, cols, self.weights)]


def _levels(bulk: BulkEquations) -> Ints:
    """Longest path from the inputs, by frontiers (Kahn's algorithm, one
    vectorized round per level)."""
    d, m = bulk.n_inputs, bulk.n_equations
    level = np.zeros(d + m, dtype=np.intp)
    between = bulk.parents >= d  # edges between equations, a parent read twice counted once
    between[:, 1] &= bulk.parents[:, 1] != bulk.parents[:, 0]
    eq, col = np.nonzero(between)
    src = bulk.parents[eq, col] - d
    indeg = np.bincount(eq, minlength=m)
    # children of each equation as CSR rows: scipy's counting sort, O(edges)
    adjacency = sp.csr_matrix((np.ones(len(eq), dtype=np.int8), (src, eq)), shape=(m, m))
    children, indptr = adjacency.indices.astype(np.intp), adjacency.indptr.astype(np.intp)
    frontier = np.flatnonzero(indeg == 0)
    owner = np.empty(m, dtype=np.intp)
    current = 1
    while frontier.size:
        level[d + frontier] = current
        starts, stops = indptr[frontier], indptr[frontier + 1]
        counts = stops - starts
        if counts.sum() == 0:
            break
        idx = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + \
            np.arange(counts.sum())
        reached = children[idx]
        np.subtract.at(indeg, reached, 1)
        ready = reached[indeg[reached] == 0]
        # drop repeats without sorting: keep the entry that wrote its owner slot last
        slot = np.arange(len(ready))
        owner[ready] = slot
        frontier = ready[owner[ready] == slot]
        current += 1
    return level


def compile_bulk(program: Program) -> Schedule:
    """The schedule of a bulk program: Batch steps by (level, kind, operand
    pattern), the readout last, and the level plan, all from the arrays. The
    plan computes J's values with one Batch per (kind, pattern) across all
    levels, so its cost does not grow with the number of levels."""
    from .levels import plan_from_edges
    from .schedule import Index, Schedule

    bulk: BulkEquations = program._bulk
    d, m = bulk.n_inputs, bulk.n_equations
    level = _levels(bulk)
    is_var = bulk.parents >= 0
    pattern = is_var[:, 0].astype(np.intp) + 2 * (is_var[:, 1] & (bulk.arity == 2))
    kind_key = bulk.kind * 4 + pattern
    steps: list[Any] = _batches(program, level[d:] * (4 * len(bulk.primitives)) + kind_key,
                                is_var)
    groups: list[Any] = _batches(program, kind_key, is_var)
    levels = level
    if bulk.weights is not None:
        readout = Readout(program, d + m, bulk.weights)
        steps.append(readout)
        groups.append(readout)
        levels = np.concatenate([level, [int(level.max(initial=0)) + 1]])
    schedule = Schedule(program, Index(program), tuple(program.variables[i] for i in range(d)),
                        steps, levels, scalar=True)
    edges = [e for g in groups for e in g.edges()] or [(np.zeros(0, np.intp),) * 2]
    rows = np.concatenate([r for r, _ in edges]).astype(np.intp)
    cols = np.concatenate([c for _, c in edges]).astype(np.intp)
    schedule.extras["levels"] = plan_from_edges(groups, rows, cols, levels[rows])
    return schedule


def _batches(program: Program, key: Ints, is_var: NDArray[np.bool_]) -> list[Any]:
    """One Batch per value of ``key`` (in increasing key order)."""
    from .schedule import Batch

    bulk: BulkEquations = program._bulk
    d = bulk.n_inputs
    order = np.argsort(key.astype(np.int16) if key.max(initial=0) < 2**15 else key,
                       kind="stable")  # a radix sort for 16-bit keys
    counts = np.bincount(key) if key.size else np.zeros(0, np.intp)
    cuts = np.cumsum(counts[counts > 0])[:-1]  # group boundaries, without a pass over order
    out = []
    for group in np.split(order, cuts) if len(order) else []:
        first = int(group[0])
        operands: list[Any] = []
        var_positions = []
        for k in range(int(bulk.arity[first])):
            if is_var[first, k]:
                operands.append(bulk.parents[group, k])
                var_positions.append(k)
            else:
                operands.append(bulk.constants[group, k])
        out.append(Batch((), bulk.primitives[bulk.kind[first]], (d + group).astype(np.intp),
                         operands, tuple(var_positions), (False,) * len(var_positions),
                         lazy=_lazy_equations(program, d + group)))
    return out


def _lazy_equations(program: Program, outs: Ints) -> Any:
    return lambda: tuple(program.equations[int(i) - program._bulk.n_inputs] for i in outs)
