"""Hypothesis strategies: random acyclic lagrad programs, kept in safe domains.

A random program is drawn as a :class:`Recipe`, plain data: input shapes, a
list of :class:`Step` (an operation name from :data:`OPS`, the indices of the
variables it reads, constant parameters) and a weighted scalar readout. The
same recipe can then be

* built with the explicit builder (:meth:`Recipe.build`),
* traced (:meth:`Recipe.__call__` is an ordinary function of the inputs, so
  ``lagrad.trace(recipe, *inputs)`` works), or
* run on plain numpy arrays (lagrad's operations compute values on numbers),

which gives independent routes to the same numbers.

Safe domains: inputs lie in [-1, 1] and every variable carries a static bound
on its absolute value. Operations whose derivative or value would be unsafe
for that bound are not drawn (``exp`` only of values <= 3, products only while
the bound stays below :data:`MAX_BOUND`), ``log`` and ``sqrt`` only appear as
log(exp(a) + 1) and sqrt(a^2 + 1), divisions by 1.5 + sin(b), and the
non-smooth primitives (abs, relu, maximum, minimum) only where their argument
is bounded away from the kink. So every drawn program is smooth on a
neighbourhood of [-1, 1]^d and central finite differences are reliable.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.special
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import lagrad

Shape = tuple[int, ...]

SHAPES: tuple[Shape, ...] = ((), (2,), (3,), (2, 3), (3, 2), (1, 3), (2, 1))
MAX_BOUND = 50.0  # no variable may exceed this in absolute value on [-1, 1]^d
MAX_SIZE = 24  # entries per variable

#: Settings for the property tests: few examples, no deadline (the first
#: example of a run pays for imports). LAGRAD_EXAMPLES raises the count for
#: a long bug hunt: ``LAGRAD_EXAMPLES=2000 pytest tests/test_properties.py``.
PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("LAGRAD_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ------------------------------------------------------------------ operations
# Every operation is written with lagrad's public operations, operators and
# numpy dispatch, so it records equations on Variables and computes on arrays.

def _softplus(a: Any) -> Any:
    return lagrad.log(lagrad.exp(a) + 1.0)


def _sqrt1(a: Any) -> Any:
    return lagrad.sqrt(a * a + 1.0)


def _safe_div(a: Any, b: Any) -> Any:
    return a / (1.5 + lagrad.sin(b))


def _safe_pow(a: Any, b: Any) -> Any:
    return (lagrad.sigmoid(a) + 0.5) ** b


def _readout_term(w: np.ndarray, v: Any) -> Any:
    # w has v's shape; scalar terms stay elementwise (scalar programs have
    # scalar equations only)
    return lagrad.sum(w * v) if w.ndim else w * v


def _arr_left(a: Any, *, c: np.ndarray, how: str) -> Any:
    # the constant array is the left operand: numpy dispatches to the Variable
    if how == "+":
        return c + a
    if how == "-":
        return c - a
    return c * a


OPS: dict[str, Callable[..., Any]] = {
    # unary elementwise
    "tanh": lagrad.tanh,
    "sin": lagrad.sin,
    "cos": lagrad.cos,
    "sigmoid": lagrad.sigmoid,
    "np_tanh": np.tanh,  # numpy ufunc on a Variable
    "exp": lagrad.exp,
    "np_exp": np.exp,
    "softplus": _softplus,
    "sqrt1": _sqrt1,
    "square": lambda a: a ** 2,
    "cube": lambda a: a ** 3,
    "neg": lambda a: -a,
    "abs_shift": lambda a, *, c: lagrad.abs(a + c),
    "relu_shift": lambda a, *, c: lagrad.relu(c + a),
    "scale": lambda a, *, c: a * c,
    "rsub": lambda a, *, c: c - a,
    "rdiv": lambda a, *, c: c / (a * a + 1.0),
    "arr_left": _arr_left,
    # binary elementwise (with broadcasting)
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": _safe_div,
    "pow": _safe_pow,
    "max_shift": lambda a, b, *, c: lagrad.maximum(a, b - c),
    "min_shift": lambda a, b, *, c: lagrad.minimum(b + c, a),
    "where": lambda a, b, *, cond: lagrad.where(cond, a, b),
    # reductions
    "sum": lambda a, *, axis, keepdims: lagrad.sum(a, axis=axis, keepdims=keepdims),
    "mean": lambda a, *, axis, keepdims: lagrad.mean(a, axis=axis, keepdims=keepdims),
    "lse": lambda a, *, axis, keepdims: lagrad.logsumexp(a, axis=axis, keepdims=keepdims),
    "softmax": lambda a, *, axis: lagrad.softmax(a, axis=axis),
    # structural
    "reshape": lambda a, *, shape: lagrad.reshape(a, shape),
    "T": lambda a: a.T,
    "index": lambda a, *, index: a[index],
    "concat": lambda *xs, axis: lagrad.concatenate(xs, axis=axis),
    "stack": lambda *xs, axis: lagrad.stack(xs, axis=axis),
    "matmul": lambda a, b: a @ b,
    "dot": lagrad.dot,
    "matmul_const": lambda a, *, c: a @ c,
    "rmatmul_const": lambda a, *, c: c @ a,  # ndarray @ Variable: numpy dispatch
    # more of numpy, through its dispatch (smooth: no sort or norm, whose kinks
    # a drawn program could not keep away from)
    "flip": lambda a: np.flip(a),
    "roll": lambda a: np.roll(a, 1),
    "cumsum": lambda a: np.cumsum(a),
    "tril": lambda a: np.tril(a),
    "arcsinh": np.arcsinh,
    "hypot1": lambda a: np.hypot(a, 1.0),
    "erf": scipy.special.erf,
    "log_expit": scipy.special.log_expit,
    "logaddexp2_half": lambda a: np.logaddexp2(a, 0.5),
    "deg2rad": np.deg2rad,
}

UNARY_SAFE = ("tanh", "sin", "cos", "sigmoid", "np_tanh")
ALL_OPS = tuple(OPS)
#: Operations that only make scalar elementwise equations from scalars.
SCALAR_OPS = ("tanh", "sin", "cos", "sigmoid", "exp", "softplus", "sqrt1", "square", "cube",
              "neg", "abs_shift", "relu_shift", "scale", "rsub", "rdiv", "add", "sub", "mul",
              "div", "pow", "max_shift", "min_shift")


# --------------------------------------------------------------------- recipes

@dataclass(frozen=True)
class Step:
    """One operation: ``OPS[op](*variables[args], **params)``."""

    op: str
    args: tuple[int, ...]
    params: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        ps = ", ".join(f"{k}={_short(v)}" for k, v in self.params.items())
        return f"{self.op}({', '.join(f'z{a}' for a in self.args)}{', ' if ps else ''}{ps})"


@dataclass(frozen=True)
class Recipe:
    """A random acyclic program as data (see the module docstring)."""

    input_shapes: tuple[Shape, ...]
    steps: tuple[Step, ...]
    readout: tuple[tuple[int, np.ndarray], ...]  # output = sum_k sum(w_k * z_k)

    @property
    def n_inputs(self) -> int:
        return len(self.input_shapes)

    def run(self, *xs: Any) -> list[Any]:
        """All variables z_0.. (inputs first) computed from ``xs``."""
        zs = list(xs)
        for step in self.steps:
            zs.append(OPS[step.op](*(zs[j] for j in step.args), **step.params))
        return zs

    def output(self, zs: Sequence[Any]) -> Any:
        total = None
        for j, w in self.readout:
            term = _readout_term(w, zs[j])
            total = term if total is None else total + term
        return total

    def __call__(self, *xs: Any) -> Any:
        """The program as an ordinary function of its inputs (traceable)."""
        return self.output(self.run(*xs))

    def build(self, names: Sequence[str] | None = None) -> lagrad.Program:
        """The same program with the explicit builder (inputs named ``names``,
        default ``x0, x1, ...``)."""
        return self.build_with_variables(names)[0]

    def build_with_variables(self, names: Sequence[str] | None = None
                             ) -> tuple[lagrad.Program, list[lagrad.Variable]]:
        """The built program and the variables z_0.. of the recipe's steps."""
        if names is None:
            names = [f"x{k}" for k in range(self.n_inputs)]
        p = lagrad.Program("recipe")
        xs = [p.input(name, s) for name, s in zip(names, self.input_shapes)]
        zs = self.run(*xs)
        p.output(self.output(zs))
        return p, zs

    def traceable(self) -> Callable[..., Any]:
        def fn(*xs: Any) -> Any:
            return self(*xs)
        return fn

    def __repr__(self) -> str:
        lines = [f"Recipe(inputs {list(self.input_shapes)}:"]
        lines += [f"  z{self.n_inputs + k} = {s!r}" for k, s in enumerate(self.steps)]
        lines.append("  out = " + " + ".join(f"sum(w{_short(w)} * z{j})" for j, w in self.readout))
        return "\n".join(lines) + ")"


@dataclass(frozen=True)
class Case:
    """A recipe and input values in [-1, 1]."""

    recipe: Recipe
    inputs: tuple[np.ndarray, ...]

    def __repr__(self) -> str:
        return f"Case({self.recipe!r},\n  inputs={[np.round(x, 3).tolist() for x in self.inputs]})"


def _short(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"array{v.shape}" if v.ndim else repr(float(v))
    if isinstance(v, tuple):
        return "(" + ", ".join(_short(u) for u in v) + ("," if len(v) == 1 else "") + ")"
    return repr(v)


# ------------------------------------------------------------------ generation
# The generator is written against a small "chooser" interface so that the same
# code draws from hypothesis (small programs that shrink well) or from a seeded
# numpy generator (the long scalar programs).

class _Chooser:
    def choice(self, options: Sequence[Any]) -> Any:
        raise NotImplementedError

    def integer(self, lo: int, hi: int) -> int:
        raise NotImplementedError

    def boolean(self) -> bool:
        return bool(self.choice((False, True)))


class _HypothesisChooser(_Chooser):
    def __init__(self, draw: Any) -> None:
        self.draw = draw

    def choice(self, options: Sequence[Any]) -> Any:
        return options[self.draw(st.integers(0, len(options) - 1))]

    def integer(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))


class _NumpyChooser(_Chooser):
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def choice(self, options: Sequence[Any]) -> Any:
        return options[int(self.rng.integers(len(options)))]

    def integer(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi + 1))


@dataclass
class _Var:
    shape: Shape
    bound: float

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)


class _Generator:
    """Draws steps one at a time, tracking every variable's shape and bound."""

    def __init__(self, ch: _Chooser, rng: np.random.Generator, input_shapes: Sequence[Shape],
                 hub_inputs: bool = False) -> None:
        self.ch = ch
        self.rng = rng
        self.pool = [_Var(tuple(s), 1.0) for s in input_shapes]
        self.n_inputs = len(self.pool)
        self.hub_inputs = hub_inputs  # pick inputs often (high fan-out)
        self.n_equations = 0  # recorded by the steps so far

    # ---- picking parents
    def pick(self, ok: Callable[[_Var], bool] = lambda v: True) -> int | None:
        cands = [j for j, v in enumerate(self.pool) if ok(v)]
        if not cands:
            return None
        if self.hub_inputs and self.ch.integer(0, 3) == 0:
            hubs = [j for j in cands if j < self.n_inputs]
            if hubs:
                return self.ch.choice(hubs)
        # index 0 is the most recent candidate: shrinking makes chains
        return cands[-1 - self.ch.integer(0, len(cands) - 1)]

    def const(self, shape: Shape) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, shape)

    def const_broadcasting_to(self, shape: Shape) -> Any:
        """A scalar, a same-shape array or a trailing-axes array."""
        options: list[Shape | None] = [None, shape]
        if len(shape) >= 1:
            options.append(shape[-1:])
        if len(shape) == 2:
            options.append((shape[0], 1))
        s = self.ch.choice(options)
        return float(self.rng.uniform(-1.0, 1.0)) if s is None else self.const(s)

    # ---- one step
    def step(self, ops: Sequence[str]) -> Step:
        op = self.ch.choice(ops)
        made = getattr(self, "_op_" + op, self._op_unary)(op)
        if made is None:  # not applicable here: fall back to a squashing op
            made = Step(self.ch.choice(UNARY_SAFE), (self.pick() or 0,))
        self._record(made)
        return made

    def _record(self, step: Step) -> None:
        # the shape is the one lagrad's shape rules give to the recorded variable
        args = [self.pool[j] for j in step.args]
        scratch = lagrad.Program()
        xs = [scratch.input(f"a{k}", v.shape) for k, v in enumerate(args)]
        shape = OPS[step.op](*xs, **step.params).shape
        self.n_equations += len(scratch.equations)
        self.pool.append(_Var(shape, _bound(step, args)))

    def _fits(self, shape: Shape, bound: float) -> bool:
        return math.prod(shape) <= MAX_SIZE and bound <= MAX_BOUND

    def _op_unary(self, op: str) -> Step | None:
        limit = {"exp": 3.0, "np_exp": 3.0, "softplus": 20.0, "sqrt1": 30.0, "square": 7.0,
                 "cube": 3.5}.get(op, MAX_BOUND)
        i = self.pick(lambda v: v.bound <= limit)
        return None if i is None else Step(op, (i,))

    def _op_abs_shift(self, op: str) -> Step:
        i = self.pick()
        assert i is not None
        return Step(op, (i,), {"c": float(self.pool[i].bound + 0.5)})

    _op_relu_shift = _op_abs_shift

    def _op_scale(self, op: str) -> Step:
        i = self.pick()
        assert i is not None
        return Step(op, (i,), {"c": self.const_broadcasting_to(self.pool[i].shape)})

    def _op_rsub(self, op: str) -> Step | None:
        i = self.pick(lambda v: v.bound <= MAX_BOUND - 1)
        return None if i is None else Step(op, (i,), {"c": float(self.rng.uniform(-1, 1))})

    def _op_rdiv(self, op: str) -> Step:
        i = self.pick()
        assert i is not None
        return Step(op, (i,), {"c": float(self.rng.uniform(-1, 1))})

    def _op_tril(self, op: str) -> Step | None:
        i = self.pick(lambda v: v.ndim == 2)
        return None if i is None else Step(op, (i,))

    def _op_cumsum(self, op: str) -> Step | None:
        i = self.pick(lambda v: v.bound * v.size <= MAX_BOUND)
        return None if i is None else Step(op, (i,))

    def _op_arr_left(self, op: str) -> Step | None:
        i = self.pick(lambda v: v.ndim >= 1 and v.bound <= MAX_BOUND - 1)
        if i is None:
            return None
        return Step(op, (i,), {"c": self.const(self.pool[i].shape),
                               "how": self.ch.choice(("+", "-", "*"))})

    # ---- binary
    def _partner(self, i: int, ok: Callable[[_Var, _Var], bool]) -> int | None:
        a = self.pool[i]

        def good(b: _Var) -> bool:
            try:
                shape = tuple(np.broadcast_shapes(a.shape, b.shape))
            except ValueError:
                return False
            return len(shape) <= 2 and math.prod(shape) <= MAX_SIZE and ok(a, b)
        return self.pick(good)

    def _binary(self, op: str, ok: Callable[[_Var, _Var], bool],
                params: Callable[[_Var, _Var], dict[str, Any]] | None = None) -> Step | None:
        i = self.pick()
        assert i is not None
        j = self._partner(i, ok)
        if j is None:
            return None
        return Step(op, (i, j), params(self.pool[i], self.pool[j]) if params else {})

    def _op_add(self, op: str) -> Step | None:
        return self._binary(op, lambda a, b: a.bound + b.bound <= MAX_BOUND)

    _op_sub = _op_add

    def _op_mul(self, op: str) -> Step | None:
        return self._binary(op, lambda a, b: a.bound * b.bound <= MAX_BOUND)

    def _op_div(self, op: str) -> Step | None:
        return self._binary(op, lambda a, b: 2 * a.bound <= MAX_BOUND)

    def _op_pow(self, op: str) -> Step | None:
        return self._binary(op, lambda a, b: b.bound <= 4.0)

    def _op_max_shift(self, op: str) -> Step | None:
        return self._binary(op, lambda a, b: True,
                            lambda a, b: {"c": float(a.bound + b.bound + 0.5)})

    _op_min_shift = _op_max_shift

    def _op_where(self, op: str) -> Step | None:
        i = self.pick()
        assert i is not None
        j = self._partner(i, lambda a, b: True)
        if j is None:
            return None
        shape = tuple(np.broadcast_shapes(self.pool[i].shape, self.pool[j].shape))
        cond_shape = self.ch.choice((shape, shape[-1:]) if shape else (shape,))
        return Step(op, (i, j), {"cond": self.rng.random(cond_shape) < 0.5})

    # ---- reductions
    def _axis(self, v: _Var) -> Any:
        options: list[Any] = [None]
        # numpy reduces a 0-d array over axis 0 or -1 (over no axes)
        options += list(range(-v.ndim, v.ndim)) if v.ndim else [0, -1]
        if v.ndim >= 2:
            options.append((0, v.ndim - 1))
        return self.ch.choice(options)

    def _op_sum(self, op: str) -> Step | None:
        i = self.pick(lambda v: v.bound * v.size <= MAX_BOUND)
        if i is None:
            return None
        return Step(op, (i,), {"axis": self._axis(self.pool[i]), "keepdims": self.ch.boolean()})

    def _op_mean(self, op: str) -> Step:
        i = self.pick()
        assert i is not None
        return Step(op, (i,), {"axis": self._axis(self.pool[i]), "keepdims": self.ch.boolean()})

    _op_lse = _op_mean

    def _op_softmax(self, op: str) -> Step:
        i = self.pick()
        assert i is not None
        nd = self.pool[i].ndim
        return Step(op, (i,), {"axis": self.ch.choice(list(range(-nd, nd)) if nd else [0, -1])})

    # ---- structural
    def _op_reshape(self, op: str) -> Step:
        i = self.pick()
        assert i is not None
        v = self.pool[i]
        n = v.size
        options: list[Shape] = [(n,), (1, n), (n, 1), tuple(reversed(v.shape)), (-1,)]
        if n == 1:
            options.append(())
        if n % 2 == 0 and n > 2:
            options.append((2, -1))
        return Step(op, (i,), {"shape": self.ch.choice(options)})

    def _op_T(self, op: str) -> Step:  # noqa: N802
        i = self.pick()
        assert i is not None
        return Step(op, (i,))

    def _op_index(self, op: str) -> Step | None:
        i = self.pick(lambda v: 1 <= v.ndim <= 2)
        if i is None:
            return None
        shape = self.pool[i].shape
        n = shape[0]
        options: list[Any] = [0, -1, slice(None, None, -1), np.array([n - 1, 0, n - 1]),
                              np.arange(n) % 2 == 0]
        if n >= 2:
            options.append(slice(1, None))
        if len(shape) == 2:
            m = shape[1]
            options += [(slice(None), 0), (slice(None), slice(None, None, -1)),
                        (np.array([0, n - 1]), np.array([m - 1, 0])), (-1, slice(0, 1))]
            if m >= 2:
                options.append((slice(None), slice(1, None)))
        return Step(op, (i,), {"index": self.ch.choice(options)})

    def _op_concat(self, op: str) -> Step | None:
        i = self.pick(lambda v: v.ndim >= 1)
        if i is None:
            return None
        a = self.pool[i]
        axis = self.ch.integer(-a.ndim, a.ndim - 1)
        ax = axis % a.ndim
        off = a.shape[:ax] + a.shape[ax + 1:]
        args = [i]
        for _ in range(self.ch.integer(1, 2)):
            j = self.pick(lambda v: v.ndim == a.ndim and v.shape[:ax] + v.shape[ax + 1:] == off)
            assert j is not None  # a itself qualifies
            args.append(j)
        if sum(self.pool[j].shape[ax] for j in args) * math.prod(off) > MAX_SIZE:
            args = args[:2] if a.size * 2 <= MAX_SIZE else args[:1]
        return Step(op, tuple(args), {"axis": axis})

    def _op_stack(self, op: str) -> Step | None:
        i = self.pick(lambda v: v.size * 2 <= MAX_SIZE and v.ndim <= 1)
        if i is None:
            return None
        a = self.pool[i]
        j = self.pick(lambda v: v.shape == a.shape)
        assert j is not None
        return Step(op, (i, j), {"axis": self.ch.integer(0, a.ndim)})

    def _op_matmul(self, op: str) -> Step | None:
        i = self.pick(lambda v: 1 <= v.ndim <= 2)
        if i is None:
            return None
        a = self.pool[i]
        k = a.shape[-1]
        j = self.pick(lambda b: 1 <= b.ndim <= 2 and b.shape[0] == k
                      and a.bound * b.bound * k <= MAX_BOUND
                      and math.prod(a.shape[:-1] + b.shape[1:]) <= MAX_SIZE)
        if j is None:
            return self._op_matmul_const("matmul_const")
        return Step(op, (i, j))

    _op_dot = _op_matmul

    def _op_matmul_const(self, op: str) -> Step | None:
        i = self.pick(lambda v: 1 <= v.ndim <= 2 and v.bound * v.shape[-1] <= MAX_BOUND)
        if i is None:
            return None
        k = self.pool[i].shape[-1]
        return Step(op, (i,), {"c": self.const(self.ch.choice(((k,), (k, 2), (k, 3))))})

    def _op_rmatmul_const(self, op: str) -> Step | None:
        i = self.pick(lambda v: 1 <= v.ndim <= 2 and v.bound * v.shape[0] <= MAX_BOUND)
        if i is None:
            return None
        k = self.pool[i].shape[0]
        return Step(op, (i,), {"c": self.const(self.ch.choice(((k,), (2, k), (3, k))))})

    # ---- readout
    def readout(self, n_terms: int) -> tuple[tuple[int, np.ndarray], ...]:
        last = len(self.pool) - 1
        chosen = [last] + [self.ch.integer(0, last) for _ in range(n_terms - 1)]
        return tuple((j, self.rng.standard_normal(self.pool[j].shape)) for j in chosen)


def _bound(step: Step, args: Sequence[_Var]) -> float:
    """A bound on |value| given the arguments' bounds (see :class:`_Generator`)."""
    b = [v.bound for v in args]
    p = step.params
    rules: dict[str, Callable[[], float]] = {
        "exp": lambda: math.exp(b[0]), "np_exp": lambda: math.exp(b[0]),
        "softplus": lambda: b[0] + 1.0, "sqrt1": lambda: math.sqrt(b[0] ** 2 + 1.0),
        "square": lambda: b[0] ** 2, "cube": lambda: b[0] ** 3,
        "abs_shift": lambda: b[0] + p["c"], "relu_shift": lambda: b[0] + p["c"],
        "scale": lambda: b[0] * float(np.max(np.abs(p["c"]))),
        "rsub": lambda: b[0] + 1.0, "rdiv": lambda: 1.0,
        "arr_left": lambda: b[0] + 1.0,
        "add": lambda: b[0] + b[1], "sub": lambda: b[0] + b[1], "mul": lambda: b[0] * b[1],
        "div": lambda: 2.0 * b[0], "pow": lambda: 2.0 ** b[1],
        "max_shift": lambda: b[0], "min_shift": lambda: b[0], "where": lambda: max(b),
        "sum": lambda: b[0] * args[0].size, "mean": lambda: b[0],
        "lse": lambda: b[0] + math.log(args[0].size),
        "matmul": lambda: b[0] * b[1] * args[0].shape[-1],
        "dot": lambda: b[0] * b[1] * args[0].shape[-1],
        "matmul_const": lambda: b[0] * args[0].shape[-1],
        "cumsum": lambda: b[0] * args[0].size, "hypot1": lambda: math.sqrt(b[0] ** 2 + 1.0),
        "erf": lambda: 1.0, "log_expit": lambda: b[0] + 1.0, "logaddexp2_half": lambda: b[0] + 1.5,
        "deg2rad": lambda: b[0] * 0.02,
        "rmatmul_const": lambda: b[0] * args[0].shape[0],
    }
    if step.op in UNARY_SAFE or step.op == "softmax":
        return 1.0
    return rules.get(step.op, lambda: max(b))()


def _generate(ch: _Chooser, rng: np.random.Generator, input_shapes: Sequence[Shape],
              n_steps: int, ops: Sequence[str], n_terms: int, hub_inputs: bool = False,
              min_equations: int = 0) -> Recipe:
    """``n_steps`` steps, or more until the steps record ``min_equations``."""
    gen = _Generator(ch, rng, input_shapes, hub_inputs)
    steps = []
    while len(steps) < n_steps or gen.n_equations < min_equations:
        steps.append(gen.step(ops))
    return Recipe(tuple(tuple(s) for s in input_shapes), tuple(steps), gen.readout(n_terms))


# ------------------------------------------------------------------ strategies

@st.composite
def recipes(draw: Any, max_inputs: int = 3, max_steps: int = 12,
            ops: Sequence[str] = ALL_OPS) -> Recipe:
    """Random acyclic programs over small arrays and scalars (see module doc)."""
    ch = _HypothesisChooser(draw)
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    shapes = [ch.choice(SHAPES) for _ in range(ch.integer(1, max_inputs))]
    return _generate(ch, rng, shapes, ch.integer(1, max_steps), ops, ch.integer(1, 4))


@st.composite
def cases(draw: Any, **kwargs: Any) -> Case:
    """A random recipe and input values uniform in [-1, 1]."""
    recipe = draw(recipes(**kwargs))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    return Case(recipe, tuple(rng.uniform(-1.0, 1.0, s) for s in recipe.input_shapes))


def scalar_recipe(seed: int, n_equations: int = 200, n_inputs: int = 5,
                  ops: Sequence[str] = SCALAR_OPS) -> Recipe:
    """A long program of scalar elementwise equations with random parents.

    Parents are drawn uniformly (inputs often: high fan-out), so the levels
    are wide and hold several equations of one primitive, which the schedule
    runs as one batched step.
    """
    rng = np.random.default_rng(seed)
    return _generate(_NumpyChooser(rng), rng, [()] * n_inputs, 1, ops, n_terms=8,
                     hub_inputs=True, min_equations=n_equations)


def scalar_cases(n_equations: int = 200, n_inputs: int = 5,
                 ops: Sequence[str] = SCALAR_OPS) -> st.SearchStrategy[Case]:
    """Long scalar programs (:func:`scalar_recipe`) with inputs in [-1, 1]."""
    def make(seed: int) -> Case:
        recipe = scalar_recipe(seed, n_equations, n_inputs, ops)
        rng = np.random.default_rng(seed + 1)
        return Case(recipe, tuple(rng.uniform(-1.0, 1.0, ()) for _ in range(n_inputs)))
    return st.integers(0, 2 ** 32 - 2).map(make)
