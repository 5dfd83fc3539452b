"""Solution: a program's variables at a point where every constraint holds,
with its multipliers, gradient, tangents, Lagrangian and KKT residuals."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from lagrad.compile.compiler import compile_program
from lagrad.compile.schedule import Index, Schedule
from lagrad.errors import OptionError, ProgramError, SolveError
from lagrad.ir.constants import as_real
from lagrad.ir.program import Program, Variable
from lagrad.numeric import norm2
from lagrad.options import BackwardOptions, ForwardOptions
from lagrad.solve.borrow import Borrowed
from lagrad.solve.buffers import pool_of
from lagrad.solve.codegen import forward_values, sweep_gradient
from lagrad.solve.flatplan import flat_plan, multiplier_plan
from lagrad.solve.forward import evaluate
from lagrad.solve.linsolve import LinearSolver, SolveInfo, solve_system
from lagrad.solve.results import BlockResult
from lagrad.solve.system import System

__all__ = ["Solution", "VariableMap", "KKTResiduals", "solve_program", "solve_checked",
           "lagrangian", "truncated_backward"]

Array = NDArray[np.float64]
NO_OPTIONS = ForwardOptions()
DEFAULT_METHODS = ("auto", "backsub")  # the default substitution, cached per Solution
HAND_OVER = 0.9
"""Share of the multiplier vector that the inputs' entries must reach for a
first ``grad()`` to hand the vector over (its slices are the gradient) instead
of copying the gradient out of it: a DEQ layer's W is nearly all of it."""


class VariableMap(Mapping[Any, Any]):
    """Read-only ``{variable: array}`` view of a flat vector (keys: variables
    or their names); values have the variables' shapes. A block of k vectors,
    shape (n, k) (the solution of a system with k right-hand sides), gives
    values of shape (k, *shape): the block of seeds first, as in jax.vmap."""

    def __init__(self, index: Index, vec: Array) -> None:
        self.index = index
        self.vector = vec

    def __getitem__(self, key: Variable | str) -> Any:
        sl = self.index[key]
        v = self.index.program.variable(key)
        if self.vector.ndim == 2:
            return np.array(self.vector[sl].T).reshape((self.vector.shape[1], *v.shape))
        out = self.vector[sl].reshape(v.shape)
        return out[()] if out.ndim == 0 else out.copy()

    def __iter__(self) -> Iterator[Variable]:
        return iter(self.index)

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        items = ", ".join(f"{v.name}: {self[v]!r}" for v in list(self)[:6])
        more = ", ..." if len(self) > 6 else ""
        return f"VariableMap({{{items}{more}}})"


class KKTResiduals(NamedTuple):
    """Relative norms of the Lagrangian's gradient at (z, lambda).

    ``dL_dlambda`` = ||z - f(z)|| / (1 + ||z||): the constraints (primal);
    ``dL_dz`` = ||e_n - (I - J)^T lambda|| / (1 + ||lambda||): the multiplier
    equations (dual).
    """

    dL_dlambda: float  # noqa: N815 (the maths' name)
    dL_dz: float  # noqa: N815


class Solution:
    """The values of every variable of ``program`` at given inputs.

    Obtained from :meth:`lagrad.Program.solve`. Index it with a variable or a
    name; everything else (multipliers, gradient, tangents, systems) is
    computed on request from these values.

    A large input read only inside cyclic blocks (a DEQ layer's W) is read
    from the array given to ``solve``, not copied: modify that array in place
    only after the Solution's last use.
    """

    def __init__(self, schedule: Schedule, z: Array,
                 diagnostics: Mapping[int, BlockResult] | None = None,
                 backward: BackwardOptions | None = None,
                 borrowed: Borrowed | None = None) -> None:
        self.schedule = schedule
        self._z = z
        self._borrowed = borrowed  # inputs not yet in z (lagrad.solve.borrow)
        self.diagnostics: dict[int, BlockResult] = dict(diagnostics or {})
        """Forward-solve results of each cyclic block, by block number."""
        self.backward = backward
        """The backward mode given to ``program.solve`` (None: each block's own)."""
        self._multipliers: Array | None = None
        self._multiplier_info: SolveInfo | None = None
        self._lock = threading.Lock()

    @property
    def z(self) -> Array:
        """The flat vector of every variable's value, in index order."""
        if self._borrowed is not None:  # the inputs left in the caller's arrays, copied now
            self._borrowed.fill(self._z)
            self._borrowed = None
        return self._z

    def __getstate__(self) -> dict[str, Any]:
        _ = self.z  # every input in z: the copy owns its values
        state = dict(self.__dict__)
        del state["_lock"]  # a lock does not pickle; the copy gets its own
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def adjoint_diagnostics(self) -> list[BlockResult]:
        """The cyclic blocks' results in the default multiplier solve (the one
        :meth:`grad` and :meth:`multipliers` use without a method or options;
        computed on first use). A block with a truncated backward mode has
        status ``TRUNCATED`` and its ``extra["error_estimate"]``. For another
        method, read ``info.blocks`` of ``sol.adjoint_system().solve(method, ...)``."""
        if self._multiplier_info is None:
            self._default_multipliers()
        assert self._multiplier_info is not None
        return self._multiplier_info.blocks

    @property
    def adjoint_info(self) -> SolveInfo:
        """The :class:`~lagrad.SolveInfo` of the default multiplier solve (the
        one :meth:`grad` and :meth:`multipliers` use without a method or
        options; computed on first use)."""
        if self._multiplier_info is None:
            self._default_multipliers()
        assert self._multiplier_info is not None
        return self._multiplier_info

    @property
    def program(self) -> Program:
        return self.schedule.program

    @property
    def values(self) -> VariableMap:
        """All values, ``{variable: array}``."""
        return VariableMap(self.schedule.index, self.z)

    def __getitem__(self, key: Variable | str) -> Any:
        return self.values[key]

    @property
    def output(self) -> Any:
        """The value of the output z_n."""
        out = self.schedule.output_variable  # (VariableMap's lookup, without its checks)
        z = self._z if out.kind != "input" else self.z  # (an equation's value is in z)
        value = z[self.schedule.index.slice(out.index)].reshape(out.shape)
        return value[()] if value.ndim == 0 else value.copy()

    # ---------------------------------------------------------------- reverse
    def _seed(self, cotangent: Any = None, pooled: bool = False) -> Array:
        out = self.schedule.output_variable
        if cotangent is None and out.size != 1:
            raise ProgramError(
                f"the output {out.name!r} has shape {out.shape}; a gradient needs a scalar "
                "output (pass a cotangent of that shape, or use lagrad.jacobian)")
        e = pool_of(self.schedule).zeros() if pooled else np.zeros(self.schedule.size)
        if cotangent is None:  # the common case: d output / d output = 1
            e[self.schedule.index.slice(out.index)] = 1.0
            return e
        ct = as_real(cotangent, "cotangent")
        k = _seeds_in(ct, out.shape)
        if k is not None:  # a block of k cotangents: one column of e each
            e = np.zeros((self.schedule.size, k))
            e[self.schedule.index[out]] = ct.reshape(k, out.size).T
            return e
        if ct.size != out.size:
            block = f" (or a block of k cotangents, shape {_block_shape(out.shape)})" \
                if out.shape else ""
            raise ProgramError(f"cotangent has shape {ct.shape}, output {out.name!r} has "
                               f"shape {out.shape}{block}")
        e[self.schedule.index[out]] = ct.ravel()
        return e

    def adjoint_system(self, cotangent: Any = None) -> System:
        """The multiplier system (I - J)^T lambda = e_n at this solution.

        ``cotangent`` seeds a non-scalar output (default 1 for a scalar one).
        For a non-scalar output, a block of k cotangents, shape
        ``(k, *output.shape)``, gives the system
        with k right-hand sides: ``rhs`` and the solution of shape (n, k),
        solved in one sweep for all of them (each cyclic block factorized or
        iterated once), as :func:`lagrad.jacrev` does.

        Examples
        --------
        >>> import numpy as np, lagrad
        >>> sol = lagrad.trace(lambda x: lagrad.sin(x) * x[::-1], np.zeros(3)).solve(
        ...     np.array([0.1, 0.2, 0.3]))
        >>> lam, info = sol.adjoint_system(np.eye(3)).solve()  # 3 seeds, one sweep
        >>> lam.shape
        (12, 3)
        >>> rows = sol.adjoint_system(np.eye(3)).split(lam)[sol.program.inputs[0]]
        >>> bool(np.allclose(rows, lagrad.jacobian(lambda x: lagrad.sin(x) * x[::-1])(
        ...     np.array([0.1, 0.2, 0.3])), rtol=1e-14, atol=0))
        True
        """
        return self._adjoint_system(self._seed(cotangent))

    def _adjoint_system(self, rhs: Array) -> System:
        return System(self.schedule, self.z, "adjoint", rhs, self.diagnostics, self.backward)

    def _default_multipliers(self) -> Array:
        """lambda by the default method, computed once (under a lock: threads
        sharing a Solution get one vector) in a pooled vector (buffers.py)."""
        with self._lock:
            if self._multipliers is None:
                self._multipliers, self._multiplier_info = self._solve_default()
            return self._multipliers

    def _solve_default(self) -> tuple[Array, SolveInfo]:
        """lambda by the default method and its info (not kept)."""
        plan = multiplier_plan(self.schedule) if self.backward is None else \
            flat_plan(self.schedule)
        found = None if plan is None else plan.multipliers(self._z, self.diagnostics,
                                                           self._borrowed)
        if found is None:  # the general sweep (and its guard, naming a culprit)
            system = self._adjoint_system(self._seed(pooled=True))
            found = solve_system(system, rebuild_rhs=self._seed, compute_residual=False)
        return found

    def _lambda(self, method: str | LinearSolver, options: dict[str, Any]) -> Array:
        if isinstance(method, str) and method in DEFAULT_METHODS and not options:
            return self._default_multipliers()
        return solve_system(self.adjoint_system(), method, options).x

    def multipliers(self, method: str | LinearSolver = "auto", **options: Any) -> VariableMap:
        """lambda for every variable (same shapes): the solution of the
        multiplier system. For an input, lambda is d output / d input."""
        return VariableMap(self.schedule.index, self._lambda(method, options))

    def grad(self, method: str | LinearSolver = "auto", **options: Any) -> Any:
        """Gradient of the scalar output with respect to the inputs: an array
        of the input's shape, or a tuple of them for several inputs (the
        caller's own arrays)."""
        default = isinstance(method, str) and method in DEFAULT_METHODS and not options
        plan = flat_plan(self.schedule) if default and self._multipliers is None else None
        if plan is not None:  # an acyclic array program: its generated sweep, when made,
            # writes the gradient into new arrays (this Solution keeps no multipliers)
            found = sweep_gradient(plan, self._z, self._borrowed)
            if found is not None:
                return found[0] if len(found) == 1 else found
        if default and self._multipliers is None and _hands_over(self.schedule):
            # the inputs are (nearly) all of lambda: hand the vector over, its slices
            # being the gradient, instead of copying them out; this Solution keeps
            # only the info (multipliers() asked later solves again)
            with self._lock:
                lam, info = self._solve_default()
                if self._multiplier_info is None:
                    self._multiplier_info = info
            index = self.schedule.index
            grads = tuple(lam[index.slice(v.index)].reshape(v.shape)[()] if not v.shape else
                          lam[index.slice(v.index)].reshape(v.shape)
                          for v in self.schedule.inputs)
        else:
            # lambda is never bound to a local here: a Solution dropped right after
            # this call (``program.solve(x).grad()``) then recycles it (buffers.py)
            grads = self.schedule.index.take(self._lambda(method, options),
                                             self.schedule.inputs)
        return grads[0] if len(grads) == 1 else grads

    # ---------------------------------------------------------------- forward
    def tangent_system(self, direction: Any) -> System:
        """The tangent system (I - J) zdot = e for an input direction.

        A block of k directions, each input's part of shape ``(k, *shape)``
        (at least one input not a scalar, so that the block cannot be read as
        a wrong shape), gives the system with k right-hand sides (``rhs``
        (n, k)), solved in one sweep for all of them. For any program,
        ``lagrad.vmap`` of :func:`lagrad.linearize`'s map does the same.
        """
        return System(self.schedule, self.z, "tangent", self._direction(direction),
                      self.diagnostics)

    def tangent(self, direction: Any, method: str | LinearSolver = "auto",
                **options: Any) -> VariableMap:
        """Derivatives of every variable along an input direction (forward mode).

        ``direction``: an array of the input's shape (one input), a sequence
        with one array per input, or a mapping from inputs (or names) to arrays.
        """
        system = self.tangent_system(direction)
        default = method in DEFAULT_METHODS and not options
        zdot = solve_system(system, method, options, compute_residual=not default).x
        return VariableMap(self.schedule.index, zdot)

    def _direction(self, direction: Any) -> Array:
        inputs = self.schedule.inputs
        if isinstance(direction, Mapping):
            given = {}
            for k, d in direction.items():
                v = self.program.variable(k)
                if not any(v is u for u in inputs):  # (== on variables raises)
                    raise ProgramError(f"direction: {v.name!r} is not an input; the inputs "
                                       f"are {[u.name for u in inputs]}")
                given[v.index] = d
            parts = [given.get(v.index) for v in inputs]  # None: zero
        elif len(inputs) == 1 and not isinstance(direction, tuple):
            parts = [direction]
        elif isinstance(direction, (tuple, list)):
            parts = list(direction)
            if len(parts) != len(inputs):
                raise ProgramError(f"direction has {len(parts)} parts, the program has "
                                   f"{len(inputs)} inputs")
        else:
            raise ProgramError(f"direction: the program has {len(inputs)} inputs; give a tuple "
                               "or list with one array per input, or a mapping from inputs "
                               f"(or names) to arrays, not {type(direction).__name__}")
        return _directions(self.schedule, inputs, parts)

    # ------------------------------------------------------------- Lagrangian
    def lagrangian(self, multipliers: Any = None) -> float:
        """L(z, lambda) at this solution (equals the output when z solves the
        constraints)."""
        lam = self._lambda("auto", {}) if multipliers is None else \
            _flat(self.schedule, multipliers, "multipliers")
        return _lagrangian(self.schedule, self.z, lam)

    def kkt_residuals(self, multipliers: Any = None) -> KKTResiduals:
        """Norms of dL/dlambda (constraints) and dL/dz (multiplier equations)
        at this solution, with the computed (or the given) multipliers."""
        lam = self._lambda("auto", {}) if multipliers is None else \
            _flat(self.schedule, multipliers, "multipliers")
        r = _constraint_residual(self.schedule, self.z)
        system = self.adjoint_system()
        with np.errstate(all="ignore"):  # norm2 may overflow before it rescales
            dz = system.rhs - system.matvec(lam)
            return KKTResiduals(norm2(r) / (1 + norm2(self.z)), norm2(dz) / (1 + norm2(lam)))

    def __repr__(self) -> str:
        return f"<Solution of {self.program!r}>"


# -------------------------------------------------------------- functions

def solve_program(program: Program, inputs: Sequence[Any], named: Mapping[str, Any],
                  options: Mapping[str, Any] | None = None) -> Solution:
    """Evaluate ``program`` at the given inputs (positional or by name)."""
    options = dict(options or {})
    starts = _inits(program, options.pop("init", None))
    backward = BackwardOptions.resolve(options.pop("backward", None), "solve")
    inits = {**program.inits, **starts} if starts else program.inits  # (not changed below:
    # evaluate copies it before writing starting points taken from other variables)
    given = {k: v for k, v in options.items() if v is not None}
    forward = ForwardOptions(**given) if given else NO_OPTIONS  # checked before any work
    schedule = compile_program(program)
    declared = schedule.inputs
    if len(inputs) > len(declared):
        raise ProgramError(f"{len(inputs)} inputs given, the program has {len(declared)}: "
                           f"{[v.name for v in declared]}")
    values: dict[int, Any] = {v.index: x for v, x in zip(declared, inputs)}
    for name, x in named.items():
        try:
            v = program.variable(name)
        except ProgramError:
            raise ProgramError(f"solve: {name!r} is neither an input of the program "
                               f"({[v.name for v in declared]}) nor an option of solve "
                               "(method, tol, maxiter, init, backward)") from None
        if v.kind != "input":
            raise ProgramError(f"{name!r} is not an input of the program")
        if v.index in values:
            raise ProgramError(f"input {name!r} given twice")
        values[v.index] = x
    missing = [v.name for v in declared if v.index not in values]
    if missing:
        raise ProgramError(f"missing values for inputs {missing}")
    xs = [_as_input(v, values[v.index], "input") for v in declared]
    sources = {u: j for u, j in program.init_sources.items() if u not in starts}
    plan = flat_plan(schedule)  # no cyclic block: the options above change nothing
    z: Array | None = None
    if plan is not None:
        try:
            z, borrowed = forward_values(plan, xs)
            diagnostics: dict[int, BlockResult] = {}
        except SolveError:  # again by the general path, whose error names the equation
            z = None
    if z is None:
        z, diagnostics, borrowed = evaluate(schedule, xs, forward, inits, sources)
    return Solution(schedule, z, diagnostics, backward, borrowed)


def solve_checked(program: Program, inputs: Sequence[Any]) -> Solution:
    """``program.solve(*inputs)`` without the checks of the inputs, for a
    caller that made them: one value per input, of its shape, real numbers (a
    traced program at arguments of its trace's structure, shapes and dtypes).
    An acyclic program of array equations runs from its flat plan."""
    schedule = compile_program(program)
    plan = flat_plan(schedule)
    try:
        z, borrowed = (None, None) if plan is None else forward_values(plan, inputs)
    except SolveError:  # again by the general path, whose error names the equation
        z = None
    if z is None:
        return solve_program(program, inputs, {})
    return Solution(schedule, z, borrowed=borrowed)


def _hands_over(schedule: Schedule) -> bool:
    """Whether the inputs' entries are at least HAND_OVER of the flat vector
    (cached on the schedule)."""
    extras = schedule.extras
    if "hands_over" not in extras:
        entries = sum(v.size for v in schedule.inputs)
        extras["hands_over"] = schedule.size > 0 and entries >= HAND_OVER * schedule.size
    return bool(extras["hands_over"])


def _inits(program: Program, init: Mapping[Any, Any] | None) -> dict[int, Array]:
    """The starting points given to solve (keys: unknowns or their names),
    checked; the program's own ``init`` values fill in the rest."""
    if init is not None and not isinstance(init, Mapping):
        raise OptionError("init must be a mapping from unknowns (or their names) to arrays, "
                          f"got {type(init).__name__}")
    given: dict[int, Array] = {}
    for key, value in (init or {}).items():
        v = program.variable(key)
        if v.kind != "unknown":
            raise ProgramError(f"init: {v.name!r} is not an unknown; only unknowns have a "
                               "starting point")
        start = as_real(value, f"init of {v.name!r}")
        if start.size != v.size:
            raise ProgramError(f"init of {v.name!r} has shape {start.shape}, the unknown has "
                               f"shape {v.shape}")
        given[v.index] = start.reshape(v.shape)
    return given




def _seeds_in(value: Array, shape: tuple[int, ...]) -> int | None:
    """k when ``value`` is a block of k seeds for a variable of ``shape``: of
    shape (k, *shape), the variable not a scalar (a (k,) seed for a scalar
    would read as a wrong shape) and ``value`` not one seed of that size
    (which it was before blocks existed); else None."""
    if shape and value.ndim == len(shape) + 1 and value.shape[1:] == shape and \
            value.size != math.prod(shape):
        return value.shape[0]
    return None


def _block_shape(shape: tuple[int, ...]) -> str:
    """The shape of a block of k seeds for a variable of ``shape``, as text: (k, 2, 3)."""
    return "(k," + "".join(f" {s}," for s in shape).rstrip(",") + ")"


def _directions(schedule: Schedule, inputs: Sequence[Variable], parts: Sequence[Any]) -> Array:
    """The tangent right-hand side for one direction per input (n,), or for a
    block of k (n, k) when the part of an input that is not a scalar has
    shape (k, *its shape) (every part then has its input's shape after k);
    parts not given (zeros) fit either."""
    blocks = {_seeds_in(np.asarray(d), v.shape) for v, d in zip(inputs, parts) if _numeric(d)}
    blocks.discard(None)
    if len(blocks) > 1:
        raise ProgramError(f"direction: blocks of {sorted(blocks)} seeds; every input's "
                           "part needs the same leading k")
    if not blocks:
        e = np.zeros(schedule.size)
        for v, d in zip(inputs, parts):
            if d is not None:
                e[schedule.index[v]] = _as_input(v, d, "direction for").ravel()
        return e
    k = blocks.pop()
    e = np.zeros((schedule.size, k))
    for v, d in zip(inputs, parts):
        if d is None:
            continue
        block = _as_input(v, d, "direction for", (k, *v.shape))
        e[schedule.index[v]] = block.reshape(k, v.size).T
    return e


def _numeric(value: Any) -> bool:
    """An array of real numbers (not None, not ragged): a candidate block of seeds."""
    try:
        return value is not None and np.asarray(value).dtype.kind in "biuf"
    except ValueError:  # ragged
        return False


def _as_input(v: Variable, x: Any, role: str, shape: tuple[int, ...] | None = None) -> Array:
    try:
        arr = np.asarray(x)
    except ValueError as err:  # a ragged sequence, e.g. [array, None]
        raise ProgramError(f"{role} {v.name!r} must be an array of shape {v.shape}: "
                           f"{err}") from err
    if arr.dtype.kind not in "biuf":
        raise ProgramError(f"{role} {v.name!r} must be real numbers, got dtype {arr.dtype}")
    arr = np.asarray(arr, dtype=float)  # no copy for float64
    shape = v.shape if shape is None else shape
    if arr.shape != shape:
        raise ProgramError(f"{role} {v.name!r} has shape {shape}, got shape {arr.shape}")
    return arr


def _flat(schedule: Schedule, vec: Any, what: str) -> Array:
    """``vec`` (a flat vector over all variables, a VariableMap, or a mapping from
    variables or names to arrays) as a flat vector; wrong sizes raise."""
    if isinstance(vec, VariableMap) and vec.index is schedule.index:
        return vec.vector
    if isinstance(vec, Mapping):
        out = np.zeros(schedule.size)
        for k, val in vec.items():
            sl = schedule.index[k]
            name = k if isinstance(k, str) else getattr(k, "name", repr(k))
            part = as_real(val, f"{what} of {name!r}").ravel()
            if part.size != sl.stop - sl.start:
                raise ProgramError(f"{what} of {name!r} has {part.size} entries, the variable "
                                   f"has {sl.stop - sl.start}")
            out[sl] = part
        return out
    arr = as_real(vec, what).ravel()
    if arr.size != schedule.size:
        raise ProgramError(f"{what}: expected a flat vector of {schedule.size} entries (all "
                           f"variables, in index order) or a mapping by variable, got "
                           f"{arr.size} entries")
    return arr


def _constraint_residual(schedule: Schedule, z: Array) -> Array:
    """z - f(z) for every variable (0 on inputs)."""
    fz = z.copy()
    with np.errstate(all="ignore"):
        for step in schedule.steps:
            step.run(z, out=fz)
    return z - fz


def lagrangian(program: Program, values: Any, multipliers: Any) -> float:
    """L = z_n - sum_i lambda_i . (z_i - f_i(z_alpha(i))); see Program.lagrangian."""
    schedule = compile_program(program)
    return _lagrangian(schedule, _flat(schedule, values, "values"),
                       _flat(schedule, multipliers, "multipliers"))


def _lagrangian(schedule: Schedule, z: Array, lam: Array) -> float:
    out = schedule.output_variable
    if out.size != 1:
        raise ProgramError(f"the Lagrangian needs a scalar output; {out.name!r} has shape "
                           f"{out.shape}")
    zn = float(z[schedule.index[out]][0])
    return zn - float(lam @ _constraint_residual(schedule, z))


def truncated_backward(sol: Solution) -> str | None:
    """Which truncated backward mode the adjoints of ``sol`` take (the
    solve's, which overrides every block's, or a block's own), said for an
    error message; None when they are all exact ("implicit")."""
    if sol.backward is not None:
        return None if not sol.backward.truncated else \
            f"the solve has the truncated backward mode {sol.backward.mode!r}"
    program = sol.schedule.program
    for index, found in program.block_backward.items():
        if found.truncated:
            return (f"the block of unknown {program.variables[index].name!r} has the truncated "
                    f"backward mode {found.mode!r}")
    return None
