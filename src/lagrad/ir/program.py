"""Variables, equations and the Program that holds them.

A Program is data: a list of variables z_1..z_n (inputs and defined
variables, each a float64 array of some shape) and, for every defined
variable, the equation z_i = f_i(z_alpha(i)) that defines it. Building a
program (by tracing or by hand) appends to these lists; solving reads them and
never changes them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

from lagrad.errors import OptionError, ProgramError, TracedIndexError
from lagrad.ir import ops
from lagrad.ir import primitives as P
from lagrad.ir.arraylike import ArrayMethods
from lagrad.ir.blocks import Block, find_blocks
from lagrad.ir.constants import as_real, frozen, frozen_param
from lagrad.options import AdjointOptions, BackwardOptions, ForwardOptions

__all__ = ["Variable", "Equation", "Program", "bind", "require_program"]

Shape = tuple[int, ...]


class Variable(ArrayMethods, P.Tracer):
    """A variable z_i of a program: an input or the left side of an equation.

    Variables behave like numpy arrays under arithmetic, ``@``, indexing and
    numpy ufuncs; each operation records an equation in their program.
    Comparisons (``<``, ``>=``, ``==``, ``!=``, ...) record 0/1 masks of the
    current values with derivative zero, as JAX's boolean arrays, for
    :func:`lagrad.where`. ``bool()`` (and so ``if x > 0:``) needs a value,
    which a traced variable does not have, and raises. Variables hash by
    identity (they are dict keys; compare them with ``is``).
    """

    __slots__ = ("program", "index", "shape", "kind", "_name")
    __array_priority__ = 1000.0

    def __init__(self, program: Program, index: int, shape: Shape, kind: str, name: str):
        self.program = program
        self.index = index
        self.shape = shape
        self.kind = kind
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, new: str) -> None:
        self.program._rename(self, new)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def dtype(self) -> np.dtype[np.float64]:
        return np.dtype(np.float64)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError(f"len() of unsized variable {self.name!r}")
        return self.shape[0]

    def __iter__(self) -> Iterator[Variable]:
        """The entries along the first axis, ``x[0], x[1], ...`` (as numpy)."""
        if not self.shape:
            raise ProgramError(f"iteration over 0-d traced variable {self.name!r}: it has no "
                               "axis to iterate over; use it directly")
        return (ops.getitem(self, i) for i in range(self.shape[0]))

    def __repr__(self) -> str:
        return f"Variable({self.name!r}, shape={self.shape}, kind={self.kind!r})"

    def __bool__(self) -> bool:
        eq = self.program.equation(self)
        what = "" if eq is None else (
            f" ({self.program.describe(eq).split('  #')[0]}, of "
            f"{', '.join(repr(self.program.variables[j].name) for j in eq.parents)})")
        raise ProgramError(
            f"the truth value of traced variable {self.name!r}{what} is not known while "
            "tracing; "
            "Python control flow cannot depend on it: select with lagrad.where(x > 0, a, b) "
            "(or np.where), or compute the condition outside the traced function")

    def _no_value(self) -> Any:
        raise ProgramError(
            f"traced variable {self.name!r} has no value while tracing; float(), int() and "
            "indexing with it are not possible inside a traced function")

    __float__ = __int__ = __index__ = __complex__ = _no_value

    def record(self, prim: P.Primitive, args: Sequence[Any], params: Mapping[str, Any]) -> Any:
        return bind(prim, args, params)


@dataclass(frozen=True, eq=False, slots=True)  # slots: a traced loop makes 10^6 of them
class Equation:
    """z_out = primitive(*args, **params).

    ``args`` holds variable indices (``int``) and constants (float64 arrays);
    ``slots`` lists ``(position, variable index)`` of the variable arguments.
    """

    out: int
    primitive: P.Primitive
    args: tuple[Any, ...]
    params: Mapping[str, Any]
    slots: tuple[tuple[int, int], ...]
    kind: str = "define"  # "root": g = 0 defines z, written as z = z - g
    # alpha(i): the variables this equation reads, in argument order. Stored,
    # not a cached_property: the compiler asks for it ~30 times per equation,
    # and Python 3.11's cached_property takes a lock on the first read (~2 us)
    parents: tuple[int, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parents", tuple([j for _, j in self.slots]))


class Program:
    """A set of equality constraints z_i = f_i(z_alpha(i)) with one output.

    Build one with :func:`lagrad.trace` or by hand with :meth:`input` and
    :meth:`output` (operations on the returned variables record equations).

    Examples
    --------
    >>> import lagrad
    >>> p = lagrad.Program()
    >>> x = p.input("x")
    >>> p.output(lagrad.sin(x) * x)
    >>> print(p)
    input x: ()
    v1 = sin(x)  # ()
    v2 = mul(v1, x)  # ()
    output v2
    >>> round(float(p.solve(2.0).grad()), 6)
    0.077004
    """

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.variables: list[Variable] = []
        self.equations: list[Equation] = []
        self._defined: dict[int, Equation] = {}
        self._by_name: dict[str, Variable] = {}
        self._output: Variable | None = None
        self.inits: dict[int, np.ndarray] = {}
        self.init_sources: dict[int, int] = {}  # unknown -> variable whose value starts it
        self.block_options: dict[int, ForwardOptions] = {}  # per unknown
        self.block_backward: dict[int, BackwardOptions] = {}  # per unknown
        self.adjoint_options: dict[int, AdjointOptions] = {}  # per unknown
        self._version = 0
        self._cache: dict[str, tuple[int, Any]] = {}

    # ------------------------------------------------------------ building
    def input(self, name: str, shape: Sequence[int] | int = ()) -> Variable:
        """Add an input variable z_i = x_i of the given shape."""
        return self._new_variable(_shape(shape, f"input {name!r}"), "input", name)

    def unknown(self, name: str, shape: Sequence[int] | int = (), init: Any = None, *,
                method: str | None = None, tol: float | None = None,
                maxiter: int | None = None, backward: Any = None,
                adjoint_method: str | None = None, adjoint_tol: float | None = None) -> Variable:
        """Add a variable to be determined by :meth:`define` or :meth:`root`.

        Expressions may read it before it is defined; that is how cycles
        (z = f(z, x)) and implicit constraints (g(z, x) = 0) are written.
        ``init`` is the starting point of the nonlinear solve (default 0; real
        numbers of the unknown's shape, copied; a complex ``init`` loses its
        imaginary part with a ``ComplexWarning``; or a variable of the program
        of that shape, whose value at solve time is the start);
        ``method``, ``tol`` and ``maxiter`` are this block's forward-solve
        defaults (see :meth:`solve`); ``backward`` its backward mode: a name
        ("implicit", the default and exact; "unrolled", "neumann", "phantom",
        "jfb"), a tuple ``(mode, steps)`` or a
        :class:`~lagrad.options.BackwardOptions`. ``adjoint_method`` (a block method:
        "splu", "gmres", "lgmres", "bicgstab", "fixed_point", "reduced_lu",
        "dense", "lstsq" or "auto") and ``adjoint_tol`` are its defaults for
        the linear solves of the default multiplier and tangent sweeps.
        """
        dims = _shape(shape, f"unknown {name!r}")
        source = init if isinstance(init, Variable) else None
        if source is not None:
            self._check_own(source, f"init of unknown {name!r}")
            if source.shape != dims:
                raise ProgramError(f"init of unknown {name!r} is variable {source.name!r} of "
                                   f"shape {source.shape}; the unknown has shape {dims}")
        start = None if init is None or source is not None else _init(init, dims, name)
        try:
            options = ForwardOptions(method, tol, maxiter)
            linear = AdjointOptions(adjoint_method, adjoint_tol)
        except OptionError as err:
            raise OptionError(f"unknown {name!r}: {err}") from None
        mode = BackwardOptions.resolve(backward, f"unknown {name!r}")
        v = self._new_variable(dims, "unknown", name)
        if options != ForwardOptions():
            self.block_options[v.index] = options
        if mode is not None:
            self.block_backward[v.index] = mode
        if linear != AdjointOptions():
            self.adjoint_options[v.index] = linear
        if start is not None:
            self.inits[v.index] = start
        if source is not None:
            self.init_sources[v.index] = source.index
        return v

    def define(self, z: Variable, expr: Any) -> None:
        """The constraint z = expr (expr may read z itself: a fixed point).

        A constant ``expr`` (real numbers) is broadcast to z's shape, as numpy
        broadcasts in ``z[...] = expr``.
        """
        self._check_unknown(z, "define")
        if isinstance(expr, Variable):
            self._check_own(expr, "expression")
            if expr is z:
                raise ProgramError(f"define({z.name!r}, {z.name!r}): z = z does not "
                                   "determine z; give an equation that does")
            if expr.shape != z.shape:
                raise ProgramError(f"define({z.name!r}, ...): the expression has shape "
                                   f"{expr.shape}, the unknown has shape {z.shape}")
            self._add_equation(z, P.identity, (expr.index,), {})
        else:
            c = as_real(expr, f"define({z.name!r}, ...): the constant", warn_complex=False)
            try:
                c = np.broadcast_to(c, z.shape)
            except ValueError as err:
                raise ProgramError(f"define({z.name!r}, ...): a constant of shape {c.shape} "
                                   f"does not broadcast to the unknown's shape {z.shape}; "
                                   "give a scalar or an array of that shape") from err
            self._add_equation(z, P.identity, (frozen(c),), {})

    def root(self, z: Variable, residual: Variable) -> None:
        """The implicit constraint residual(z, ...) = 0, which determines z.

        The residual must have z's shape (a square system). It is recorded as
        the equation z = z - residual, whose row of I - J is d residual / dz.
        """
        self._check_unknown(z, "root")
        if not isinstance(residual, Variable):
            raise ProgramError(f"root({z.name!r}, ...): the residual must be an expression "
                               "of the program's variables")
        self._check_own(residual, "residual")
        if residual.shape != z.shape:
            raise ProgramError(
                f"root({z.name!r}, {residual.name!r}): the system is not square: residual "
                f"shape {residual.shape}, unknown shape {z.shape}; a root constraint needs "
                "one residual per unknown entry")
        self._add_equation(z, P.sub, (z.index, residual.index), {}, kind="root")

    def _check_unknown(self, z: Variable, what: str) -> None:
        if not isinstance(z, Variable):
            raise ProgramError(f"{what}: the first argument must be an unknown of the program")
        self._check_own(z, what)
        if z.kind != "unknown":
            raise ProgramError(f"{what}({z.name!r}, ...): {z.name!r} is an {z.kind} variable, "
                               "not an unknown; only variables made by program.unknown(...) "
                               "can be defined "
                               "this way")

    def output(self, expr: Any) -> None:
        """Declare the program's output z_n (a variable, or a constant)."""
        if not isinstance(expr, Variable):
            c = as_real(expr, "output: the constant", warn_complex=False)
            expr = bind(P.identity, (c,), {}, program=self)
        self._check_own(expr, "output")
        self._output = expr
        self._touch()

    def _new_variable(self, shape: Shape, kind: str, name: str | None) -> Variable:
        if name is None:
            name = self._fresh_name()  # free by construction
        elif name in self._by_name:
            raise ProgramError(f"variable {name!r} is already defined in this program; "
                               "choose another name")
        v = Variable(self, len(self.variables), shape, kind, name)
        self.variables.append(v)
        self._by_name[name] = v
        self._touch()
        return v

    def _fresh_name(self) -> str:
        return self.fresh_name("v", len(self.variables))

    def fresh_name(self, prefix: str, start: int = 0) -> str:
        """The first of ``prefix{start}``, ``prefix{start + 1}``, ... that no
        variable of the program is named."""
        k = start
        while f"{prefix}{k}" in self._by_name:
            k += 1
        return f"{prefix}{k}"

    def _rename(self, v: Variable, new: str) -> None:
        if new in self._by_name and self._by_name[new] is not v:
            raise ProgramError(f"cannot rename {v.name!r} to {new!r}: that name is taken")
        del self._by_name[v._name]
        v._name = new
        self._by_name[new] = v

    def _record(self, prim: P.Primitive, args: tuple[Any, ...], params: Mapping[str, Any],
                shape: Shape) -> Variable:
        """A new defined variable and its equation ``prim(*args, **params)``:
        :meth:`_new_variable` and :meth:`_add_equation` in one step (a traced
        loop records 10^6 of them)."""
        index = len(self.variables)
        name = f"v{index}"
        if name in self._by_name:
            name = self.fresh_name("v", index)
        v = Variable(self, index, shape, "defined", name)
        self.variables.append(v)
        self._by_name[name] = v
        eq = Equation(index, prim, args, params,
                      tuple([(k, a) for k, a in enumerate(args) if type(a) is int]))
        self.equations.append(eq)
        self._defined[index] = eq
        self._version += 2  # as _new_variable and _add_equation would
        return v

    def _add_equation(self, out: Variable, prim: P.Primitive, args: tuple[Any, ...],
                      params: Mapping[str, Any], kind: str = "define") -> None:
        if out.index in self._defined:
            raise ProgramError(f"variable {out.name!r} is defined twice: it already has the "
                               f"equation {self.describe(self._defined[out.index])}")
        slots = tuple([(k, a) for k, a in enumerate(args) if isinstance(a, int)])
        eq = Equation(out.index, prim, args, params, slots, kind)
        self.equations.append(eq)
        self._defined[out.index] = eq
        self._touch()

    def _check_own(self, v: Variable, role: str) -> None:
        if v.program is not self:
            raise ProgramError(f"{role} {v.name!r} belongs to another program; variables "
                               "cannot be shared between programs")

    def _touch(self) -> None:
        self._version += 1

    def __getstate__(self) -> dict[str, Any]:
        # pickling: the cached graph, blocks and schedules are rebuilt on demand
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state

    def cached(self, key: str, build: Any) -> Any:
        """Return ``build(self)``, computed once per version of the program."""
        hit = self._cache.get(key)
        if hit is not None and hit[0] == self._version:
            return hit[1]
        value = build(self)
        self._cache[key] = (self._version, value)
        return value

    def cached_or_none(self, key: str) -> Any:
        """What :meth:`cached` keeps under ``key`` for this version, or None."""
        hit = self._cache.get(key)
        return hit[1] if hit is not None and hit[0] == self._version else None

    # ------------------------------------------------------------ reading
    @property
    def inputs(self) -> tuple[Variable, ...]:
        """The input variables, in the order :meth:`solve` takes them."""
        return tuple(v for v in self.variables if v.kind == "input")

    @property
    def output_or_none(self) -> Variable | None:
        """z_n, or None before :meth:`output` is called."""
        return self._output

    @property
    def output_variable(self) -> Variable:
        """z_n, the variable declared by :meth:`output`."""
        if self._output is None:
            raise ProgramError("the program has no output; call program.output(expr)")
        return self._output

    def equation(self, v: Variable | str | int) -> Equation | None:
        """The equation defining ``v`` (None for an input)."""
        return self._defined.get(self.variable(v).index)

    def defining(self, index: int) -> Equation | None:
        """The equation defining variable number ``index`` (None for an input);
        no checks, for compilers that walk the program's own indices."""
        return self._defined.get(index)

    def variable(self, key: Variable | str | int) -> Variable:
        """Look a variable up by name, index, or check that it is one of ours."""
        if isinstance(key, Variable):
            self._check_own(key, "variable")
            return key
        if isinstance(key, str):
            if key not in self._by_name:
                raise ProgramError(f"no variable named {key!r} in this program; "
                                   f"names are {sorted(self._by_name)[:10]}...")
            return self._by_name[key]
        if isinstance(key, (int, np.integer)) and 0 <= key < len(self.variables):
            return self.variables[key]
        raise ProgramError(f"{key!r} is not a variable of this program")

    __getitem__ = variable

    @property
    def graph(self) -> nx.DiGraph:
        """Dependency graph: an edge j -> i when equation i reads z_j, and an
        edge j -> u with attribute ``init=True`` when unknown u starts its solve
        from the value of z_j (no derivative flows along it).

        Nodes are variable indices with attributes ``name``, ``shape``, ``kind``.
        """
        def build(p: Program) -> nx.DiGraph:
            g = nx.DiGraph()
            for v in p.variables:
                g.add_node(v.index, name=v.name, shape=v.shape, kind=v.kind)
            for eq in p.equations:
                g.add_edges_from((j, eq.out) for j in eq.parents)
            for u, j in p.init_sources.items():
                if not g.has_edge(j, u):
                    g.add_edge(j, u, init=True)
            return g
        return self.cached("graph", build).copy()

    def describe(self, eq: Equation) -> str:
        """One equation as text: ``c = add(a, b)  # (3,)``."""
        out = self.variables[eq.out]
        if eq.kind == "root":
            residual = self.variables[eq.args[1]].name
            return f"0 = {residual}  # root: determines {out.name} {out.shape}"
        words = []
        for a in eq.args:
            words.append(self.variables[a].name if isinstance(a, int) else _const_text(a))
        words += [f"{k}={_param_text(v)}" for k, v in eq.params.items()]
        return f"{out.name} = {eq.primitive.name}({', '.join(words)})  # {out.shape}"

    @property
    def blocks(self) -> list[Block]:
        """Strongly connected components of the graph, in topological order
        (a list of :class:`lagrad.ir.blocks.Block`)."""
        return self.cached("blocks", find_blocks)

    def __str__(self) -> str:
        lines = [f"input {v.name}: {v.shape}" for v in self.inputs]
        lines += [f"unknown {v.name}: {v.shape}" for v in self.variables if v.kind == "unknown"]
        lines += [self.describe(eq) for eq in self.equations]
        if self._output is not None:
            lines.append(f"output {self._output.name}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<Program {self.name!r}: {len(self.variables)} variables, "
                f"{len(self.equations)} equations>")


def require_program(obj: Any, where: str) -> Program:
    """``obj`` when it is a :class:`Program`; else a ProgramError saying how to
    make one (a function passed where a program is expected)."""
    if not isinstance(obj, Program):
        raise ProgramError(f"{where}: expected a lagrad.Program, got {type(obj).__name__}; "
                           "trace the function first: lagrad.trace(fn, *example_args)")
    return obj


# ------------------------------------------------------------------ binding

def bind(prim: P.Primitive, args: Sequence[Any], params: Mapping[str, Any],
         program: Program | None = None) -> Any:
    """Apply ``prim``: to numbers, return its value; to variables, record it."""
    refs: list[Any] = []
    shapes: list[Any] = []
    constants = False
    for a in args:
        if isinstance(a, Variable):
            if program is None:
                program = a.program
            elif a.program is not program:
                raise ProgramError(f"{prim.name}: argument {a.name!r} belongs to another "
                                   "program; variables cannot be shared between programs "
                                   "(inside lagrad.fixed_point/root, pass traced values as "
                                   "extra arguments instead of closing over them)")
            refs.append(a.index)
            shapes.append(a.shape)
        else:
            refs.append(a)
            shapes.append(None)
            constants = True
    if program is None:
        return prim.value(*(np.asarray(a, dtype=float) for a in args), **params)
    if constants:
        for k, shape in enumerate(shapes):
            if shape is None:
                c = refs[k] = _constant(refs[k], prim)
                shapes[k] = c.shape
    try:
        shape = tuple(map(int, prim.shape(*shapes, **params)))
    except IndexError as err:  # an IndexError too: iteration protocols stop on it
        raise TracedIndexError(f"{prim.name}({_arg_names(args)}): {err}; indices must lie "
                               "within the variable's shape") from err
    except (ValueError, TypeError) as err:
        raise ProgramError(f"{prim.name}({_arg_names(args)}): {err}") from err
    # constants are frozen copies: the caller may change its arrays afterwards
    frozen_params = {k: frozen_param(v) for k, v in params.items()} if params else {}
    return program._record(prim, tuple(refs), frozen_params, shape)


def _arg_names(args: Sequence[Any]) -> str:
    return ", ".join(a.name if isinstance(a, Variable) else f"const{np.shape(a)}" for a in args)


def _constant(a: Any, prim: P.Primitive) -> np.ndarray:
    c = np.asarray(a)
    if c.dtype == object or c.dtype.kind not in "biuf":
        raise ProgramError(f"{prim.name}: cannot use {type(a).__name__} {a!r} as a constant; "
                           "constants must be real numbers or numeric arrays")
    return frozen(c, float)


def _init(init: Any, shape: Shape, name: str) -> np.ndarray:
    start = as_real(init, f"init of unknown {name!r}")
    if start.shape != shape and start.size != math.prod(shape):
        raise ProgramError(f"init of unknown {name!r} has shape {start.shape}, the unknown "
                           f"has shape {shape}; give an array of that shape")
    return frozen(start.reshape(shape))


def _shape(shape: Any, what: str) -> Shape:
    dims = (shape,) if isinstance(shape, (int, np.integer)) else shape
    try:
        dims = tuple(dims)
    except TypeError:
        dims = (shape,)  # a float or other non-iterable: rejected below
    if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 0
               for n in dims):
        raise ProgramError(f"{what}: shape {shape!r} is not a shape; give a non-negative int "
                           "or a tuple of them")
    return tuple(int(n) for n in dims)


def _const_text(c: np.ndarray) -> str:
    if c.ndim == 0:
        return repr(float(c))
    return f"const{c.shape}"


def _param_text(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"array{v.shape}"
    if hasattr(v, "nnz"):  # a scipy.sparse matrix
        return f"sparse{v.shape}"
    return repr(v)
