"""The functional API, with JAX/autograd conventions: grad, value_and_grad,
jvp, vjp, jacobian.

Each call traces the function (non-differentiated arguments become constants),
solves the program, and solves its multiplier or tangent system.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lagrad.errors import OptionError, ProgramError
from lagrad.ir.program import as_real
from lagrad.ir.trace import Traced, normalize_argnums, trace_args
from lagrad.solve.linsolve import solve_system
from lagrad.solve.solution import Solution
from lagrad.solve.sparsejac import sparse_jacobian

__all__ = ["grad", "value_and_grad", "jvp", "vjp", "jacobian"]

ArgNums = int | Sequence[int]


def _solve(fn: Callable[..., Any], args: Sequence[Any], argnums: ArgNums
           ) -> tuple[Traced, Solution, tuple[int, ...]]:
    nums = normalize_argnums(argnums, len(args))
    traced = trace_args(fn, args, nums)
    values: list[Any] = []
    for k, container in zip(nums, traced.containers):
        values += list(args[k]) if container is not None else [args[k]]
    return traced, traced.program.solve(*values), nums


def _pick(results: tuple[Any, ...], argnums: ArgNums) -> Any:
    return results[0] if isinstance(argnums, (int, np.integer)) else results


def value_and_grad(fn: Callable[..., Any], argnums: ArgNums = 0
                   ) -> Callable[..., tuple[Any, Any]]:
    """``fn``'s value and gradient with respect to ``args[argnums]``.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> v, g = lagrad.value_and_grad(lambda x: (x ** 2).sum())(np.array([1.0, 2.0]))
    >>> float(v), g
    (5.0, array([2., 4.]))
    """
    @functools.wraps(fn)
    def wrapped(*args: Any) -> tuple[Any, Any]:
        traced, sol, _ = _solve(fn, args, argnums)
        out = traced.program.output_variable
        if out.size != 1 or out.shape != ():
            raise ProgramError(f"grad needs a scalar output; {getattr(fn, '__name__', 'fn')} "
                               f"returned shape {out.shape} (use lagrad.jacobian or lagrad.vjp)")
        lam = sol.multipliers()
        flat = [lam[v] for v in traced.program.inputs]
        return sol.output, _pick(traced.regroup(flat), argnums)
    return wrapped


def grad(fn: Callable[..., Any], argnums: ArgNums = 0) -> Callable[..., Any]:
    """The gradient of a scalar-output ``fn`` with respect to ``args[argnums]``.

    The gradient has the argument's shape (a tuple of gradients when
    ``argnums`` is a tuple, a tuple/list when the argument is one).

    Examples
    --------
    >>> import lagrad
    >>> df = lagrad.grad(lambda x: lagrad.sin(x) * x)
    >>> round(float(df(2.0)), 6)
    0.077004
    """
    vg = value_and_grad(fn, argnums)

    @functools.wraps(fn)
    def wrapped(*args: Any) -> Any:
        return vg(*args)[1]
    return wrapped


def jvp(fn: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any]
        ) -> tuple[Any, Any]:
    """Forward mode: ``(fn(*primals), d fn(primals) . tangents)``.

    ``primals`` and ``tangents`` are sequences with one entry per argument.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> y, ty = lagrad.jvp(lagrad.exp, (0.0,), (2.0,))
    >>> float(y), float(ty)
    (1.0, 2.0)
    """
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise OptionError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    traced, sol, _ = _solve(fn, primals, tuple(range(len(primals))))
    flat = []
    for t, container in zip(tangents, traced.containers):
        flat += list(t) if container is not None else [t]
    zdot = sol.tangent(tuple(flat))
    return sol.output, zdot[traced.program.output_variable]


def vjp(fn: Callable[..., Any], *primals: Any) -> tuple[Any, Callable[[Any], tuple[Any, ...]]]:
    """Reverse mode: ``(fn(*primals), vjp_fn)`` where ``vjp_fn(cotangent)``
    returns one cotangent per primal, as a tuple.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> y, pullback = lagrad.vjp(lambda x: 2.0 * x, np.ones(2))
    >>> pullback(np.array([1.0, 3.0]))
    (array([2., 6.]),)
    """
    traced, sol, _ = _solve(fn, primals, tuple(range(len(primals))))
    out = traced.program.output_variable

    def vjp_fn(cotangent: Any) -> tuple[Any, ...]:
        ct = as_real(cotangent, "cotangent")  # complex: the real part, with a warning
        if ct.shape != out.shape:
            raise ProgramError(f"cotangent has shape {ct.shape}, the output has shape "
                               f"{out.shape}")
        lam = solve_system(sol.adjoint_system(ct), compute_residual=False).x
        return traced.regroup(sol.schedule.index.take(lam, sol.schedule.inputs))
    return sol.output, vjp_fn


_MODES = ("auto", "reverse", "forward")


def jacobian(fn: Callable[..., Any], argnums: ArgNums = 0, mode: str = "auto",
             sparse: bool = False) -> Callable[..., Any]:
    """The Jacobian of ``fn`` with respect to ``args[argnums]``, of shape
    ``output.shape + argument.shape`` (as ``jax.jacobian``).

    Parameters
    ----------
    fn : callable
        The function, written with lagrad (or numpy) operations.
    argnums : int or tuple of int
        The arguments to differentiate with respect to.
    mode : {"auto", "reverse", "forward"}
        Dense: one adjoint solve per output entry ("reverse"), one tangent
        solve per input entry ("forward"), or whichever needs fewer solves.
        Sparse: colour rows ("reverse") or columns ("forward") of the
        Jacobian, or whichever needs fewer colours ("auto").
    sparse : bool
        Return a ``scipy.sparse.csr_matrix`` of shape (output.size,
        argument.size) per argument: the pattern is found from the program
        (which input entries reach which output entries), its columns or rows
        are grouped by a greedy colouring, and all colours are solved in one
        sweep with one right-hand side each.

    Returns
    -------
    callable
        ``jac(*args)``: an array, a sparse matrix, or a tuple of them when
        ``argnums`` is a tuple.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> lagrad.jacobian(lambda x: x ** 2)(np.array([1.0, 3.0]))
    array([[2., 0.],
           [0., 6.]])
    >>> jac = lagrad.jacobian(lambda x: x ** 2, sparse=True)(np.array([1.0, 3.0]))
    >>> jac.format, jac.nnz, jac.diagonal()
    ('csr', 2, array([2., 6.]))
    """
    if not isinstance(mode, str) or mode not in _MODES:
        raise OptionError(f"jacobian: unknown mode {mode!r}; choose one of {_MODES}")

    @functools.wraps(fn)
    def wrapped(*args: Any) -> Any:
        traced, sol, _ = _solve(fn, args, argnums)
        if sparse:
            return _pick(traced.regroup(_sparse_blocks(sol, mode)), argnums)
        out = traced.program.output_variable
        inputs = sol.schedule.inputs
        n_in = sum(v.size for v in inputs)
        use_reverse = mode == "reverse" or (mode == "auto" and out.size <= n_in)
        flat = _reverse_rows(sol) if use_reverse else _forward_columns(sol)
        index = sol.schedule.index
        base = index[inputs[0]].start if inputs else 0
        blocks = [flat[:, index[v].start - base:index[v].stop - base].reshape(out.shape + v.shape)
                  for v in inputs]
        return _pick(traced.regroup(blocks), argnums)
    return wrapped


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
