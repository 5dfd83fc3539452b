"""The fast path of a jitted ``value_and_grad``: a call whose arguments are
arrays, floats, or tuples, lists and dicts of them runs the program's
generated sweep (:mod:`lagrad.solve.codegen`) after one dictionary lookup.

The key is the call's *signature*: for a differentiated argument, its
(shape, dtype) (an array), ``float``, or the (shape, dtype) or ``float`` of
each leaf of a tuple, list or dict (with its keys); for another argument, its
(shape, dtype) when it is an array, or its type and value (hashable
scalars). A floating-point array outside ``argnums`` is read as an input of
the program (a data array); any other array, and a data array whose tracing
as an input failed, is a constant of the program, compared at each call with
a copy taken when the entry was made. That determines the traced program as
:class:`lagrad.ir.cache.TraceCache`'s key does, so a signature found here
maps to the program the general path would solve. Any other call (keyword
arguments, nested containers, numpy scalars, options, ``has_aux``,
``return_info``) takes the general path; so does a call whose sweep meets a
value that is not finite (the general path then names the equation), or that
raises.

An entry is made after a call of the general path, from that call's program
when it runs from a flat plan, and kept only if its generated sweep gives
that call's value and gradient bit for bit. ``cache.clear()`` drops the
entries with the traces.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lagrad.ir.cache import TraceCache, same_arrays
from lagrad.solve.codegen import CompiledGradient, compile_gradient
from lagrad.solve.flatplan import flat_plan
from lagrad.solve.solution import Solution

__all__ = ["signature", "FastEntry", "fast_call", "learn"]

_SCALARS = (int, bool, str, type(None))
"""Non-differentiated arguments keyed by value (float is keyed as a float)."""


def signature(args: Sequence[Any], nums: tuple[int, ...]) -> Hashable | None:
    """The fast key of a call (see the module notes), or None when the call
    must take the general path."""
    key: list[Hashable] = [nums]
    for k, a in enumerate(args):
        t = type(a)
        if t is np.ndarray:
            if a.dtype.kind not in ("f" if k in nums else "biuf"):
                return None
            key.append((a.shape, a.dtype))
        elif k in nums:
            if t is float:
                key.append(float)
                continue
            if t is tuple or t is list:
                leaves = _leaves_key(a)
            elif t is dict:
                names = _sorted_keys(a)
                leaves = None if names is None else _leaves_key([a[n] for n in names])
                t = (t, names)
            else:
                return None
            if leaves is None:
                return None
            key.append((t, leaves))
        elif t is float or t in _SCALARS:
            key.append((t, a))
        else:
            return None
    return tuple(key)


def _leaves_key(leaves: Sequence[Any]) -> tuple[Hashable, ...] | None:
    """(shape, dtype) or float per leaf of one level of a container; None if
    a leaf is anything else (a nested container: the general path)."""
    parts: list[Hashable] = []
    for leaf in leaves:
        t = type(leaf)
        if t is np.ndarray and leaf.dtype.kind == "f":
            parts.append((leaf.shape, leaf.dtype))
        elif t is float:
            parts.append(float)
        else:
            return None
    return tuple(parts)


def _sorted_keys(d: dict[Any, Any]) -> tuple[Any, ...] | None:
    """A dict's keys in lagrad.tree's order (sorted), or None if unsortable."""
    try:
        return tuple(sorted(d))
    except TypeError:
        return None


def _layout(a: Any) -> Any:
    """How a differentiated argument gives its leaves: itself (None), in
    order ("seq") or by these keys (a dict)."""
    if type(a) is dict:
        return tuple(sorted(a))
    return "seq" if type(a) is tuple or type(a) is list else None


@dataclass(frozen=True)
class FastEntry:
    """A compiled sweep and what turns its result into the transform's."""

    run: CompiledGradient
    nums: tuple[int, ...]
    layouts: tuple[Any, ...]  # per differentiated argument, see _layout
    data: tuple[int, ...]  # arrays passed as inputs without a gradient
    constants: tuple[tuple[int, np.ndarray], ...]  # (position, copy) of constant arrays
    finish: Callable[[Any, tuple[Any, ...]], Any]

    def __call__(self, args: Sequence[Any]) -> Any:
        """The transform's result, or None (take the general path)."""
        for k, old in self.constants:
            if not same_arrays((old,), (args[k],)):
                return None
        inputs: list[Any] = []
        for k, layout in zip(self.nums, self.layouts):
            a = args[k]
            if layout is None:
                inputs.append(a)
            elif layout == "seq":
                inputs.extend(a)
            else:
                inputs.extend(a[name] for name in layout)
        for k in self.data:
            inputs.append(args[k])
        try:
            found = self.run(*inputs)
        except Exception:  # noqa: BLE001  (the general path raises it again, or names it)
            return None
        return None if found is None else self.finish(*found)


def fast_call(cache: TraceCache, args: Sequence[Any], nums: tuple[int, ...]) -> Any:
    """The result of a call by its fast entry, or None."""
    key = signature(args, nums)
    entry = cache.fast.get(key) if key is not None else None
    return None if entry is None else entry(args)


def learn(cache: TraceCache, args: Sequence[Any], nums: tuple[int, ...],
          data: tuple[int, ...], sol: Solution, result: tuple[Any, Any],
          finish: Callable[[Any, tuple[Any, ...]], Any]) -> None:
    """Make the fast entry of a call that took the general path, when its
    program runs from a flat plan and the generated sweep reproduces
    ``result`` (the call's ``(value, gradients)``) exactly; else remember that
    this signature has none (None). ``data``: the arguments that the program
    reads as its last inputs (one leaf each), without a gradient."""
    key = signature(args, nums)
    if key is None or key in cache.fast:
        return
    plan = flat_plan(sol.schedule)
    compiled = None if plan is None else \
        compile_gradient(plan, len(sol.schedule.inputs) - len(data))
    entry = None
    if compiled is not None:
        constants = tuple((k, np.array(a, copy=True)) for k, a in enumerate(args)
                          if k not in nums and k not in data and type(a) is np.ndarray)
        layouts = tuple(_layout(args[k]) for k in nums)
        candidate = FastEntry(compiled, nums, layouts, data, constants, finish)
        found = candidate(args)
        if found is None:
            return  # not finite here, or busy: try again at the next call
        if _identical(found, result):
            entry = candidate
    cache.fast[key] = entry
    try:
        while len(cache.fast) > cache.max_traces:
            cache.fast.pop(next(iter(cache.fast)), None)
    except (RuntimeError, StopIteration):  # another thread changed it: trimmed next time
        pass


def _identical(a: Any, b: Any) -> bool:
    """The same structure, types, dtypes, shapes and bits."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_identical(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_identical(a[k], b[k]) for k in a)
    if isinstance(a, (np.ndarray, np.generic)):
        return a.dtype == b.dtype and a.shape == b.shape and \
            np.array_equal(a, b, equal_nan=True)
    return bool(a == b)
