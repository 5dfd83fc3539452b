"""Tracing: run an ordinary Python function on placeholder variables and
record the equations it performs into a Program.

Placeholders carry shapes, not values (as under ``jax.jit``), so a traced
program does not depend on the example values and can be solved at any inputs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lagrad.errors import InputDtypeError, OptionError, ProgramError, require_callable
from lagrad.ir import ops
from lagrad.ir.arrayops import is_int
from lagrad.ir.gcpause import paused_gc
from lagrad.ir.program import Program, Variable
from lagrad.tree import LEAF, TreeDef, flatten_with_path, unflatten

__all__ = ["trace", "Traced", "trace_args", "normalize_argnums"]


@dataclass(frozen=True)
class Traced:
    """A traced program and how its inputs and output map back to the
    arguments and the result.

    Each differentiated argument ``args[argnums[k]]`` is a pytree of structure
    ``trees[k]``; its leaves are the program's inputs, in order (``values``
    holds their example values, ``dtypes`` their dtypes). The result (without
    the auxiliary data of ``has_aux``) is a pytree of structure ``out_tree``
    whose leaves have shapes ``out_shapes``: one leaf is the program's output
    itself, several are raveled and concatenated into it. ``aux`` is the
    auxiliary data as returned, traced variables included.
    """

    program: Program
    argnums: tuple[int, ...]
    trees: tuple[TreeDef, ...]
    values: tuple[Any, ...]
    dtypes: tuple[np.dtype[Any], ...]
    out_tree: TreeDef = LEAF
    out_shapes: tuple[tuple[int, ...], ...] = ((),)
    aux: Any = None

    def regroup(self, flat: Sequence[Any]) -> tuple[Any, ...]:
        """Per-input results (in program input order) as one tree per argument."""
        out, k = [], 0
        for treedef in self.trees:
            out.append(unflatten(treedef, flat[k:k + treedef.num_leaves]))
            k += treedef.num_leaves
        return tuple(out)


def trace(fn: Callable[..., Any], *example_args: Any) -> Program:
    """Trace ``fn`` at arguments of the example's shapes into a Program.

    Every argument (a float, an array, or a pytree of them: nested tuples,
    lists, dicts and namedtuples) becomes one input per leaf, named after
    ``fn``'s parameter and the leaf's path (``params['w1']``, ``x[0][1]``).
    The example values give shapes only.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> p = lagrad.trace(lambda x, w: lagrad.tanh(x @ w).sum(), np.ones(3), np.ones((3, 2)))
    >>> print(p)
    input x: (3,)
    input w: (3, 2)
    v2 = matmul(x, w)  # (2,)
    v3 = tanh(v2)  # (2,)
    v4 = sum(v3, axis=None, keepdims=False)  # ()
    output v4
    """
    require_callable(fn, "lagrad.trace")
    return trace_args(fn, example_args, tuple(range(len(example_args)))).program


def normalize_argnums(argnums: int | Sequence[int], nargs: int) -> tuple[int, ...]:
    """``argnums`` (an int or a tuple/list of ints) as non-negative positions."""
    nums = (argnums,) if is_int(argnums) else argnums
    if not isinstance(nums, (tuple, list)) or not all(is_int(a) for a in nums):
        raise OptionError(f"argnums={argnums!r} is not an argument position; give an int or "
                          "a tuple of ints")
    out = []
    for a in nums:
        if not -nargs <= a < nargs:
            raise OptionError(f"argnums {argnums!r} out of range for {nargs} positional "
                              "arguments")
        out.append(int(a) % nargs)
    if len(set(out)) != len(out):
        raise OptionError(f"repeated entry in argnums {argnums!r}")
    return tuple(out)


def trace_args(fn: Callable[..., Any], args: Sequence[Any], argnums: tuple[int, ...],
               program: Program | None = None, *, kwargs: Mapping[str, Any] | None = None,
               has_aux: bool = False, tree_output: bool = False, allow_int: bool = True
               ) -> Traced:
    """Trace ``fn(*args, **kwargs)`` with a placeholder for each leaf of the
    pytrees ``args[k]``, k in argnums; the other arguments and ``kwargs`` are
    passed through as constants.

    With ``has_aux``, ``fn`` returns ``(result, aux)`` and only ``result`` is
    the output. With ``tree_output`` the result may be a pytree (else it is one
    array). Without ``allow_int``, an integer or boolean leaf raises
    InputDtypeError.

    The garbage collector is paused while ``fn`` runs (:mod:`lagrad.ir.gcpause`):
    a traced loop records millions of equations, none of them garbage.
    """
    with paused_gc():
        return _trace_args(fn, args, argnums, program, kwargs, has_aux, tree_output,
                           allow_int)


def _trace_args(fn: Callable[..., Any], args: Sequence[Any], argnums: tuple[int, ...],
                program: Program | None, kwargs: Mapping[str, Any] | None, has_aux: bool,
                tree_output: bool, allow_int: bool) -> Traced:
    program = Program(getattr(fn, "__name__", "")) if program is None else program
    names = _parameter_names(fn, len(args))
    call = list(args)
    trees, values, dtypes = [], [], []
    for k in argnums:
        pairs, treedef = flatten_with_path(args[k])
        placeholders = []
        for path, leaf in pairs:
            dtype = _leaf_dtype(leaf, names[k] + path, allow_int)
            placeholders.append(program.input(names[k] + path, np.shape(leaf)))
            values.append(leaf)
            dtypes.append(dtype)
        call[k] = unflatten(treedef, placeholders)
        trees.append(treedef)
    result = fn(*call, **(kwargs or {}))
    name = f"function {program.name!r}" if program.name else "the function"
    aux = None
    if has_aux:
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise ProgramError(f"{name} must return a pair (output, aux) with has_aux=True, "
                               f"got {type(result).__name__}")
        result, aux = result
    out_tree, out_shapes = _record_output(program, result, name, tree_output)
    return Traced(program, argnums, tuple(trees), tuple(values), tuple(dtypes), out_tree,
                  out_shapes, aux)


def _record_output(program: Program, result: Any, name: str, tree_output: bool
                   ) -> tuple[TreeDef, tuple[tuple[int, ...], ...]]:
    """Make ``result`` the program's output: one array, or with ``tree_output``
    the leaves of a pytree, raveled and concatenated when there are several."""
    if not tree_output or result is None:
        if not isinstance(result, Variable):
            _check_result(result, name)
        program.output(result)
        return LEAF, (_shape(result),)
    pairs, out_tree = flatten_with_path(result)
    for path, leaf in pairs:
        if not isinstance(leaf, Variable):
            _check_result(leaf, name, f" at output{path}" if path else "")
    shapes = tuple(_shape(leaf) for _, leaf in pairs)
    if len(pairs) == 1:
        program.output(pairs[0][1])
    elif not pairs:
        program.output(np.zeros(0))
    else:
        program.output(ops.concatenate([ops.reshape(leaf, (-1,)) for _, leaf in pairs]))
    return out_tree, shapes


def _shape(x: Any) -> tuple[int, ...]:
    return x.shape if isinstance(x, Variable) else np.shape(x)


def _check_result(result: Any, name: str, where: str = "") -> None:
    """A traced function's result that is not a variable must be real numbers;
    ``where`` names the place of a leaf in a pytree result."""
    if result is None:
        raise ProgramError(f"{name} returned None; it must return the value to differentiate "
                           "(is a `return` missing?)")
    if isinstance(result, (tuple, list, dict)):
        raise ProgramError(f"{name} returned a {type(result).__name__}; lagrad differentiates "
                           "functions with one array output")
    kind = _dtype_kind(result)
    if kind == "c":
        raise ProgramError(f"{name} returned complex numbers ({type(result).__name__}){where}; "
                           "lagrad differentiates real-valued functions (return .real or abs())")
    if kind not in "biuf":
        raise ProgramError(f"{name} returned a {type(result).__name__}{where}, not numbers; it "
                           "must return a real scalar or array computed from its arguments")


def _dtype_kind(value: Any) -> str:
    """numpy's dtype kind of ``value``; "O" when numpy cannot make an array of it."""
    try:
        return np.asarray(value).dtype.kind
    except ValueError:  # ragged nesting: numpy's "inhomogeneous shape"
        return "O"


def _leaf_dtype(leaf: Any, name: str, allow_int: bool) -> np.dtype[Any]:
    """The dtype of an argument's leaf, which must be real numbers (and floats
    unless ``allow_int``); ``name`` is its path, as ``params['w1']``."""
    if isinstance(leaf, Variable):
        raise ProgramError(f"argument {name} is already a traced variable; nested "
                           "tracing is not supported")
    try:
        arr = np.asarray(leaf)
    except ValueError as err:  # ragged nesting: numpy's "inhomogeneous shape"
        raise ProgramError(f"argument {name} must be an array of real numbers, got a ragged "
                           f"{type(leaf).__name__}; give an array, or a tuple/list/dict of "
                           "arrays") from err
    if arr.dtype.kind not in "biuf":
        raise ProgramError(f"argument {name} must be real numbers (float64), got "
                           f"{type(leaf).__name__} of dtype {arr.dtype}")
    if not allow_int and arr.dtype.kind != "f":
        raise InputDtypeError(f"argument {name} has dtype {arr.dtype}; lagrad differentiates "
                              "floating-point inputs only: pass floats (np.asarray(x, float)) "
                              "or leave the argument out of argnums")
    return arr.dtype


def _parameter_names(fn: Callable[..., Any], n: int) -> list[str]:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    names: list[str] = []
    for p in params:
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
        elif p.kind == p.VAR_POSITIONAL:
            names += [f"{p.name}[{i}]" for i in range(n - len(names))]
    taken = set(names)
    for i in range(len(names), n):  # no signature: x0, x1, ... avoiding taken names
        k = i
        while f"x{k}" in taken:
            k += 1
        names.append(f"x{k}")
        taken.add(f"x{k}")
    return names[:n]
