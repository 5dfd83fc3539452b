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
from typing import Any

import numpy as np

from lagrad import tree
from lagrad.errors import OptionError, ProgramError
from lagrad.ir.constants import as_real
from lagrad.ir.program import Variable
from lagrad.ir.trace import Traced, normalize_argnums, trace_args
from lagrad.solve.linsolve import solve_system
from lagrad.solve.solution import Solution
from lagrad.solve.sparsejac import sparse_jacobian

__all__ = ["grad", "value_and_grad", "jvp", "vjp", "jacobian", "jacfwd", "jacrev"]

ArgNums = int | Sequence[int]


def _trace_solve(fn: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any],
                 argnums: tuple[int, ...], *, has_aux: bool = False,
                 tree_output: bool = False) -> tuple[Traced, Solution]:
    traced = trace_args(fn, args, argnums, kwargs=kwargs, has_aux=has_aux,
                        tree_output=tree_output, allow_int=False)
    return traced, traced.program.solve(*traced.values)


def _pick(results: tuple[Any, ...], argnums: ArgNums) -> Any:
    return results[0] if isinstance(argnums, (int, np.integer)) else results


def _output_dtype(args: Sequence[Any], kwargs: Mapping[str, Any]) -> np.dtype[Any]:
    """numpy's promotion of the floating-point arrays among the arguments."""
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


def value_and_grad(fn: Callable[..., Any], argnums: ArgNums = 0, has_aux: bool = False
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

    Returns
    -------
    callable
        ``f(*args, **kwargs) -> (value, grad)``, or ``((value, aux), grad)``
        with ``has_aux``. ``grad`` has the argument's structure (a tuple of
        them when ``argnums`` is a sequence) and each leaf its input's dtype;
        the computation runs in float64 (see the module notes on precision).

    Raises
    ------
    ProgramError
        If ``fn``'s output is not a scalar, or an argument's leaf is not real
        numbers (the message names its path, as ``params['w1']``).
    InputDtypeError
        If a differentiated leaf holds integers or booleans (also a TypeError).
    OptionError
        If ``argnums`` is not an argument position.

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
    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        nums = normalize_argnums(argnums, len(args))
        traced, sol = _trace_solve(fn, args, kwargs, nums, has_aux=has_aux)
        out = traced.program.output_variable
        if out.size != 1 or out.shape != ():
            raise ProgramError(f"grad needs a scalar output; {getattr(fn, '__name__', 'fn')} "
                               f"returned shape {out.shape} (use lagrad.jacobian or lagrad.vjp)")
        lam = sol.multipliers()
        grads = _pick(_input_gradients(traced, [lam[v] for v in traced.program.inputs]),
                      argnums)
        dtype = _output_dtype(args, kwargs)
        value = _cast(sol.output, dtype)
        if has_aux:
            return (value, _aux_values(traced, sol, dtype)), grads
        return value, grads
    return wrapped


def grad(fn: Callable[..., Any], argnums: ArgNums = 0, has_aux: bool = False
         ) -> Callable[..., Any]:
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

    Returns
    -------
    callable
        ``f(*args, **kwargs) -> grad``, or ``(grad, aux)`` with ``has_aux``.
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
    vg = value_and_grad(fn, argnums, has_aux)

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        head, grads = vg(*args, **kwargs)
        return (grads, head[1]) if has_aux else grads
    return wrapped


def jvp(fn: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any],
        has_aux: bool = False) -> tuple[Any, ...]:
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
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise OptionError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    traced, sol = _trace_solve(fn, primals, {}, tuple(range(len(primals))), has_aux=has_aux,
                               tree_output=True)
    flat: list[Any] = []
    for k, (treedef, tangent) in enumerate(zip(traced.trees, tangents)):
        flat += tree.flatten_up_to(treedef, tangent, f"tangents[{k}]")
    for v, t in zip(traced.program.inputs, flat):
        t = as_real(t, f"tangent for {v.name!r}")
        if t.shape != v.shape:
            raise ProgramError(f"tangent for {v.name!r} has shape {t.shape}, its primal has shape "
                               f"{v.shape}")
    zdot = sol.tangent(tuple(flat))
    dtype = _output_dtype(primals, {})
    value = _unflatten_output(traced, sol.output, dtype)
    tangent_out = _unflatten_output(traced, zdot[traced.program.output_variable], dtype)
    if has_aux:
        return value, tangent_out, _aux_values(traced, sol, dtype)
    return value, tangent_out


def vjp(fn: Callable[..., Any], *primals: Any, has_aux: bool = False) -> tuple[Any, ...]:
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
    traced, sol = _trace_solve(fn, primals, {}, tuple(range(len(primals))), has_aux=has_aux,
                               tree_output=True)
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
        lam = solve_system(sol.adjoint_system(seed.reshape(out.shape)),
                           compute_residual=False).x
        return _input_gradients(traced, sol.schedule.index.take(lam, sol.schedule.inputs))

    dtype = _output_dtype(primals, {})
    value = _unflatten_output(traced, sol.output, dtype)
    if has_aux:
        return value, vjp_fn, _aux_values(traced, sol, dtype)
    return value, vjp_fn


_MODES = ("auto", "reverse", "forward")


def jacobian(fn: Callable[..., Any], argnums: ArgNums = 0, mode: str = "auto", *,
             has_aux: bool = False, sparse: bool = False) -> Callable[..., Any]:
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

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        nums = normalize_argnums(argnums, len(args))
        traced, sol = _trace_solve(fn, args, kwargs, nums, has_aux=has_aux, tree_output=True)
        dtype = _output_dtype(args, kwargs)
        if sparse:
            blocks = [b.astype(np.result_type(dtype, d))
                      for b, d in zip(_sparse_blocks(sol, mode), traced.dtypes)]
            jac = _pick(traced.regroup(blocks), argnums)
            return (jac, _aux_values(traced, sol, dtype)) if has_aux else jac
        out = traced.program.output_variable
        inputs = sol.schedule.inputs
        n_in = sum(v.size for v in inputs)
        use_reverse = mode == "reverse" or (mode == "auto" and out.size <= n_in)
        flat = _reverse_rows(sol) if use_reverse else _forward_columns(sol)
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
    return wrapped


def jacfwd(fn: Callable[..., Any], argnums: ArgNums = 0, has_aux: bool = False
           ) -> Callable[..., Any]:
    """The Jacobian in forward mode (one tangent solve per input entry):
    :func:`jacobian` with ``mode="forward"``, under JAX's name.

    Parameters
    ----------
    fn, argnums, has_aux
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
    return jacobian(fn, argnums, "forward", has_aux=has_aux)


def jacrev(fn: Callable[..., Any], argnums: ArgNums = 0, has_aux: bool = False
           ) -> Callable[..., Any]:
    """The Jacobian in reverse mode (one adjoint solve per output entry):
    :func:`jacobian` with ``mode="reverse"``, under JAX's name.

    Parameters
    ----------
    fn, argnums, has_aux
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
    return jacobian(fn, argnums, "reverse", has_aux=has_aux)


def _sparse_blocks(sol: Solution, mode: str) -> list[Any]:
    """The sparse Jacobian cut into one CSR block of columns per input."""
    matrix = sparse_jacobian(sol, mode).matrix.tocsc()
    bounds = np.cumsum([0] + [v.size for v in sol.schedule.inputs])
    return [matrix[:, a:b].tocsr() for a, b in zip(bounds[:-1], bounds[1:])]


def _reverse_rows(sol: Solution) -> np.ndarray:
    """d output / d inputs, one adjoint sweep per output entry."""
    out = sol.schedule.output_variable
    lo, hi = _input_span(sol)
    rows = np.empty((out.size, hi - lo))
    for k in range(out.size):
        seed = np.zeros(out.size)
        seed[k] = 1.0
        system = sol.adjoint_system(seed.reshape(out.shape))
        rows[k] = solve_system(system, compute_residual=False).x[lo:hi]
    return rows


def _forward_columns(sol: Solution) -> np.ndarray:
    """d output / d inputs, one tangent sweep per input entry."""
    lo, hi = _input_span(sol)
    out_slice = sol.schedule.index[sol.schedule.output_variable]
    cols = np.empty((out_slice.stop - out_slice.start, hi - lo))
    for k in range(hi - lo):
        e = np.zeros(sol.schedule.size)
        e[lo + k] = 1.0
        system = sol.tangent_system(sol.schedule.index.take(e, sol.schedule.inputs))
        cols[:, k] = solve_system(system, compute_residual=False).x[out_slice]
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
