"""``lagrad.linearize``: forward mode at fixed primals, JAX's ``linearize``.

The program is traced and solved once; the returned function solves the
tangent system (I - J) zdot = e for each tangent it is given. Under
``lagrad.vmap`` a batch of tangents is one tangent system with k right-hand
sides, solved in one sweep (each cyclic block factorized or iterated once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lagrad import tree
from lagrad.api.common import (
    Options,
    _aux_values,
    _cast,
    _flat_tangents,
    _output_dtype,
    _setup,
    _trace_solve,
    _unflatten_output,
)
from lagrad.api.jit import _unjit
from lagrad.errors import require_callable
from lagrad.ir.trace import Traced
from lagrad.solve.linsolve import solve_system
from lagrad.solve.system import System

__all__ = ["linearize"]


def linearize(fn: Callable[..., Any], *primals: Any, has_aux: bool = False,
              solve_options: Options = None) -> tuple[Any, ...]:
    """``fn``'s value and its derivative at ``primals`` as a function of
    tangents, as ``jax.linearize``.

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
        As :func:`lagrad.value_and_grad` (``adjoint_*`` set the tangent solves).

    Returns
    -------
    tuple
        ``(value, jvp_fn)`` or ``(value, jvp_fn, aux)``. ``jvp_fn(*tangents)``
        takes one tangent per primal, with the primal's structure and shapes,
        and returns d fn(primals) . tangents with the result's structure, in
        the output dtype. The forward solve is made once, here; each call of
        ``jvp_fn`` is one tangent solve, and ``lagrad.vmap(jvp_fn)`` one
        tangent solve for a whole batch of tangents.

    Raises
    ------
    ProgramError
        From ``jvp_fn``, if a tangent's structure or shape differs from its
        primal's (named), or a leaf is not real numbers.
    OptionError
        From ``jvp_fn``, if it is given another number of tangents than primals.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> y, f_jvp = lagrad.linearize(lambda x: lagrad.sin(x) * x, np.array([0.5, 1.0]))
    >>> f_jvp(np.array([1.0, 0.0]))  # d/dx0: cos(x0) x0 + sin(x0), 0
    array([0.91821682, 0.        ])
    >>> lagrad.vmap(f_jvp)(np.eye(2))  # both directions in one tangent solve
    array([[0.91821682, 0.        ],
           [0.        , 1.38177329]])
    """
    require_callable(fn, "lagrad.linearize")
    fn, setup = _unjit(fn, _setup(solve_options))
    call = _trace_solve(fn, setup, primals, {}, tuple(range(len(primals))), has_aux=has_aux,
                        tree_output=True)
    traced, sol = call.traced, call.sol
    dtype = _output_dtype(primals, {})
    out_slice = sol.schedule.index[traced.program.output_variable]

    index, inputs = sol.schedule.index, sol.schedule.inputs

    def solve(parts: tuple[Any, ...], k: int | None = None) -> Any:
        """The output's rows of zdot for one direction, or (k = the block's
        size) for a block of k: (I - J) zdot = e, e the parts at the inputs."""
        e = np.zeros(sol.schedule.size if k is None else (sol.schedule.size, k))
        for v, part in zip(inputs, parts):
            e[index[v]] = part.ravel() if k is None else part.reshape(k, v.size).T
        system = System(sol.schedule, sol.z, "tangent", e, sol.diagnostics)
        zdot = solve_system(system, setup.linear_method, setup.options.linear,
                            compute_residual=False).x
        return zdot[out_slice]

    def jvp_fn(*tangents: Any) -> Any:
        parts = _flat_tangents(traced, tangents, who="linearize")
        out = solve(parts).reshape(traced.program.output_variable.shape)
        return _unflatten_output(traced, out, dtype)

    def jvp_block(tangents: tuple[Any, ...], axes: tuple[int, ...]) -> Any:
        """``jvp_fn`` over a batch of tangents (batch axis ``axes[j]`` of
        argument j), the result's batch axis first: one tangent solve with k
        right-hand sides (``lagrad.vmap(jvp_fn)`` calls it)."""
        parts = _flat_tangents(traced, tangents, axes, who="linearize")
        k = parts[0].shape[0] if parts else 0
        return _unflatten_block(traced, solve(parts, k).T, dtype)

    jvp_fn.lagrad_block = jvp_block  # type: ignore[attr-defined]
    value = _unflatten_output(traced, sol.output, dtype)
    if has_aux:
        return value, jvp_fn, _aux_values(traced, sol, dtype)
    return value, jvp_fn


def _unflatten_block(traced: Traced, values: Any, dtype: np.dtype[Any]) -> Any:
    """A batch of k output vectors (k, output size) as the function's result,
    every leaf with the batch axis first."""
    k = values.shape[0]
    leaves, start = [], 0
    for shape in traced.out_shapes:
        size = int(np.prod(shape, dtype=int))
        leaves.append(_cast(np.array(values[:, start:start + size]).reshape((k, *shape)),
                            dtype))
        start += size
    return tree.unflatten(traced.out_tree, leaves)
