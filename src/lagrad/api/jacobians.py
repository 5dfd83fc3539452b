"""Jacobians and Hessians: jacobian (dense or sparse), jacfwd, jacrev, hvp,
hessian (see :mod:`lagrad.api` for the conventions shared by every
transform)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lagrad import tree
from lagrad.api.common import (
    ArgNums,
    Options,
    _adjoint,
    _aux_values,
    _cast,
    _input_gradients,
    _pick,
    _Setup,
    _setup,
    _trace_solve,
    _with_cache,
)
from lagrad.api.jit import _unjit
from lagrad.errors import OptionError, ProgramError, require_callable
from lagrad.ir.constants import as_real
from lagrad.ir.trace import normalize_argnums
from lagrad.numeric import all_finite
from lagrad.solve.linsolve import solve_system
from lagrad.solve.multirhs import MAX_ENTRIES, unit_solves
from lagrad.solve.second import multiplier_tangent, multiplier_tangents
from lagrad.solve.solution import Solution
from lagrad.solve.sparsejac import sparse_jacobian
from lagrad.solve.system import ADJOINT, TANGENT

__all__ = ["jacobian", "jacfwd", "jacrev", "hvp", "hessian"]

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
    require_callable(fn, "lagrad.jacobian")
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
    require_callable(fn, "lagrad.jacfwd")
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
    require_callable(fn, "lagrad.jacrev")
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
    require_callable(fn, "lagrad.hvp")
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
    require_callable(fn, "lagrad.hessian")
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
        n, chunk = sol.schedule.size, max(1, MAX_ENTRIES // max(sol.schedule.size, 1))
        for k in range(0, hi - lo, chunk):  # a block of unit directions per solve
            width = min(chunk, hi - lo - k)
            e = np.zeros((n, width))
            e[lo + k + np.arange(width), np.arange(width)] = 1.0
            columns[:, k:k + width] = multiplier_tangents(
                sol, lam, e, setup.linear_method, setup.options.linear)[1][lo:hi]
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
    if out.size == 1 and _many_seeds(sol, setup):  # one seed: the gradient's own sweep
        grads = sol.grad()  # (generated code when the program has it; raises to blame)
        row = np.concatenate([np.ravel(g) for g in (grads if isinstance(grads, tuple)
                                                    else (grads,))] or [np.zeros(0)])
        return row.reshape(1, hi - lo)
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
