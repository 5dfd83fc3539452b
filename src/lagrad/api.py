"""The functional API, with JAX's conventions: grad, value_and_grad, jvp, vjp,
jacobian, jacfwd, jacrev.

Each call traces the function (arguments outside ``argnums`` and keyword
arguments become constants), solves the program, and solves its multiplier or
tangent system. Arguments, results and auxiliary data may be pytrees (nested
tuples, lists, dicts and namedtuples; see :mod:`lagrad.tree`): derivatives
come back in the structure of what they are derivatives of.

Precision: lagrad computes in float64 whatever the inputs, then casts each
result to the precision of what it belongs to. A gradient or cotangent has its
input's dtype (float32 in, float32 out). Values, tangents and auxiliary data
have the *output dtype*: numpy's promotion of the dtypes of the floating-point
arrays among the arguments (float64 when there is none, as for Python floats).
A Jacobian block has the promotion of the output dtype and its input's dtype.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad import tree
from lagrad.errors import MissingDerivativeError, OptionError, ProgramError
from lagrad.ir.cache import TraceCache
from lagrad.ir.constants import as_real
from lagrad.ir.custom import custom_jvp
from lagrad.ir.program import Program, Variable
from lagrad.ir.trace import Traced, normalize_argnums, trace_args
from lagrad.numeric import all_finite
from lagrad.options import SolveOptions
from lagrad.solve.linsolve import SolveInfo, resolve_method, solve_system
from lagrad.solve.multirhs import unit_solves
from lagrad.solve.results import BlockResult
from lagrad.solve.second import multiplier_tangent
from lagrad.solve.solution import Solution, solve_checked
from lagrad.solve.sparsejac import sparse_jacobian
from lagrad.solve.system import ADJOINT, TANGENT

__all__ = ["grad", "value_and_grad", "jvp", "vjp", "jacobian", "jacfwd", "jacrev", "jit",
           "Jitted", "DerivativeInfo", "hvp", "hessian"]

ArgNums = int | Sequence[int]
Options = Mapping[str, Any] | SolveOptions | None


@dataclass(frozen=True)
class DerivativeInfo:
    """What the solves of one call did (``return_info=True``).

    Attributes
    ----------
    forward : dict of int to BlockResult
        Each cyclic block's forward (nonlinear) solve, by block number.
    adjoint : SolveInfo or None
        The multiplier solve (grad, value_and_grad); its ``blocks`` list each
        cyclic block's linear solve (method, iterations, residual).
    tangent : SolveInfo or None
        The tangent solve (jvp).
    traced : bool
        Whether this call traced the function (False: a cached program ran).
    program : Program
        The program that was solved.
    """

    forward: dict[int, BlockResult]
    program: Program
    adjoint: SolveInfo | None = None
    tangent: SolveInfo | None = None
    traced: bool = True


@dataclass(frozen=True)
class _Setup:
    """A transform's solver options, resolved at the call that made it."""

    options: SolveOptions = field(default_factory=SolveOptions)
    cache: TraceCache | None = None
    return_info: bool = False

    @property
    def linear_method(self) -> str:
        return self.options.adjoint_method or "auto"

    @property
    def default_linear(self) -> bool:
        return self.linear_method in ("auto", "backsub") and not self.options.linear


def _setup(solve_options: Options, return_info: bool = False,
           cache: TraceCache | None = None) -> _Setup:
    """Validate the options where they are given (OptionError at the call site)."""
    options = SolveOptions.from_mapping(solve_options)
    solver = resolve_method(options.adjoint_method or "auto")
    if options.linear and not solver.takes_options:
        raise OptionError(f"adjoint_method {solver.name!r} takes no options, got "
                          f"{sorted(options.linear)}")
    if not isinstance(return_info, bool):
        raise OptionError(f"return_info must be True or False, got {return_info!r}")
    return _Setup(options, cache, return_info)


@dataclass(frozen=True)
class Transform:
    """What a transform made by :func:`grad` or :func:`value_and_grad` is of:
    read by :func:`lagrad.vmap` to batch the function inside it."""

    kind: str  # "grad" or "value_and_grad"
    fn: Callable[..., Any]
    argnums: ArgNums
    has_aux: bool
    setup: _Setup


@dataclass
class _Call:
    """One call's traced program, its solution and whether it traced."""

    traced: Traced
    sol: Solution
    traced_now: bool
    memo: dict[str, Any] = field(default_factory=dict)  # kept with a cached trace

    def dtype(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> np.dtype[Any]:
        """The output dtype (see the module notes), remembered with a cached
        trace: the cache key (dtypes and constants) determines it."""
        dtype = self.memo.get("dtype")
        if dtype is None:
            dtype = self.memo["dtype"] = _output_dtype(args, kwargs)
        return dtype

    def info(self, **solves: SolveInfo | None) -> DerivativeInfo:
        return DerivativeInfo(dict(self.sol.diagnostics), self.traced.program,
                              traced=self.traced_now, **solves)


def _trace_solve(fn: Callable[..., Any], setup: _Setup, args: Sequence[Any],
                 kwargs: Mapping[str, Any], argnums: tuple[int, ...], *,
                 has_aux: bool = False, tree_output: bool = False) -> _Call:
    if setup.cache is None:
        traced = trace_args(fn, args, argnums, kwargs=kwargs, has_aux=has_aux,
                            tree_output=tree_output, allow_int=False)
        values, now, memo = traced.values, True, {}
    else:
        hit = setup.cache.lookup(args, kwargs, argnums, has_aux=has_aux,
                                 tree_output=tree_output)
        traced, values, now, memo = hit.traced, hit.values, hit.traced_now, hit.memo
    forward = setup.options.forward
    # the trace checked the inputs (and the cache key matched their shapes and dtypes)
    sol = traced.program.solve(*values, **forward) if forward else \
        solve_checked(traced.program, values)
    return _Call(traced, sol, now, memo)


def _adjoint(sol: Solution, setup: _Setup, cotangent: Any = None
             ) -> tuple[NDArray[np.float64], SolveInfo | None]:
    """The multipliers (flat) and, when asked for, their solve's info."""
    if setup.default_linear and cotangent is None:
        lam = sol.multipliers().vector
        return lam, sol.adjoint_info if setup.return_info else None
    x, info = solve_system(sol.adjoint_system(cotangent), setup.linear_method,
                           setup.options.linear, compute_residual=setup.return_info)
    return x, info


class Jitted:
    """``fn`` with its traces cached: see :func:`jit`.

    Calling it solves ``fn``'s program at the arguments (their values); the
    transforms (:func:`grad`, :func:`value_and_grad`, :func:`jvp`, ...)
    applied to it share its cache. ``cache.traces`` counts the traces.
    """

    def __init__(self, fn: Callable[..., Any], static_argnums: ArgNums = (),
                 max_traces: int | None = None) -> None:
        self.fn = fn
        self.static_argnums = static_argnums
        self.cache = TraceCache(fn) if max_traces is None else TraceCache(fn, max_traces)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        static = normalize_argnums(self.static_argnums, len(args)) if args else ()
        nums = tuple(k for k in range(len(args)) if k not in static)
        setup = _Setup(cache=self.cache)
        call = _trace_solve(self.fn, setup, args, kwargs, nums, tree_output=True)
        return _unflatten_output(call.traced, call.sol.output, call.dtype(args, kwargs))

    def __repr__(self) -> str:
        return f"<lagrad.jit of {getattr(self.fn, '__name__', self.fn)!r}>"


def _unjit(fn: Callable[..., Any], setup: _Setup) -> tuple[Callable[..., Any], _Setup]:
    """A jitted function's own function, with its cache in the setup."""
    if isinstance(fn, Jitted):
        return fn.fn, _Setup(setup.options, fn.cache, setup.return_info)
    return fn, setup


def jit(fn: Callable[..., Any], *, static_argnums: ArgNums = (),
        max_traces: int | None = None) -> Any:
    """Trace once, run many: ``fn`` with its programs cached (as ``jax.jit``).

    Parameters
    ----------
    fn : callable
        A function of lagrad operations, or a transform of one
        (``lagrad.jit(lagrad.value_and_grad(loss))``).
    static_argnums : int or sequence of int
        For a plain function: positional arguments passed as constants (not
        traced), for Python control flow on them. Transforms already pass the
        arguments outside ``argnums`` as constants.
    max_traces : int, optional
        Programs kept (least recently used dropped first; default 32).

    Returns
    -------
    Jitted or callable
        For a plain function, a :class:`Jitted`: calling it returns ``fn``'s
        value; ``lagrad.grad(jitted)`` and the other transforms share its
        cache. For a transform, the same transform with a cache; its
        ``cache.traces`` counts the traces.

    Notes
    -----
    A call traces ``fn`` when no program was traced for its *key*: the
    structure, shapes and dtypes of the traced (differentiated) arguments,
    the values of the other arguments and keyword arguments (constants baked
    into the program: arrays are compared with a copy taken at trace time,
    other values must be hashable and are compared with ``==``), and the
    transform's ``argnums`` and ``has_aux``. Values of traced arguments never
    retrace: placeholders carry shapes only. An argument that is neither an
    array nor hashable (a scipy.sparse matrix) retraces at every call.

    As in JAX, what ``fn`` closes over (arrays in an enclosing scope,
    globals) is baked in at the first trace: a later change is not seen.
    Pass such values as arguments, or call ``cache.clear()``.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> step = lagrad.jit(lagrad.value_and_grad(lambda w, x: ((x @ w) ** 2).sum()))
    >>> x = np.ones((4, 3))
    >>> for k in range(3):
    ...     loss, g = step(np.full(3, float(k)), x)
    >>> step.cache.traces, float(loss), g
    (1, 144.0, array([48., 48., 48.]))
    """
    rebuild = getattr(fn, "lagrad_with_cache", None)
    if rebuild is not None:
        return rebuild(max_traces)
    return Jitted(fn, static_argnums, max_traces)


def _with_cache(wrapped: Callable[..., Any], fn: Callable[..., Any],
                build: Callable[[TraceCache], Callable[..., Any]],
                cache: TraceCache | None) -> Callable[..., Any]:
    """Attach to a transform how :func:`jit` makes its cached twin."""
    def rebuild(max_traces: int | None) -> Callable[..., Any]:
        return build(TraceCache(fn) if max_traces is None else TraceCache(fn, max_traces))
    wrapped.lagrad_with_cache = rebuild  # type: ignore[attr-defined]
    wrapped.cache = cache  # type: ignore[attr-defined]
    return wrapped


def _pick(results: tuple[Any, ...], argnums: ArgNums) -> Any:
    return results[0] if isinstance(argnums, (int, np.integer)) else results


def _output_dtype(args: Sequence[Any], kwargs: Mapping[str, Any]) -> np.dtype[Any]:
    """numpy's promotion of the floating-point arrays among the arguments."""
    if not kwargs and all(isinstance(a, (np.ndarray, float)) for a in args):  # no walk
        found = [a.dtype for a in args if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
        return np.result_type(*found) if found else np.dtype(np.float64)
    found = [leaf.dtype for leaf in tree.leaves((tuple(args), dict(kwargs)))
             if isinstance(leaf, (np.ndarray, np.generic)) and leaf.dtype.kind == "f"]
    return np.result_type(*found) if found else np.dtype(np.float64)


def _cast(value: Any, dtype: np.dtype[Any]) -> Any:
    """``value`` (computed in float64) in ``dtype``; a numpy scalar when 0-d."""
    return value if dtype == np.float64 else np.asarray(value).astype(dtype)[()]


def _unflatten_output(traced: Traced, value: Any, dtype: np.dtype[Any]) -> Any:
    """The program's output vector as the function's result: one leaf is the
    output itself, several were raveled and concatenated into it."""
    if traced.out_tree.num_leaves == 1:
        return tree.unflatten(traced.out_tree, [_cast(value, dtype)])
    flat, parts, start = np.ravel(value), [], 0
    for shape in traced.out_shapes:
        part = flat[start:start + math.prod(shape)].reshape(shape)
        parts.append(_cast(part[()] if not shape else part.copy(), dtype))
        start += math.prod(shape)
    return tree.unflatten(traced.out_tree, parts)


def _aux_values(traced: Traced, sol: Solution, dtype: np.dtype[Any]) -> Any:
    """The auxiliary data with each traced variable replaced by its value."""
    def value(leaf: Any) -> Any:
        return _cast(sol[leaf], dtype) if isinstance(leaf, Variable) else leaf
    return tree.map(value, traced.aux)


def _input_gradients(traced: Traced, flat: Sequence[Any]) -> tuple[Any, ...]:
    """Per-input derivatives in their inputs' dtypes, as one tree per argument."""
    return traced.regroup([_cast(g, d) for g, d in zip(flat, traced.dtypes)])


def value_and_grad(fn: Callable[..., Any], argnums: ArgNums = 0, has_aux: bool = False, *,
                   solve_options: Options = None, return_info: bool = False
                   ) -> Callable[..., Any]:
    """A function returning ``fn``'s value and its gradient with respect to
    the arguments ``argnums``.

    Parameters
    ----------
    fn : callable
        Returns a scalar (shape ``()``) built from lagrad operations; with
        ``has_aux``, a pair ``(scalar, aux)``. Keyword arguments given to the
        returned function are passed to ``fn`` and not differentiated.
    argnums : int or sequence of int
        Which positional arguments to differentiate (negative counts from the
        end). Each may be an array, a float or a pytree of them; its leaves
        must be floating-point (integer and boolean leaves raise).
    has_aux : bool
        Whether ``fn`` returns ``(value, aux)``; ``aux`` is passed back with
        each traced variable in it replaced by its value.
    solve_options : dict or SolveOptions, optional
        Options of the solves behind every call: ``method``, ``tol``,
        ``maxiter`` (the forward solve of the cyclic blocks) and
        ``adjoint_method``, ``adjoint_tol``, ``adjoint_maxiter`` (the
        multiplier solve); see :class:`lagrad.options.SolveOptions`.
    return_info : bool
        Also return a :class:`DerivativeInfo` with the solves' diagnostics.

    Returns
    -------
    callable
        ``f(*args, **kwargs) -> (value, grad)``, or ``((value, aux), grad)``
        with ``has_aux``; with ``return_info``, ``(that, info)``. ``grad``
        has the argument's structure (a tuple of them when ``argnums`` is a
        sequence) and each leaf its input's dtype;
        the computation runs in float64 (see the module notes on precision).

    Raises
    ------
    ProgramError
        If ``fn``'s output is not a scalar, or an argument's leaf is not real
        numbers (the message names its path, as ``params['w1']``).
    InputDtypeError
        If a differentiated leaf holds integers or booleans (also a TypeError).
    OptionError
        If ``argnums`` is not an argument position; when the transform is
        made, for an unknown or invalid solver option.

    See Also
    --------
    jit : trace once, run many.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> v, g = lagrad.value_and_grad(lambda x: (x ** 2).sum())(np.array([1.0, 2.0]))
    >>> float(v), g
    (5.0, array([2., 4.]))
    >>> def loss(p, x):
    ...     err = p["w"] * x + p["b"]
    ...     return (err ** 2).sum(), err
    >>> (v, err), g = lagrad.value_and_grad(loss, has_aux=True)(
    ...     {"w": 2.0, "b": 1.0}, np.array([1.0, -1.0]))
    >>> float(v), err, g
    (10.0, array([ 3., -1.]), {'b': np.float64(4.0), 'w': np.float64(8.0)})
    """
    return _value_and_grad(fn, argnums, has_aux, _setup(solve_options, return_info))


def _value_and_grad(fn: Callable[..., Any], argnums: ArgNums, has_aux: bool, setup: _Setup
                    ) -> Callable[..., Any]:
    inner, setup = _unjit(fn, setup)
    positions = functools.lru_cache(maxsize=8)(functools.partial(normalize_argnums, argnums))

    @functools.wraps(inner)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        nums = positions(len(args))
        call = _trace_solve(inner, setup, args, kwargs, nums, has_aux=has_aux)
        traced, sol = call.traced, call.sol
        out = traced.program.output_variable
        if out.size != 1 or out.shape != ():
            raise ProgramError(f"grad needs a scalar output; {getattr(fn, '__name__', 'fn')} "
                               f"returned shape {out.shape} (use lagrad.jacobian or lagrad.vjp)")
        lam, info = _adjoint(sol, setup)
        grads = _pick(_input_gradients(traced, sol.schedule.index.take(lam, sol.schedule.inputs)),
                      argnums)
        # unbound before the Solution goes: only then is lambda recycled (solve/buffers.py),
        # not allocated afresh (page faults through it) at the next call
        del lam
        dtype = call.dtype(args, kwargs)
        value = _cast(sol.output, dtype)
        result = ((value, _aux_values(traced, sol, dtype)), grads) if has_aux else (value, grads)
        return (result, call.info(adjoint=info)) if setup.return_info else result
    wrapped.lagrad_transform = Transform(  # type: ignore[attr-defined]
        "value_and_grad", inner, argnums, has_aux, setup)
    return _with_cache(wrapped, inner, lambda cache: _value_and_grad(
        inner, argnums, has_aux, _Setup(setup.options, cache, setup.return_info)), setup.cache)


def grad(fn: Callable[..., Any], argnums: ArgNums = 0, has_aux: bool = False, *,
         solve_options: Options = None, return_info: bool = False) -> Callable[..., Any]:
    """A function returning the gradient of a scalar-output ``fn`` with
    respect to the arguments ``argnums``.

    Parameters
    ----------
    fn : callable
        Returns a scalar; with ``has_aux``, a pair ``(scalar, aux)``.
    argnums : int or sequence of int
        Which positional arguments to differentiate, as in :func:`value_and_grad`.
    has_aux : bool
        Whether ``fn`` returns ``(value, aux)``.
    solve_options, return_info
        As :func:`value_and_grad`.

    Returns
    -------
    callable
        ``f(*args, **kwargs) -> grad``, or ``(grad, aux)`` with ``has_aux``;
        with ``return_info``, ``(that, info)``.
        The gradient has the argument's structure (dict in, dict out; a tuple
        of them when ``argnums`` is a sequence) and each leaf its input's
        dtype; the computation runs in float64.

    Raises
    ------
    ProgramError, InputDtypeError, OptionError
        As :func:`value_and_grad`.

    See Also
    --------
    value_and_grad : the value and the gradient.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> df = lagrad.grad(lambda x: lagrad.sin(x) * x)
    >>> round(float(df(2.0)), 6)
    0.077004
    >>> lagrad.grad(lambda x, y: x * y, argnums=(0, -1))(3.0, 2.0)
    (np.float64(2.0), np.float64(3.0))
    >>> lagrad.grad(lambda p, *, scale: scale * (p[0][0] * p[0][1]))(((2.0, 5.0),), scale=2.0)
    ((np.float64(10.0), np.float64(4.0)),)
    >>> lagrad.grad(lambda x: (x ** 2).sum())(np.ones(2, dtype=np.float32))
    array([2., 2.], dtype=float32)
    """
    return _grad(fn, argnums, has_aux, _setup(solve_options, return_info))


def _grad(fn: Callable[..., Any], argnums: ArgNums, has_aux: bool, setup: _Setup
          ) -> Callable[..., Any]:
    vg = _value_and_grad(fn, argnums, has_aux, setup)
    inner, setup = _unjit(fn, setup)

    @functools.wraps(inner)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if _traced(args):  # under an outer transform: grad(grad(f)), jacobian(grad(f))
            return _traced_grad(inner, argnums, has_aux, setup, args, kwargs)
        result = vg(*args, **kwargs)
        if setup.return_info:
            (head, grads), info = result
            return ((grads, head[1]) if has_aux else grads), info
        head, grads = result
        return (grads, head[1]) if has_aux else grads
    wrapped.lagrad_transform = Transform(  # type: ignore[attr-defined]
        "grad", inner, argnums, has_aux, setup)
    return _with_cache(wrapped, inner, lambda cache: _grad(
        inner, argnums, has_aux, _Setup(setup.options, cache, setup.return_info)), setup.cache)


def _traced(args: Sequence[Any]) -> bool:
    return any(isinstance(leaf, Variable) for leaf in tree.leaves(tuple(args)))


def _traced_grad(fn: Callable[..., Any], argnums: ArgNums, has_aux: bool, setup: _Setup,
                 args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """``grad(fn, argnums)(*args)`` where an outer transform traces ``args``: one
    equation whose value is the gradient (an inner solve at the values) and
    whose derivative is the Hessian, by forward over reverse (:func:`hvp`).
    So nested derivatives need no nested tracing. Supported: one argument
    number, arguments that are arrays or floats, no ``has_aux``."""
    if has_aux or setup.return_info or not isinstance(argnums, (int, np.integer)) or \
            any(isinstance(a, (tuple, list, dict)) for a in args):
        raise ProgramError("grad of a function traced by another transform (grad(grad(f)), "
                           "jacobian(grad(f))) supports one argument number, array or float "
                           "arguments and no has_aux or return_info; use lagrad.hessian or "
                           "lagrad.hvp for the rest")
    k = normalize_argnums(argnums, len(args))[0]
    gradient = _grad(fn, k, False, setup)

    def value(*vals: Any) -> Any:
        return np.asarray(gradient(*vals, **kwargs), dtype=float)

    def tangent(primals: Sequence[Any], tangents: Sequence[Any]) -> tuple[Any, Any]:
        if _traced(primals):  # this rule's own derivative: a third derivative of fn
            raise MissingDerivativeError(
                "third derivatives (grad(grad(grad(f))), or hessian or hvp of a function "
                "that calls grad) are not supported: nesting goes to depth 2; "
                "differentiate grad(f) once (grad, jacobian, hvp), or take lagrad.hessian "
                "of f itself")
        ts = [np.zeros(np.shape(p)) if t is None else t for p, t in zip(primals, tangents)]
        h = hvp(functools.partial(fn, **kwargs), tuple(primals), tuple(ts),
                solve_options=setup.options)
        return value(*primals), np.asarray(h[k] if len(primals) > 1 else h, dtype=float)

    value.__name__ = value.__qualname__ = f"grad({getattr(fn, '__name__', 'f')})"  # in errors
    rule = custom_jvp(value, out_shape=tuple(np.shape(args[k])))
    rule.defjvp(tangent)
    return rule(*args)


def jvp(fn: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any],
        has_aux: bool = False, *, solve_options: Options = None, return_info: bool = False
        ) -> tuple[Any, ...]:
    """Forward mode: ``fn``'s value and its derivative along ``tangents``.

    Parameters
    ----------
    fn : callable
        Called as ``fn(*primals)``; returns an array or a pytree of arrays
        (with ``has_aux``, a pair ``(result, aux)``).
    primals : sequence
        One argument per entry, each an array, a float or a pytree of them
        (floating-point leaves).
    tangents : sequence
        One direction per primal, with the primal's structure and shapes.
    has_aux : bool
        Whether ``fn`` returns ``(result, aux)``.
    solve_options : dict or SolveOptions, optional
        As :func:`value_and_grad` (``adjoint_*`` set the tangent solve).
    return_info : bool
        Also return a :class:`DerivativeInfo` (last in the tuple).

    Returns
    -------
    tuple
        ``(value, tangent)``, or ``(value, tangent, aux)`` with ``has_aux``;
        ``tangent`` (d fn(primals) . tangents) has the result's structure. Both
        have the output dtype (the computation runs in float64).

    Raises
    ------
    ProgramError
        If a tangent's structure or shape differs from its primal's (named by
        its path), or a leaf is not real numbers.
    InputDtypeError
        If a primal's leaf holds integers or booleans.
    OptionError
        If ``primals`` and ``tangents`` differ in length.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> y, ty = lagrad.jvp(lagrad.exp, (0.0,), (2.0,))
    >>> float(y), float(ty)
    (1.0, 2.0)
    >>> lagrad.jvp(lambda p: {"s": p[0] + p[1], "d": p[0] * p[1]}, ((2.0, 3.0),), ((1.0, 0.0),))
    ({'d': np.float64(6.0), 's': np.float64(5.0)}, {'d': np.float64(3.0), 's': np.float64(1.0)})
    """
    fn, setup = _unjit(fn, _setup(solve_options, return_info))
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise OptionError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    call = _trace_solve(fn, setup, primals, {}, tuple(range(len(primals))), has_aux=has_aux,
                        tree_output=True)
    traced, sol = call.traced, call.sol
    flat: list[Any] = []
    for k, (treedef, tangent) in enumerate(zip(traced.trees, tangents)):
        flat += tree.flatten_up_to(treedef, tangent, f"tangents[{k}]")
    for v, t in zip(traced.program.inputs, flat):
        t = as_real(t, f"tangent for {v.name!r}")
        if t.shape != v.shape:
            raise ProgramError(f"tangent for {v.name!r} has shape {t.shape}, its primal has shape "
                               f"{v.shape}")
    zdot, info = solve_system(sol.tangent_system(tuple(flat)), setup.linear_method,
                              setup.options.linear, compute_residual=setup.return_info)
    dtype = _output_dtype(primals, {})
    value = _unflatten_output(traced, sol.output, dtype)
    out_slice = sol.schedule.index[traced.program.output_variable]
    tangent_out = _unflatten_output(
        traced, zdot[out_slice].reshape(traced.program.output_variable.shape), dtype)
    result = (value, tangent_out, _aux_values(traced, sol, dtype)) if has_aux \
        else (value, tangent_out)
    return (*result, call.info(tangent=info)) if setup.return_info else result


def vjp(fn: Callable[..., Any], *primals: Any, has_aux: bool = False,
        solve_options: Options = None) -> tuple[Any, ...]:
    """Reverse mode: ``fn``'s value and a function pulling cotangents back.

    Parameters
    ----------
    fn : callable
        Called as ``fn(*primals)``; returns an array or a pytree of arrays
        (with ``has_aux``, a pair ``(result, aux)``).
    *primals
        The arguments, each an array, a float or a pytree of them
        (floating-point leaves).
    has_aux : bool
        Whether ``fn`` returns ``(result, aux)``.
    solve_options : dict or SolveOptions, optional
        As :func:`value_and_grad`.

    Returns
    -------
    tuple
        ``(value, vjp_fn)`` or ``(value, vjp_fn, aux)``. ``vjp_fn(cotangent)``
        takes a cotangent with the result's structure and returns one
        cotangent per primal, as a tuple, each with its primal's structure and
        dtypes (the computation runs in float64).

    Raises
    ------
    ProgramError
        If a primal's leaf is not real numbers; from ``vjp_fn``, if the
        cotangent's structure or shapes differ from the result's.
    InputDtypeError
        If a primal's leaf holds integers or booleans.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> y, pullback = lagrad.vjp(lambda x: 2.0 * x, np.ones(2))
    >>> pullback(np.array([1.0, 3.0]))
    (array([2., 6.]),)
    >>> y, pullback = lagrad.vjp(lambda a, b: (a * b, a + b), 2.0, 3.0)
    >>> pullback((1.0, 0.0))
    (np.float64(3.0), np.float64(2.0))
    """
    fn, setup = _unjit(fn, _setup(solve_options))
    call = _trace_solve(fn, setup, primals, {}, tuple(range(len(primals))), has_aux=has_aux,
                        tree_output=True)
    traced, sol = call.traced, call.sol
    out = traced.program.output_variable
    paths = [p for p, _ in tree.flatten_with_path(
        tree.unflatten(traced.out_tree, range(traced.out_tree.num_leaves)))[0]]

    def vjp_fn(cotangent: Any) -> tuple[Any, ...]:
        parts = []
        leaves = tree.flatten_up_to(traced.out_tree, cotangent, "cotangent")
        for path, shape, leaf in zip(paths, traced.out_shapes, leaves):
            ct = as_real(leaf, f"cotangent{path}")  # complex: the real part, with a warning
            if ct.shape != shape:
                raise ProgramError(f"cotangent{path} has shape {ct.shape}, the output{path} has "
                                   f"shape {shape}")
            parts.append(ct)
        seed = parts[0] if len(parts) == 1 else np.concatenate([np.ravel(p) for p in parts]) \
            if parts else np.zeros(0)
        lam = solve_system(sol.adjoint_system(seed.reshape(out.shape)), setup.linear_method,
                           setup.options.linear, compute_residual=False).x
        return _input_gradients(traced, sol.schedule.index.take(lam, sol.schedule.inputs))

    dtype = _output_dtype(primals, {})
    value = _unflatten_output(traced, sol.output, dtype)
    if has_aux:
        return value, vjp_fn, _aux_values(traced, sol, dtype)
    return value, vjp_fn


_MODES = ("auto", "reverse", "forward")


def jacobian(fn: Callable[..., Any], argnums: ArgNums = 0, mode: str = "auto", *,
             has_aux: bool = False, solve_options: Options = None,
             sparse: bool = False) -> Callable[..., Any]:
    """A function returning the Jacobian of ``fn`` with respect to the
    arguments ``argnums`` (as ``jax.jacobian``).

    Parameters
    ----------
    fn : callable
        Returns an array or a pytree of arrays (with ``has_aux``, a pair
        ``(result, aux)``). Keyword arguments given to the returned function
        are passed to ``fn`` and not differentiated.
    argnums : int or sequence of int
        Which positional arguments to differentiate (negative counts from the
        end); each may be a pytree of floating-point arrays.
    mode : {"auto", "reverse", "forward"}
        "reverse" solves one adjoint system per output entry, "forward" one
        tangent system per input entry, "auto" whichever needs fewer solves.
        With the default linear method they are solved together: one sweep
        with a block of seeds (a k-column right-hand side), so that matrix
        products become matrix-matrix products and each cyclic block is
        factorized or iterated once for all of them; a named
        ``adjoint_method`` solves them one by one.
        With ``sparse``: colour rows ("reverse") or columns ("forward") of the
        Jacobian, or whichever needs fewer colours ("auto").
    has_aux : bool
        Whether ``fn`` returns ``(result, aux)``.
    sparse : bool
        Return one ``scipy.sparse.csr_matrix`` of shape (output size, input
        leaf size) per input leaf (the output flattened): the pattern is found
        from the program (which input entries reach which output entries), its
        columns or rows are grouped by a greedy colouring, and all colours are
        solved in one sweep with one right-hand side each.
    solve_options : dict or SolveOptions, optional
        As :func:`value_and_grad` (``adjoint_*`` set every linear solve).

    Returns
    -------
    callable
        ``f(*args, **kwargs) -> jac`` (or ``(jac, aux)``). ``jac`` has the
        result's structure; at each output leaf, the argument's structure (a
        tuple of them when ``argnums`` is a sequence), whose leaves have shape
        ``output_leaf.shape + input_leaf.shape``. A block's dtype promotes the
        output dtype with its input's (the computation runs in float64).

    Raises
    ------
    OptionError
        For an unknown ``mode`` or a wrong ``argnums``.
    ProgramError, InputDtypeError
        As :func:`value_and_grad`.

    See Also
    --------
    jacfwd, jacrev : the forward and reverse modes under JAX's names.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> lagrad.jacobian(lambda x: x ** 2)(np.array([1.0, 3.0]))
    array([[2., 0.],
           [0., 6.]])
    >>> jac = lagrad.jacobian(lambda p: {"y": p["a"] * p["b"]})({"a": np.ones(2), "b": 2.0})
    >>> jac["y"]["a"], jac["y"]["b"]
    (array([[2., 0.],
           [0., 2.]]), array([1., 1.]))
    >>> jac = lagrad.jacobian(lambda x: x ** 2, sparse=True)(np.array([1.0, 3.0]))
    >>> jac.format, jac.nnz, jac.diagonal()
    ('csr', 2, array([2., 6.]))
    """
    if not isinstance(mode, str) or mode not in _MODES:
        raise OptionError(f"jacobian: unknown mode {mode!r}; choose one of {_MODES}")
    return _jacobian(fn, argnums, mode, has_aux, _setup(solve_options), sparse)


def _jacobian(fn: Callable[..., Any], argnums: ArgNums, mode: str, has_aux: bool,
              setup: _Setup, sparse: bool = False) -> Callable[..., Any]:
    inner, setup = _unjit(fn, setup)

    @functools.wraps(inner)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        nums = normalize_argnums(argnums, len(args))
        call = _trace_solve(inner, setup, args, kwargs, nums, has_aux=has_aux,
                            tree_output=True)
        traced, sol = call.traced, call.sol
        dtype = call.dtype(args, kwargs)
        if sparse:
            blocks = [b.astype(np.result_type(dtype, d))
                      for b, d in zip(_sparse_blocks(sol, mode), traced.dtypes)]
            jac = _pick(traced.regroup(blocks), argnums)
            return (jac, _aux_values(traced, sol, dtype)) if has_aux else jac
        out = traced.program.output_variable
        inputs = sol.schedule.inputs
        n_in = sum(v.size for v in inputs)
        use_reverse = mode == "reverse" or (mode == "auto" and out.size <= n_in)
        flat = _reverse_rows(sol, setup) if use_reverse else _forward_columns(sol, setup)
        index = sol.schedule.index
        base = index[inputs[0]].start if inputs else 0
        jac_leaves, row = [], 0
        for shape in traced.out_shapes:
            rows = flat[row:row + math.prod(shape)]
            row += math.prod(shape)
            blocks = [_cast(rows[:, index[v].start - base:index[v].stop - base]
                            .reshape(shape + v.shape), np.result_type(dtype, d))
                      for v, d in zip(inputs, traced.dtypes)]
            jac_leaves.append(_pick(traced.regroup(blocks), argnums))
        jac = tree.unflatten(traced.out_tree, jac_leaves)
        return (jac, _aux_values(traced, sol, dtype)) if has_aux else jac
    return _with_cache(wrapped, inner, lambda cache: _jacobian(
        inner, argnums, mode, has_aux, _Setup(setup.options, cache), sparse), setup.cache)


def jacfwd(fn: Callable[..., Any], argnums: ArgNums = 0, has_aux: bool = False, *,
           solve_options: Options = None) -> Callable[..., Any]:
    """The Jacobian in forward mode (one tangent sweep seeded with every input entry):
    :func:`jacobian` with ``mode="forward"``, under JAX's name.

    Parameters
    ----------
    fn, argnums, has_aux, solve_options
        As :func:`jacobian`.

    Returns
    -------
    callable
        ``f(*args, **kwargs) -> jac`` (or ``(jac, aux)``), as :func:`jacobian`.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> lagrad.jacfwd(lambda x, y: x * y, argnums=1)(np.array([1.0, 2.0]), np.ones(2))
    array([[1., 0.],
           [0., 2.]])
    """
    return jacobian(fn, argnums, "forward", has_aux=has_aux, solve_options=solve_options)


def jacrev(fn: Callable[..., Any], argnums: ArgNums = 0, has_aux: bool = False, *,
           solve_options: Options = None) -> Callable[..., Any]:
    """The Jacobian in reverse mode (one adjoint sweep seeded with every output entry):
    :func:`jacobian` with ``mode="reverse"``, under JAX's name.

    Parameters
    ----------
    fn, argnums, has_aux, solve_options
        As :func:`jacobian`.

    Returns
    -------
    callable
        ``f(*args, **kwargs) -> jac`` (or ``(jac, aux)``), as :func:`jacobian`.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> lagrad.jacrev(lambda x: (x.sum(), x[0] * x[1]))(np.array([2.0, 3.0]))
    (array([1., 1.]), array([3., 2.]))
    """
    return jacobian(fn, argnums, "reverse", has_aux=has_aux, solve_options=solve_options)


def hvp(fn: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any], *,
        solve_options: Options = None) -> Any:
    """The Hessian of a scalar ``fn`` times ``tangents``, by forward over reverse
    on the multiplier system.

    Parameters
    ----------
    fn : callable
        Returns a scalar; every argument is differentiated.
    primals : sequence
        The arguments, each an array, a float or a pytree of them.
    tangents : sequence
        One direction per primal, with its structure and shapes.
    solve_options : dict or SolveOptions, optional
        As :func:`value_and_grad`; the linear method runs both solves.

    Returns
    -------
    Any
        H v: for one primal, with that primal's structure; for several, a
        tuple with one entry per primal (JAX's ``jvp(grad(f, argnums), ...)``).

    Raises
    ------
    MissingDerivativeError
        If ``fn`` uses a primitive without a second-order rule, or a custom
        rule (``custom_jvp``, ``custom_vjp``) whose rule lagrad cannot trace
        to differentiate it (named, saying what to change).
    ProgramError, InputDtypeError, OptionError
        As :func:`jvp`, and for a non-scalar result.

    Notes
    -----
    With lambda solving (I - J)^T lambda = e_n, differentiate along v: zdot
    solves (I - J) zdot = e_v, then (I - J)^T lambdadot = (dJ/dt)^T lambda,
    whose entry j is sum_i lambda_i sum_k d^2 f_i / dz_j dz_k zdot_k. The
    input part of lambdadot is H v. Inside a cyclic block (``fixed_point``,
    ``root``) both are linear solves with the multipliers' I - J_SS.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> f = lambda x: lagrad.sum(x ** 3)
    >>> lagrad.hvp(f, (np.array([1.0, 2.0]),), (np.array([1.0, 1.0]),))
    array([ 6., 12.])
    """
    fn, setup = _unjit(fn, _setup(solve_options))
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise OptionError(f"hvp: {len(primals)} primals but {len(tangents)} tangents")
    call = _trace_solve(fn, setup, primals, {}, tuple(range(len(primals))))
    traced, sol = call.traced, call.sol
    flat: list[Any] = []
    for k, (treedef, tangent) in enumerate(zip(traced.trees, tangents)):
        flat += tree.flatten_up_to(treedef, tangent, f"tangents[{k}]")
    index = sol.schedule.index
    e = np.zeros(sol.schedule.size)
    for v, t in zip(traced.program.inputs, flat):
        t = as_real(t, f"tangent for {v.name!r}")
        if t.shape != v.shape:
            raise ProgramError(f"tangent for {v.name!r} has shape {t.shape}, its primal has shape "
                               f"{v.shape}")
        e[index[v]] = t.ravel()
    lam, _ = _adjoint(sol, setup)
    lamdot = multiplier_tangent(sol, lam, e, setup.linear_method, setup.options.linear).lamdot
    result = _input_gradients(traced, index.take(lamdot, sol.schedule.inputs))
    return result[0] if len(primals) == 1 else result


def hessian(fn: Callable[..., Any], argnums: ArgNums = 0, *,
            solve_options: Options = None) -> Callable[..., Any]:
    """A function returning the Hessian of a scalar ``fn`` with respect to the
    arguments ``argnums``, as one Hessian-vector product per input entry.

    Parameters
    ----------
    fn : callable
        Returns a scalar built from lagrad operations.
    argnums : int or sequence of int
        Which positional arguments to differentiate, as in :func:`grad`.
    solve_options : dict or SolveOptions, optional
        As :func:`value_and_grad`.

    Returns
    -------
    callable
        ``h(*args, **kwargs)``, with JAX's layout: for an array argument of
        shape s, an array of shape s + s; for pytrees, a tree (the argument's)
        of trees whose leaves have shape s_i + s_j; for a sequence
        ``argnums``, a tuple of tuples.

    Raises
    ------
    MissingDerivativeError
        If ``fn`` uses a primitive without a second-order rule, or a custom
        rule (``custom_jvp``, ``custom_vjp``) whose rule lagrad cannot trace
        to differentiate it (named, saying what to change).

    See Also
    --------
    hvp : one column, H v.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> lagrad.hessian(lambda x: x[0] ** 2 * x[1])(np.array([1.0, 3.0]))
    array([[6., 2.],
           [2., 0.]])
    """
    return _hessian(fn, argnums, _setup(solve_options))


def _hessian(fn: Callable[..., Any], argnums: ArgNums, setup: _Setup) -> Callable[..., Any]:
    inner, setup = _unjit(fn, setup)

    @functools.wraps(inner)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        nums = normalize_argnums(argnums, len(args))
        call = _trace_solve(inner, setup, args, kwargs, nums)
        traced, sol = call.traced, call.sol
        lam, _ = _adjoint(sol, setup)
        lo, hi = _input_span(sol)
        columns = np.empty((hi - lo, hi - lo))
        for k in range(hi - lo):
            e = np.zeros(sol.schedule.size)
            e[lo + k] = 1.0
            columns[:, k] = multiplier_tangent(sol, lam, e, setup.linear_method,
                                               setup.options.linear).lamdot[lo:hi]
        dtype = call.dtype(args, kwargs)
        index, inputs = sol.schedule.index, sol.schedule.inputs
        rows = []
        for u, du in zip(inputs, traced.dtypes):
            blocks = [_cast(columns[index[u].start - lo:index[u].stop - lo,
                                    index[v].start - lo:index[v].stop - lo]
                            .reshape(u.shape + v.shape)[()], np.result_type(dtype, du, dv))
                      for v, dv in zip(inputs, traced.dtypes)]
            rows.append(_pick(traced.regroup(blocks), argnums))
        return _pick(traced.regroup(rows), argnums)
    return _with_cache(wrapped, inner, lambda cache: _hessian(
        inner, argnums, _Setup(setup.options, cache)), setup.cache)


def _sparse_blocks(sol: Solution, mode: str) -> list[Any]:
    """The sparse Jacobian cut into one CSR block of columns per input."""
    matrix = sparse_jacobian(sol, mode).matrix.tocsc()
    bounds = np.cumsum([0] + [v.size for v in sol.schedule.inputs])
    return [matrix[:, a:b].tocsr() for a, b in zip(bounds[:-1], bounds[1:])]


def _many_seeds(sol: Solution, setup: _Setup) -> bool:
    """Whether a Jacobian's solves may run as one sweep with many seeds: the
    default method, and no block with a method or backward mode of its own."""
    program = sol.schedule.program
    return setup.default_linear and sol.backward is None and not program.adjoint_options \
        and not program.block_backward


def _reverse_rows(sol: Solution, setup: _Setup) -> np.ndarray:
    """d output / d inputs: one adjoint sweep with a seed per output entry
    (lagrad.solve.multirhs), or one sweep per entry with a named method."""
    schedule = sol.schedule
    out = schedule.output_variable
    lo, hi = _input_span(sol)
    if _many_seeds(sol, setup):
        with np.errstate(all="ignore"):
            rows = unit_solves(schedule, sol.z, ADJOINT, schedule.index.positions([out]),
                               slice(lo, hi), sol.diagnostics).T
        if all_finite(rows):
            return rows
    rows = np.empty((out.size, hi - lo))  # one by one: a named method, or to blame
    for k in range(out.size):
        seed = np.zeros(out.size)
        seed[k] = 1.0
        system = sol.adjoint_system(seed.reshape(out.shape))
        rows[k] = solve_system(system, setup.linear_method, setup.options.linear,
                               compute_residual=False).x[lo:hi]
    return rows


def _forward_columns(sol: Solution, setup: _Setup) -> np.ndarray:
    """d output / d inputs: one tangent sweep with a seed per input entry, or
    one sweep per entry with a named method."""
    schedule = sol.schedule
    lo, hi = _input_span(sol)
    out_slice = schedule.index[schedule.output_variable]
    if _many_seeds(sol, setup):
        with np.errstate(all="ignore"):
            cols = unit_solves(schedule, sol.z, TANGENT, np.arange(lo, hi, dtype=np.intp),
                               out_slice, sol.diagnostics)
        if all_finite(cols):
            return cols
    cols = np.empty((out_slice.stop - out_slice.start, hi - lo))
    for k in range(hi - lo):
        e = np.zeros(schedule.size)
        e[lo + k] = 1.0
        system = sol.tangent_system(schedule.index.take(e, schedule.inputs))
        cols[:, k] = solve_system(system, setup.linear_method, setup.options.linear,
                                  compute_residual=False).x[out_slice]
    return cols


def _input_span(sol: Solution) -> tuple[int, int]:
    """Inputs are created first by tracing, so their slices are contiguous."""
    index = sol.schedule.index
    inputs = sol.schedule.inputs
    if not inputs:
        return 0, 0
    lo, hi = index[inputs[0]].start, index[inputs[-1]].stop
    assert hi - lo == sum(v.size for v in inputs)
    return lo, hi
