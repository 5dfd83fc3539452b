"""``lagrad.vmap``: a function over a batch of independent instances, traced once.

The batched arguments' leaves are laid into the program with their batch axis
in front, as inputs of shape (B, *s); the traced function sees instances of
shape s (:class:`~lagrad.ir.vmapping.BatchedVariable` rewrites each operation
for the batch). One program, one forward solve and one linear solve then
serve all B instances:

* a plain function: its program's output is the batch of results;
* ``grad`` / ``value_and_grad``: the output is the B per-instance scalars;
  the instances are independent, so the multipliers of the cotangent
  ``ones(B)`` are every instance's gradient at once (one adjoint solve).
  Differentiated arguments that are not batched (``in_axes`` None) are
  repeated over the batch, so that each instance gets its own gradient;
* ``functools.partial(lagrad.jvp, f)``: one tangent solve with the batch of
  tangents;
* ``functools.partial(lagrad.hvp, f)``: one adjoint solve for the B scalars
  (seed ``ones(B)``), then one tangent and one second-order solve with the
  batch of directions: the Hessian of the B independent instances is block
  diagonal, so its product with the stacked directions is every instance's
  H_b v_b;
* the pullback ``vjp_fn`` of ``lagrad.vjp`` and the ``jvp_fn`` of
  ``lagrad.linearize``: nothing is traced; the batch of cotangents (or
  tangents) is one multiplier (or tangent) system with k right-hand sides,
  solved in one sweep (each cyclic block factorized or iterated once).

A ``fixed_point`` or ``root`` under vmap is one cyclic block over a (B, *s)
unknown; its Newton matrix is block diagonal, one n x n block per instance.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lagrad import tree
from lagrad.api import Jitted, Transform, hvp, jvp
from lagrad.api.common import _adjoint, _setup
from lagrad.errors import BatchingError, OptionError, ProgramError, require_callable
from lagrad.ir import ops
from lagrad.ir.arrayops import is_int
from lagrad.ir.primitives import Tracer
from lagrad.ir.program import Program, Variable
from lagrad.ir.trace import normalize_argnums
from lagrad.ir.vmapping import BatchedVariable, materialize
from lagrad.solve.linsolve import solve_system
from lagrad.solve.second import multiplier_tangent
from lagrad.solve.solution import Solution

__all__ = ["vmap"]

MAX_TRACES = 32
"""Programs a mapped function keeps (one per batch size and argument shapes)."""

Axes = Any  # an int, None, or a tuple (one entry per argument) of pytree prefixes


def vmap(fn: Callable[..., Any], in_axes: Axes = 0, out_axes: int = 0) -> Callable[..., Any]:
    """Map ``fn`` over a batch axis of its arguments, as ``jax.vmap``: one
    trace and one solve for all instances.

    Parameters
    ----------
    fn : callable
        A function of lagrad operations (``fixed_point`` and ``root``
        included), a transform ``lagrad.grad(f, ...)`` or
        ``lagrad.value_and_grad(f, ...)``, ``functools.partial(lagrad.jvp,
        f)`` or ``functools.partial(lagrad.hvp, f)`` (each called with
        ``(primals, tangents)``), or the pullback returned by ``lagrad.vjp``
        or the jvp returned by ``lagrad.linearize``.
    in_axes : int, None or tuple
        The batch axis of every argument (an int), none (None: the argument is
        shared by all instances), or a tuple with one entry per positional
        argument, each an int, None, or a container of them matching the
        argument's structure (a pytree prefix, as in JAX).
    out_axes : int
        Where the batch axis goes in every result leaf.

    Returns
    -------
    callable
        ``fn`` over the batch: every result leaf has the batch axis at
        ``out_axes`` (results that do not depend on the batch are repeated).
        The program is traced once per batch size and argument structure,
        shapes and axes, and cached.

    Raises
    ------
    BatchingError
        While tracing, for an operation without a batching rule (named).
    OptionError
        For a malformed ``in_axes`` / ``out_axes``, batch axes of different
        sizes, or no batched argument.

    Notes
    -----
    The instances are independent, so the program's Jacobian is block
    diagonal over the batch: the adjoint equation (I - J)^T lambda = 1_B
    splits into B independent ones, and lambda holds every instance's
    gradient. Keyword arguments are not supported.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> xs = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    >>> w = np.array([[1.0, 0.0], [1.0, 1.0]])
    >>> lagrad.vmap(lambda x, w: lagrad.tanh(w @ x).sum(), in_axes=(0, None))(xs, w).shape
    (3,)
    >>> lagrad.vmap(lagrad.grad(lambda x: (x ** 2).sum()))(xs)
    array([[ 2.,  4.],
           [ 6.,  8.],
           [10., 12.]])
    >>> import functools  # Hessian of sum(x^3) at one x, times three directions
    >>> hvp = functools.partial(lagrad.hvp, lambda x: (x ** 3).sum())
    >>> lagrad.vmap(hvp, in_axes=(None, 0))((np.array([1.0, 2.0]),), (xs,))
    array([[ 6., 24.],
           [18., 48.],
           [30., 72.]])
    """
    require_callable(fn, "lagrad.vmap")
    if not is_int(out_axes):
        raise OptionError(f"vmap: out_axes must be an int, got {out_axes!r}")
    block = getattr(fn, "lagrad_block", None)
    if block is not None:  # vjp's pullback, linearize's jvp: k seeds in one linear solve
        return _vmap_block(fn, block, in_axes, int(out_axes))
    spec = _spec_of(fn)
    cache: dict[Any, _Traced] = {}

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if kwargs:
            raise OptionError(f"vmap: keyword arguments {sorted(kwargs)} are not supported; "
                              "pass them positionally with an in_axes entry")
        batch = _batch_arguments(args, in_axes)
        key = (batch.key, spec.diff(len(args)))
        traced = cache.get(key)
        if traced is None:
            if len(cache) >= MAX_TRACES:  # drop the oldest program
                del cache[next(iter(cache))]
            traced = cache[key] = _trace(spec, batch)
        return spec.run(traced, batch, int(out_axes))
    wrapped.cache = cache  # type: ignore[attr-defined]
    return wrapped


def _vmap_block(fn: Callable[..., Any], block: Callable[[tuple[Any, ...], tuple[int, ...]], Any],
                in_axes: Axes, out_axes: int) -> Callable[..., Any]:
    """``vmap`` of a linear map made by :func:`lagrad.vjp` (the pullback) or
    :func:`lagrad.linearize` (the jvp): nothing to trace, the batch of seeds
    is one linear system with k right-hand sides. ``in_axes``: an int for
    every argument, or a tuple of ints, one per argument."""
    if not (is_int(in_axes) or isinstance(in_axes, tuple) and in_axes and
            all(is_int(a) for a in in_axes)):
        raise OptionError("vmap of a linear map from vjp or linearize: in_axes must be an int "
                          f"or a tuple of ints, one per argument (every argument is batched); "
                          f"got {in_axes!r}")

    @functools.wraps(fn, updated=())  # not fn's lagrad_block: the result is not one
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if kwargs:
            raise OptionError(f"vmap: keyword arguments {sorted(kwargs)} are not supported")
        axes = (in_axes,) * len(args) if is_int(in_axes) else in_axes
        if len(axes) != len(args):
            raise OptionError(f"vmap: in_axes has {len(axes)} entries for {len(args)} "
                              "arguments")
        result = block(args, tuple(int(a) for a in axes))
        return tree.map(lambda leaf: np.moveaxis(np.asarray(leaf), 0, out_axes), result)
    return wrapped


# ------------------------------------------------------------------ arguments

@dataclass(frozen=True)
class _Batch:
    """The call's arguments: per argument, its structure and leaves; per leaf,
    its batch axis (None: shared) and its value with the batch axis first."""

    trees: tuple[tree.TreeDef, ...]
    axes: tuple[tuple[int | None, ...], ...]
    values: tuple[tuple[np.ndarray, ...], ...]
    dtypes: tuple[tuple[np.dtype[Any], ...], ...]
    size: int

    @property
    def key(self) -> Any:
        shapes = tuple(tuple(v.shape for v in vs) for vs in self.values)
        return (self.size, self.trees, tuple(tuple(a is None for a in ax) for ax in self.axes),
                shapes)


def _batch_arguments(args: Sequence[Any], in_axes: Axes) -> _Batch:
    if in_axes is None or is_int(in_axes):
        per_arg = [in_axes] * len(args)
    elif isinstance(in_axes, tuple) and len(in_axes) == len(args):
        per_arg = list(in_axes)
    else:  # a list is a pytree, not the argument tuple (as in jax.vmap)
        raise OptionError(f"vmap: in_axes {in_axes!r} must be an int, None or a tuple with "
                          f"one entry per positional argument ({len(args)})")
    for leaf in tree.leaves(tuple(args)):
        if isinstance(leaf, Tracer):
            raise BatchingError(f"vmap: argument {leaf.name!r} is a traced variable; vmap "
                                "inside a traced function (nested vmap, vmap under grad) "
                                "is not supported")
    trees, axes, values, dtypes, sizes = [], [], [], [], set()
    for k, (arg, prefix) in enumerate(zip(args, per_arg)):
        pairs, treedef = tree.flatten_with_path(arg)
        leaf_axes = _leaf_axes(prefix, arg, f"in_axes[{k}]")
        arg_values, arg_dtypes, arg_axes = [], [], []
        for (path, leaf), axis in zip(pairs, leaf_axes):
            arr = np.asarray(leaf)
            if arr.dtype.kind not in "biuf":
                raise ProgramError(f"vmap: argument {k}{path} must be real numbers, got "
                                   f"{type(leaf).__name__} of dtype {arr.dtype}")
            if axis is not None:
                if not -arr.ndim <= axis < arr.ndim:
                    raise OptionError(f"vmap: in_axes {axis} for argument {k}{path} of shape "
                                      f"{arr.shape}, which has no such axis")
                axis = int(axis) % arr.ndim
                arr = np.moveaxis(arr, axis, 0)
                sizes.add(arr.shape[0])
            arg_values.append(np.asarray(arr, dtype=float))
            arg_dtypes.append(arr.dtype)
            arg_axes.append(axis)
        trees.append(treedef)
        axes.append(tuple(arg_axes))
        values.append(tuple(arg_values))
        dtypes.append(tuple(arg_dtypes))
    if len(sizes) != 1:
        raise OptionError("vmap: no argument is batched (in_axes all None)" if not sizes else
                          f"vmap: the batched axes have different sizes {sorted(sizes)}")
    return _Batch(tuple(trees), tuple(axes), tuple(values), tuple(dtypes), sizes.pop())


def _leaf_axes(prefix: Any, arg: Any, where: str) -> list[int | None]:
    """One batch axis per leaf of ``arg`` from the pytree prefix ``prefix``."""
    if prefix is None or is_int(prefix):
        return [prefix] * len(tree.leaves(arg))
    if isinstance(prefix, dict) and isinstance(arg, dict) and set(prefix) == set(arg):
        keys = tree.structure({k: 0 for k in arg}).keys
        return [a for k in keys for a in _leaf_axes(prefix[k], arg[k], f"{where}[{k!r}]")]
    if isinstance(prefix, (tuple, list)) and isinstance(arg, (tuple, list)) \
            and len(prefix) == len(arg):
        return [a for k, (p, x) in enumerate(zip(prefix, arg))
                for a in _leaf_axes(p, x, f"{where}[{k}]")]
    raise OptionError(f"vmap: {where} = {prefix!r} does not match the argument's structure "
                      f"({type(arg).__name__}); give an int, None, or a container like it")


# ------------------------------------------------------------------ tracing

@dataclass(frozen=True)
class _Traced:
    """The batched program and how its output splits into result leaves."""

    program: Program
    out_tree: tree.TreeDef
    out_shapes: tuple[tuple[int, ...], ...]  # per instance
    aux: Any


@dataclass(frozen=True)
class _Spec:
    """What vmap maps: the function to trace and how to finish a call."""

    fn: Callable[..., Any]
    kind: str  # "plain", "grad", "value_and_grad", "jvp", "hvp"
    transform: Transform | None = None
    options: Any = None

    def diff(self, nargs: int) -> tuple[int, ...]:
        """The argument positions whose every leaf is batched (differentiated)."""
        if self.kind in _PAIRED:
            return (0,)
        if self.transform is None:
            return ()
        return normalize_argnums(self.transform.argnums, nargs)

    @property
    def has_aux(self) -> bool:
        return self.transform is not None and self.transform.has_aux

    def run(self, traced: _Traced, batch: _Batch, out_axes: int) -> Any:
        return _RUNS[self.kind](self, traced, batch, out_axes)


_JVP_KEYWORDS = {"solve_options"}
_PAIRED = ("jvp", "hvp")  # called with (primals, tangents): the tangents are no inputs


def _spec_of(fn: Callable[..., Any]) -> _Spec:
    transform = getattr(fn, "lagrad_transform", None)
    if isinstance(transform, Transform):
        if transform.setup.return_info:
            raise OptionError("vmap: return_info=True is not supported under vmap")
        return _Spec(transform.fn, transform.kind, transform, transform.setup)
    if isinstance(fn, functools.partial) and (fn.func is jvp or fn.func is hvp):
        name = fn.func.__name__
        if len(fn.args) != 1 or not set(fn.keywords) <= _JVP_KEYWORDS:
            raise OptionError(f"vmap: give {name} as functools.partial(lagrad.{name}, f) "
                              "(optionally with solve_options=); it is called with (primals, "
                              "tangents)")
        f = fn.args[0]
        return _Spec(f.fn if isinstance(f, Jitted) else f, name, None,
                     _setup(fn.keywords.get("solve_options")))
    return _Spec(fn.fn if isinstance(fn, Jitted) else fn, "plain", None, _setup(None))


def _trace(spec: _Spec, batch: _Batch) -> _Traced:
    program = Program(getattr(spec.fn, "__name__", "") or "vmap")
    diff = spec.diff(len(batch.trees))
    args = []
    for k, (treedef, axes, values) in enumerate(zip(batch.trees, batch.axes, batch.values)):
        if spec.kind in _PAIRED and k == 1:
            break  # the tangents are no inputs: they seed the tangent solve
        leaves = []
        for j, (axis, value) in enumerate(zip(axes, values)):
            name = f"a{k}_{j}"
            if axis is not None or k in diff:
                shape = value.shape[1:] if axis is not None else value.shape
                leaves.append(BatchedVariable(program.input(name, (batch.size,) + shape)))
            else:
                leaves.append(program.input(name, value.shape))
        args.append(tree.unflatten(treedef, leaves))
    if spec.kind in _PAIRED:
        result = spec.fn(*args[0])
    else:
        result = spec.fn(*args)
    aux = None
    if spec.has_aux:
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise ProgramError("with has_aux=True the function must return (output, aux)")
        result, aux = result
    pairs, out_tree = tree.flatten(result)
    shapes = tuple(tuple(leaf.shape) if isinstance(leaf, Variable) else np.shape(leaf)
                   for leaf in pairs)
    parts = [ops.reshape(materialize(leaf, batch.size), (batch.size, int(np.prod(s))))
             for leaf, s in zip(pairs, shapes)]
    if not parts:
        raise ProgramError("vmap: the function returned no arrays")
    program.output(parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=1))
    return _Traced(program, out_tree, shapes, aux)


def _input_values(spec: _Spec, batch: _Batch) -> list[np.ndarray]:
    diff = spec.diff(len(batch.trees))
    out = []
    for k, (axes, values) in enumerate(zip(batch.axes, batch.values)):
        if spec.kind in _PAIRED and k == 1:
            break
        for axis, value in zip(axes, values):
            if axis is None and k in diff:
                value = np.broadcast_to(value, (batch.size,) + value.shape)
            out.append(value)
    return out


def _solve(spec: _Spec, traced: _Traced, batch: _Batch) -> Solution:
    return traced.program.solve(*_input_values(spec, batch), **spec.options.options.forward)


# ------------------------------------------------------------------ results

def _dtype(batch: _Batch) -> np.dtype[Any]:
    found = [d for ds in batch.dtypes for d in ds if d.kind == "f"]
    return np.result_type(*found) if found else np.dtype(np.float64)


def _place(value: np.ndarray, dtype: np.dtype[Any], out_axes: int) -> np.ndarray:
    """A (B, *s) result with its batch axis at ``out_axes``, in ``dtype``."""
    return np.moveaxis(np.asarray(value, dtype=dtype), 0, out_axes)


def _split(traced: _Traced, flat: np.ndarray, batch: _Batch, out_axes: int) -> Any:
    """The output (B, total) as the result pytree, batch axis at ``out_axes``."""
    flat = flat.reshape(batch.size, -1)
    leaves, start = [], 0
    for shape in traced.out_shapes:
        size = int(np.prod(shape))
        part = flat[:, start:start + size].reshape((batch.size,) + shape)
        leaves.append(_place(part, _dtype(batch), out_axes))
        start += size
    return tree.unflatten(traced.out_tree, leaves)


def _aux(traced: _Traced, sol: Solution, batch: _Batch, out_axes: int) -> Any:
    def value(leaf: Any) -> Any:
        if isinstance(leaf, BatchedVariable):
            v = sol[leaf.inner]
        elif isinstance(leaf, Variable):
            v = np.broadcast_to(sol[leaf], (batch.size,) + leaf.shape)
        else:
            return leaf
        return _place(v, _dtype(batch), out_axes)
    return tree.map(value, traced.aux)


def _run_plain(spec: _Spec, traced: _Traced, batch: _Batch, out_axes: int) -> Any:
    sol = _solve(spec, traced, batch)
    return _split(traced, sol.output, batch, out_axes)


def _run_grad(spec: _Spec, traced: _Traced, batch: _Batch, out_axes: int) -> Any:
    if traced.out_shapes != ((),):
        raise ProgramError(f"grad needs a scalar output per instance; the function returned "
                           f"shapes {list(traced.out_shapes)}")
    sol = _solve(spec, traced, batch)
    # independent instances: the multipliers of the cotangent ones(B) are
    # every instance's gradient, from one adjoint solve
    lam, _ = _adjoint(sol, spec.options, np.ones((batch.size, 1)))
    flat = sol.schedule.index.take(lam, sol.schedule.inputs)
    assert spec.transform is not None
    diff = spec.diff(len(batch.trees))
    grads, start = [], 0
    for k, (treedef, dtypes) in enumerate(zip(batch.trees, batch.dtypes)):
        n = treedef.num_leaves
        if k in diff:
            leaves = [_place(g, d, out_axes) for g, d in zip(flat[start:start + n], dtypes)]
            grads.append(tree.unflatten(treedef, leaves))
        start += n
    picked = grads[0] if is_int(spec.transform.argnums) else tuple(grads)
    value = _split(traced, sol.output, batch, out_axes)
    head = (value, _aux(traced, sol, batch, out_axes)) if spec.has_aux else value
    if spec.kind == "value_and_grad":
        return head, picked
    return (picked, head[1]) if spec.has_aux else picked


def _tangents(spec: _Spec, sol: Solution, batch: _Batch) -> list[np.ndarray]:
    """The batch of tangents, (B, *s) for each input, checked against the primals."""
    if len(batch.trees) != 2:
        raise OptionError(f"vmap of {spec.kind}: call it with (primals, tangents), got "
                          f"{len(batch.trees)} arguments")
    if batch.trees[1].num_leaves != len(sol.schedule.inputs):
        raise ProgramError(f"vmap of {spec.kind}: {batch.trees[1].num_leaves} tangent arrays "
                           f"for {len(sol.schedule.inputs)} primal arrays")
    tangents = []
    for axis, value, v in zip(batch.axes[1], batch.values[1], sol.schedule.inputs):
        if axis is None:
            value = np.broadcast_to(value, (batch.size,) + value.shape)
        if value.shape != v.shape:
            raise ProgramError(f"vmap of {spec.kind}: a tangent of shape {value.shape[1:]} for "
                               f"a primal of shape {v.shape[1:]}")
        tangents.append(value)
    return tangents


def _run_jvp(spec: _Spec, traced: _Traced, batch: _Batch, out_axes: int) -> Any:
    sol = _solve(spec, traced, batch)
    tangents = _tangents(spec, sol, batch)
    setup = spec.options
    zdot = solve_system(sol.tangent_system(tuple(tangents)), setup.linear_method,
                        setup.options.linear, compute_residual=False).x
    out = sol.schedule.index[traced.program.output_variable]
    return (_split(traced, sol.output, batch, out_axes),
            _split(traced, zdot[out], batch, out_axes))


def _run_hvp(spec: _Spec, traced: _Traced, batch: _Batch, out_axes: int) -> Any:
    if traced.out_shapes != ((),):
        raise ProgramError(f"hvp needs a scalar output per instance; the function returned "
                           f"shapes {list(traced.out_shapes)}")
    sol = _solve(spec, traced, batch)
    tangents = _tangents(spec, sol, batch)
    setup = spec.options
    lam, _ = _adjoint(sol, setup, np.ones((batch.size, 1)))  # every instance's multipliers
    index = sol.schedule.index
    e = np.zeros(sol.schedule.size)
    for v, t in zip(sol.schedule.inputs, tangents):
        e[index[v]] = t.ravel()
    lamdot = multiplier_tangent(sol, lam, e, setup.linear_method, setup.options.linear).lamdot
    leaves = [_place(h, d, out_axes)
              for h, d in zip(index.take(lamdot, sol.schedule.inputs), batch.dtypes[0])]
    result = tree.unflatten(batch.trees[0], leaves)
    return result[0] if len(result) == 1 else tuple(result)


_RUNS: dict[str, Callable[[_Spec, _Traced, _Batch, int], Any]] = {
    "plain": _run_plain, "grad": _run_grad, "value_and_grad": _run_grad, "jvp": _run_jvp,
    "hvp": _run_hvp,
}
