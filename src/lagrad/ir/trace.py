"""Tracing: run an ordinary Python function on placeholder variables and
record the equations it performs into a Program.

Placeholders carry shapes, not values (as under ``jax.jit``), so a traced
program does not depend on the example values and can be solved at any inputs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lagrad.errors import OptionError, ProgramError
from lagrad.ir.program import Program, Variable

__all__ = ["trace", "Traced", "trace_args", "normalize_argnums"]


@dataclass(frozen=True)
class Traced:
    """A traced program and how its inputs map back to the arguments.

    ``leaves[k]`` lists the input variables of argument ``argnums[k]``;
    ``containers[k]`` is ``None`` for an array argument, else the tuple/list
    type that held the leaves.
    """

    program: Program
    argnums: tuple[int, ...]
    leaves: tuple[tuple[Variable, ...], ...]
    containers: tuple[type | None, ...]

    def regroup(self, flat: Sequence[Any]) -> tuple[Any, ...]:
        """Per-input results (in program input order) regrouped per argument."""
        out, k = [], 0
        for leaves, container in zip(self.leaves, self.containers):
            part = list(flat[k:k + len(leaves)])
            k += len(leaves)
            out.append(part[0] if container is None else container(part))
        return tuple(out)


def trace(fn: Callable[..., Any], *example_args: Any) -> Program:
    """Trace ``fn`` at arguments of the example's shapes into a Program.

    Every argument (a float, an array, or a tuple/list of them) becomes one or
    more inputs, named after ``fn``'s parameters. The example values give
    shapes only.

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
    return trace_args(fn, example_args, tuple(range(len(example_args)))).program


def normalize_argnums(argnums: int | Sequence[int], nargs: int) -> tuple[int, ...]:
    """``argnums`` (an int or a tuple/list of ints) as non-negative positions."""
    nums = (argnums,) if _is_int(argnums) else argnums
    if not isinstance(nums, (tuple, list)) or not all(_is_int(a) for a in nums):
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
               program: Program | None = None) -> Traced:
    """Trace ``fn(*args)`` with placeholders for ``args[k]``, k in argnums;
    the other arguments are passed through as constants."""
    program = Program(getattr(fn, "__name__", "")) if program is None else program
    names = _parameter_names(fn, len(args))
    call = list(args)
    leaves, containers = [], []
    for k in argnums:
        arg = args[k]
        if isinstance(arg, (tuple, list)):
            vs = tuple(program.input(f"{names[k]}[{i}]", _example_shape(a, names[k]))
                       for i, a in enumerate(arg))
            call[k] = type(arg)(vs)
            leaves.append(vs)
            containers.append(type(arg))
        else:
            v = program.input(names[k], _example_shape(arg, names[k]))
            call[k] = v
            leaves.append((v,))
            containers.append(None)
    result = fn(*call)
    if not isinstance(result, Variable):
        _check_result(result, f"function {program.name!r}" if program.name else "the function")
    program.output(result)
    return Traced(program, argnums, tuple(leaves), tuple(containers))


def _is_int(a: Any) -> bool:
    return isinstance(a, (int, np.integer)) and not isinstance(a, bool)


def _check_result(result: Any, name: str) -> None:
    """A traced function's result that is not a variable must be real numbers."""
    if result is None:
        raise ProgramError(f"{name} returned None; it must return the value to differentiate "
                           "(is a `return` missing?)")
    if isinstance(result, (tuple, list, dict)):
        raise ProgramError(f"{name} returned a {type(result).__name__}; lagrad differentiates "
                           "functions with one array output")
    kind = np.asarray(result).dtype.kind
    if kind == "c":
        raise ProgramError(f"{name} returned complex numbers ({type(result).__name__}); "
                           "lagrad differentiates real-valued functions (return .real or abs())")
    if kind not in "biuf":
        raise ProgramError(f"{name} returned a {type(result).__name__}, not numbers; it must "
                           "return a real scalar or array computed from its arguments")


def _example_shape(a: Any, name: str) -> tuple[int, ...]:
    if isinstance(a, Variable):
        raise ProgramError(f"argument {name!r} is already a traced variable; nested "
                           "tracing is not supported")
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise ProgramError(f"argument {name!r} must be real numbers (float64), got "
                           f"{type(a).__name__} of dtype {arr.dtype}")
    return arr.shape


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
