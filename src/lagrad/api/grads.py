"""Gradients and directional derivatives, with JAX's conventions: grad,
value_and_grad, jvp, vjp (see :mod:`lagrad.api` for the conventions shared by
every transform)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from lagrad import tree
from lagrad.api.common import (
    ArgNums,
    Options,
    Transform,
    _adjoint,
    _aux_values,
    _Call,
    _cast,
    _flat_tangents,
    _input_gradients,
    _output_dtype,
    _pick,
    _Setup,
    _setup,
    _trace_solve,
    _unflatten_output,
    _with_cache,
)
from lagrad.api.fastpath import fast_call, learn
from lagrad.api.jacobians import hvp
from lagrad.api.jit import _unjit
from lagrad.errors import MissingDerivativeError, OptionError, ProgramError, require_callable
from lagrad.ir.cache import TraceCache
from lagrad.ir.constants import as_real
from lagrad.ir.custom import custom_jvp
from lagrad.ir.program import Variable
from lagrad.ir.trace import Traced, normalize_argnums
from lagrad.solve.linsolve import solve_system
from lagrad.solve.solution import VariableMap
from lagrad.solve.system import System

__all__ = ["grad", "value_and_grad", "jvp", "vjp"]


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
    require_callable(fn, "lagrad.value_and_grad")
    return _value_and_grad(fn, argnums, has_aux, _setup(solve_options, return_info))


def _value_and_grad(fn: Callable[..., Any], argnums: ArgNums, has_aux: bool, setup: _Setup
                    ) -> Callable[..., Any]:
    inner, setup = _unjit(fn, setup)
    positions = functools.lru_cache(maxsize=8)(functools.partial(normalize_argnums, argnums))

    cache = setup.cache
    fast = cache is not None and not has_aux and setup.plain  # may take the fast path

    @functools.wraps(inner)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        nums = positions(len(args))
        if fast and not kwargs:
            found = fast_call(cache, args, nums)
            if found is not None:
                return found
        if cache is None:
            call, data = _trace_solve(inner, setup, args, kwargs, nums, has_aux=has_aux), ()
            adjoint, learnable = _scalar_adjoint(call, setup), False
        else:
            call, data, adjoint, learnable = _solve_jitted(inner, cache, setup, args, kwargs,
                                                           nums, has_aux)
        traced, sol = call.traced, call.sol
        if adjoint is None:
            raise ProgramError(f"grad needs a scalar output; {getattr(fn, '__name__', 'fn')} "
                               f"returned shape {traced.program.output_variable.shape} (use "
                               "lagrad.jacobian or lagrad.vjp)")
        lam, info = adjoint
        inputs = sol.schedule.inputs[:len(sol.schedule.inputs) - len(data)]
        grads = _pick(_input_gradients(traced, sol.schedule.index.take(lam, inputs), len(nums)),
                      argnums)
        # unbound before the Solution goes: only then is lambda recycled (solve/buffers.py),
        # not allocated afresh (page faults through it) at the next call
        del lam
        dtype = call.dtype(args, kwargs)
        value = _cast(sol.output, dtype)
        result = ((value, _aux_values(traced, sol, dtype)), grads) if has_aux else (value, grads)
        if fast and learnable and not kwargs:
            learn(cache, args, nums, data, sol, result,
                  _finisher(traced, dtype, argnums, len(nums)))
        return (result, call.info(adjoint=info)) if setup.return_info else result
    wrapped.lagrad_transform = Transform(  # type: ignore[attr-defined]
        "value_and_grad", inner, argnums, has_aux, setup)
    return _with_cache(wrapped, inner, lambda cache: _value_and_grad(
        inner, argnums, has_aux, _Setup(setup.options, cache, setup.return_info)), setup.cache)


def _data_positions(args: Sequence[Any], nums: tuple[int, ...]) -> tuple[int, ...]:
    """The positional arguments outside ``nums`` that a jitted value_and_grad
    traces as inputs without a gradient (read at each call, not baked in):
    floating-point arrays."""
    return tuple(k for k, a in enumerate(args)
                 if k not in nums and type(a) is np.ndarray and a.dtype.kind == "f")


def _scalar_adjoint(call: _Call, setup: _Setup) -> tuple[Any, Any] | None:
    """The multipliers and their info, or None for an output that is not a scalar."""
    out = call.traced.program.output_variable
    return None if out.size != 1 or out.shape != () else _adjoint(call.sol, setup)


def _solve_jitted(fn: Callable[..., Any], cache: TraceCache, setup: _Setup,
                  args: Sequence[Any], kwargs: Mapping[str, Any], nums: tuple[int, ...],
                  has_aux: bool) -> tuple[_Call, tuple[int, ...], tuple[Any, Any] | None, bool]:
    """A jitted call: (its traced and solved program, the positions of the
    data arrays it reads as its last inputs, the adjoint or None, whether the
    fast path may learn from it).

    The data arrays (:func:`_data_positions`) are traced as inputs, so that a
    new batch does not retrace. They are constants instead when tracing them
    fails (Python reads their values, or numpy functions lagrad does not
    trace), from then on for their shapes and dtypes; and for this call alone
    when a derivative through them is not finite (``sqrt`` of a data entry
    0): the general sweep would blame a multiplier that nobody asked for."""
    data = _data_positions(args, nums)
    key = ("constant data", nums, tuple((k, args[k].shape, args[k].dtype) for k in data))
    if data and key not in cache.fast:
        try:
            call = _trace_solve(fn, setup, args, kwargs, nums + data, has_aux=has_aux)
        except Exception:  # noqa: BLE001  (as constants: an error of fn raises again there)
            cache.fast[key] = None
        else:
            try:
                return call, data, _scalar_adjoint(call, setup), True
            except Exception:  # noqa: BLE001  (as constants below, which may raise it)
                call = _trace_solve(fn, setup, args, kwargs, nums, has_aux=has_aux)
                return call, (), _scalar_adjoint(call, setup), False
    call = _trace_solve(fn, setup, args, kwargs, nums, has_aux=has_aux)
    return call, (), _scalar_adjoint(call, setup), True


def _finisher(traced: Traced, dtype: np.dtype[Any], argnums: ArgNums, count: int
              ) -> Callable[[Any, tuple[Any, ...]], tuple[Any, Any]]:
    """(value, per-input gradients) of a compiled sweep as value_and_grad's
    result: cast to their dtypes, regrouped into the structures of the first
    ``count`` traced arguments (the differentiated ones)."""
    if isinstance(argnums, (int, np.integer)) and traced.trees[:1] == (tree.LEAF,) and \
            dtype == np.float64 and traced.dtypes[0] == np.float64:
        return lambda value, flat: (value, flat[0])  # nothing to cast or regroup

    def finish(value: Any, flat: tuple[Any, ...]) -> tuple[Any, Any]:
        return _cast(value, dtype), _pick(_input_gradients(traced, flat, count), argnums)
    return finish


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
    require_callable(fn, "lagrad.grad")
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
    if all(type(a) is np.ndarray or type(a) is float for a in args):  # no walk
        return False
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
    require_callable(fn, "lagrad.jvp")
    fn, setup = _unjit(fn, _setup(solve_options, return_info))
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise OptionError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    call = _trace_solve(fn, setup, primals, {}, tuple(range(len(primals))), has_aux=has_aux,
                        tree_output=True)
    traced, sol = call.traced, call.sol
    parts = _flat_tangents(traced, tangents)
    zdot, info = solve_system(sol.tangent_system(parts), setup.linear_method,
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

    A block of cotangents, as ``jax.vmap(vjp_fn)``: one adjoint solve with
    one right-hand side per cotangent (here the Jacobian's rows):

    >>> y, pullback = lagrad.vjp(lambda x: x * x[::-1], np.array([1.0, 2.0]))
    >>> lagrad.vmap(pullback)(np.eye(2))
    (array([[2., 1.],
           [2., 1.]]),)
    """
    require_callable(fn, "lagrad.vjp")
    fn, setup = _unjit(fn, _setup(solve_options))
    call = _trace_solve(fn, setup, primals, {}, tuple(range(len(primals))), has_aux=has_aux,
                        tree_output=True)
    traced, sol = call.traced, call.sol
    out = traced.program.output_variable
    paths = [p for p, _ in tree.flatten_with_path(
        tree.unflatten(traced.out_tree, range(traced.out_tree.num_leaves)))[0]]

    def seeds(cotangent: Any, axis: int | None = None) -> np.ndarray:
        """The cotangent's leaves checked, raveled and concatenated: (output
        size,), or with a batch ``axis`` of every leaf, (k, output size)."""
        parts: list[np.ndarray] = []
        leaves = tree.flatten_up_to(traced.out_tree, cotangent, "cotangent")
        for path, shape, leaf in zip(paths, traced.out_shapes, leaves):
            ct = as_real(leaf, f"cotangent{path}")  # complex: the real part, with a warning
            if axis is None:
                if ct.shape != shape:
                    raise ProgramError(f"cotangent{path} has shape {ct.shape}, the output{path} "
                                       f"has shape {shape}")
                parts.append(ct.ravel())
                continue
            if not -ct.ndim <= axis < ct.ndim:
                raise OptionError(f"vmap: in_axes {axis} is out of range for cotangent{path} "
                                  f"of shape {ct.shape}")
            ct = np.moveaxis(ct, axis, 0)
            if ct.shape[1:] != shape or (parts and ct.shape[0] != parts[0].shape[0]):
                raise ProgramError(f"vmap: cotangent{path} has shape {ct.shape} with the batch "
                                   f"axis first; the output{path} has shape {shape}, and "
                                   "every leaf needs the same batch size")
            parts.append(ct.reshape(ct.shape[0], -1))
        if not parts:
            if axis is not None:
                raise OptionError("vmap: the function has no output to pull back")
            return np.zeros(0)
        return np.concatenate(parts, axis=-1)

    def vjp_fn(cotangent: Any) -> tuple[Any, ...]:
        lam = solve_system(sol.adjoint_system(seeds(cotangent).reshape(out.shape)),
                           setup.linear_method, setup.options.linear, compute_residual=False).x
        return _input_gradients(traced, sol.schedule.index.take(lam, sol.schedule.inputs))

    def vjp_block(args: tuple[Any, ...], axes: tuple[int, ...]) -> tuple[Any, ...]:
        """``vjp_fn`` over a block of k cotangents (``args[0]``, batch axis
        ``axes[0]`` of every leaf), the results' batch axis first: one adjoint
        solve with k right-hand sides (``lagrad.vmap(vjp_fn)`` calls it)."""
        if len(args) != 1:
            raise OptionError(f"vjp_fn takes one argument, the cotangent; got {len(args)}")
        block = seeds(args[0], axes[0])  # (k, output size), any output shape
        rhs = np.zeros((sol.schedule.size, block.shape[0]))
        rhs[sol.schedule.index[out]] = block.T
        system = System(sol.schedule, sol.z, "adjoint", rhs, sol.diagnostics, sol.backward)
        lam = solve_system(system, setup.linear_method, setup.options.linear,
                           compute_residual=False).x
        return _input_gradients(traced, list(VariableMap(sol.schedule.index, lam)[v]
                                             for v in sol.schedule.inputs))

    vjp_fn.lagrad_block = vjp_block  # type: ignore[attr-defined]
    dtype = _output_dtype(primals, {})
    value = _unflatten_output(traced, sol.output, dtype)
    if has_aux:
        return value, vjp_fn, _aux_values(traced, sol, dtype)
    return value, vjp_fn
