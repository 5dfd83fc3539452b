"""What the transforms share: solver options resolved once, a call's traced
program and solution, and the casts of results to their dtypes.

Precision: lagrad computes in float64 whatever the inputs, then casts each
result to the precision of what it belongs to (see :mod:`lagrad.api`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad import tree
from lagrad.errors import OptionError, ProgramError
from lagrad.ir.cache import TraceCache
from lagrad.ir.constants import as_real
from lagrad.ir.program import Program, Variable
from lagrad.ir.trace import Traced, trace_args
from lagrad.options import SolveOptions
from lagrad.solve.linsolve import SolveInfo, resolve_method, solve_system
from lagrad.solve.results import BlockResult
from lagrad.solve.solution import Solution, solve_checked

__all__ = ["DerivativeInfo", "Transform"]

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

    @property
    def plain(self) -> bool:
        """Default solves and no diagnostics: a jitted call may take the fast path."""
        return not self.options.forward and self.default_linear and not self.return_info


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


def _input_gradients(traced: Traced, flat: Sequence[Any], count: int | None = None
                     ) -> tuple[Any, ...]:
    """Per-input derivatives in their inputs' dtypes, as one tree per argument
    (of the first ``count`` traced arguments; default all)."""
    if count is None:
        return traced.regroup([_cast(g, d) for g, d in zip(flat, traced.dtypes)])
    out, k = [], 0
    for treedef in traced.trees[:count]:
        leaves = [_cast(g, d) for g, d in zip(flat[k:k + treedef.num_leaves],
                                              traced.dtypes[k:k + treedef.num_leaves])]
        out.append(tree.unflatten(treedef, leaves))
        k += treedef.num_leaves
    return tuple(out)


def _flat_tangents(traced: Traced, tangents: Sequence[Any], axes: tuple[int, ...] | None = None,
                   who: str = "jvp") -> tuple[np.ndarray, ...]:
    """One checked float64 part per input of the program, from one tangent per
    traced argument (a pytree like it): of the input's shape, or with ``axes``
    (one batch axis per argument) of shape (k, *shape), the batch axis moved first."""
    if len(tangents) != len(traced.trees):
        raise OptionError(f"{who}: {len(traced.trees)} primals but {len(tangents)} tangents")
    flat: list[Any] = []
    per_leaf: list[int | None] = []
    for j, (treedef, tangent) in enumerate(zip(traced.trees, tangents)):
        leaves = tree.flatten_up_to(treedef, tangent, f"tangents[{j}]")
        flat += leaves
        per_leaf += [None if axes is None else axes[j]] * len(leaves)
    parts, batch = [], None
    for v, t, axis in zip(traced.program.inputs, flat, per_leaf):
        t = as_real(t, f"tangent for {v.name!r}")  # complex: the real part, with a warning
        if axis is None:
            if t.shape != v.shape:
                raise ProgramError(f"tangent for {v.name!r} has shape {t.shape}, its primal has "
                                   f"shape {v.shape}")
        else:
            if not -t.ndim <= axis < t.ndim:
                raise OptionError(f"vmap: in_axes {axis} is out of range for the tangent for "
                                  f"{v.name!r} of shape {t.shape}")
            t = np.moveaxis(t, axis, 0)
            batch = t.shape[0] if batch is None else batch
            if t.shape != (batch, *v.shape):
                raise ProgramError(f"tangent for {v.name!r} has shape {t.shape}, expected "
                                   f"{(batch, *v.shape)} (its primal's shape, the batch axis "
                                   "first)")
        parts.append(t)
    return tuple(parts)
