"""Compile once, run many: traced programs cached by what determines them.

A traced program depends on

* the structure, shapes and dtypes of the differentiated arguments (their
  leaves become placeholders, which carry shapes only: the values never
  enter the program);
* the *values* of every other argument and keyword argument: they are
  constants baked into the program, and Python control flow may read them
  (as JAX's ``static_argnums``);
* the function itself, with what it closes over and the globals it reads:
  baked in at the first trace, as under ``jax.jit``.

:class:`TraceCache` keys a trace on the first two. Differentiated leaves are
keyed by (type, shape, dtype); other leaves by value: arrays are compared with
a snapshot taken at trace time (so an array changed in place is seen), other
leaves must be hashable and are compared with ``==`` (as JAX requires of
static arguments: they must be immutable). An argument that is neither (a
scipy.sparse matrix, a mutable object) is not cached: the call traces anew,
which is always correct. Closures are the caller's contract: to see a new
value of a closed-over array, pass it as an argument or make a new cache.

A caller may also pass data arrays among the argnums to trace them as
inputs (``lagrad.api`` does so for a jitted ``value_and_grad``): they are then
keyed by shape and dtype like the differentiated ones.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lagrad import tree
from lagrad.ir.trace import Traced, trace_args

__all__ = ["TraceCache", "CacheHit", "MAX_TRACES", "same_arrays"]

MAX_TRACES = 32
"""Programs kept per cache; the least recently used is dropped beyond it."""


@dataclass(frozen=True)
class CacheHit:
    """A traced program and this call's differentiated leaves (its inputs).

    ``memo`` is a dict kept with the program for as long as the cache keeps
    it (empty for an uncacheable call): a caller may store there what follows
    from the key alone (such as the result's dtype), to skip recomputing it.
    """

    traced: Traced
    values: tuple[Any, ...]
    traced_now: bool
    memo: dict[str, Any] = field(default_factory=dict)


class _Uncacheable(Exception):
    """An argument that can be neither hashed nor snapshotted."""


@dataclass(frozen=True)
class _Entry:
    snapshots: tuple[np.ndarray, ...]
    traced: Traced
    memo: dict[str, Any] = field(default_factory=dict)


class TraceCache:
    """Traces of one function, by argument structure, shapes, dtypes and the
    values of the non-differentiated arguments.

    Parameters
    ----------
    fn : callable
        The function to trace (its closures are baked into each trace).
    max_traces : int
        How many programs to keep (least recently used dropped first).

    Attributes
    ----------
    traces : int
        How many times ``fn`` has been traced through this cache.
    fast : dict
        Entries a caller keeps with the traces, dropped by :meth:`clear` (the
        compiled sweeps of ``lagrad.api.fastpath``, by call signature).

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> from lagrad.ir.cache import TraceCache
    >>> cache = TraceCache(lambda x, c: (c * x ** 2).sum())
    >>> hit = cache.lookup((np.ones(3), 2.0), {}, (0,))
    >>> hit = cache.lookup((np.zeros(3), 2.0), {}, (0,))  # new values, same shapes
    >>> cache.traces, hit.traced_now
    (1, False)
    >>> hit = cache.lookup((np.zeros(3), 3.0), {}, (0,))  # a new constant: retrace
    >>> cache.traces
    2
    """

    def __init__(self, fn: Callable[..., Any], max_traces: int = MAX_TRACES) -> None:
        self.fn = fn
        self.max_traces = max_traces
        self.traces = 0
        self.fast: dict[Hashable, Any] = {}
        self._entries: OrderedDict[Hashable, list[_Entry]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return sum(len(v) for v in self._entries.values())

    def clear(self) -> None:
        """Forget every trace (the next call traces again, reading closures anew)."""
        with self._lock:
            self._entries.clear()
            self.fast.clear()

    def lookup(self, args: Sequence[Any], kwargs: Mapping[str, Any], argnums: tuple[int, ...],
               *, has_aux: bool = False, tree_output: bool = False) -> CacheHit:
        """The program of ``fn(*args, **kwargs)`` with the leaves of
        ``args[k]``, k in ``argnums``, as inputs: from the cache when one was
        traced for the same key, else traced now (and kept)."""
        values: list[Any] = []
        try:
            key, arrays = _key(args, kwargs, argnums, values, (has_aux, tree_output))
        except _Uncacheable:
            return CacheHit(self._trace(args, kwargs, argnums, has_aux, tree_output),
                            tuple(values), True)
        with self._lock:
            entries = self._entries.get(key)
            if entries is not None:
                self._entries.move_to_end(key)
                for entry in entries:
                    if same_arrays(entry.snapshots, arrays):
                        return CacheHit(entry.traced, tuple(values), False, entry.memo)
        traced = self._trace(args, kwargs, argnums, has_aux, tree_output)
        entry = _Entry(tuple(np.array(a, copy=True) for a in arrays), traced)
        with self._lock:
            self._entries.setdefault(key, []).append(entry)
            self._entries.move_to_end(key)
            while len(self) > self.max_traces:
                oldest = next(iter(self._entries))
                self._entries[oldest].pop(0)
                if not self._entries[oldest]:
                    del self._entries[oldest]
        return CacheHit(traced, tuple(values), True, entry.memo)

    def _trace(self, args: Sequence[Any], kwargs: Mapping[str, Any], argnums: tuple[int, ...],
               has_aux: bool, tree_output: bool) -> Traced:
        traced = trace_args(self.fn, args, argnums, kwargs=kwargs, has_aux=has_aux,
                            tree_output=tree_output, allow_int=False)
        self.traces += 1
        return traced


def _key(args: Sequence[Any], kwargs: Mapping[str, Any], argnums: tuple[int, ...],
         values: list[Any], flags: tuple[bool, bool]) -> tuple[Hashable, list[np.ndarray]]:
    """(hashable key, arrays to compare by value); fills ``values`` with the
    differentiated leaves in input order."""
    parts: list[Hashable] = [len(args), argnums, flags]
    for k in argnums:
        leaves, treedef = _flatten(args[k])
        parts.append(treedef)
        for leaf in leaves:
            values.append(leaf)
            if isinstance(leaf, np.ndarray):
                parts.append((leaf.shape, leaf.dtype))
            elif isinstance(leaf, (float, int, np.generic)):
                parts.append((type(leaf), ()))
            else:  # lists, anything array-like: its shape and dtype
                arr = np.asarray(leaf)
                parts.append((type(leaf), arr.shape, arr.dtype))
    arrays: list[np.ndarray] = []
    if len(argnums) == len(args) and not kwargs:  # nothing baked in
        return tuple(parts), arrays
    rest = tuple(a for i, a in enumerate(args) if i not in argnums)
    leaves, treedef = tree.flatten((rest, dict(kwargs)))
    parts.append(treedef)
    for leaf in leaves:
        if isinstance(leaf, np.ndarray):
            if leaf.dtype.kind not in "biufc":
                raise _Uncacheable
            parts.append((np.ndarray, leaf.shape, leaf.dtype))
            arrays.append(leaf)
            continue
        try:
            hash(leaf)
        except TypeError:
            raise _Uncacheable from None
        parts.append((type(leaf), leaf))
    return tuple(parts), arrays


def _flatten(x: Any) -> tuple[list[Any], tree.TreeDef]:
    """tree.flatten, without its walk for the common single array or float."""
    if isinstance(x, (np.ndarray, float, np.generic)):
        return [x], tree.LEAF
    return tree.flatten(x)


def same_arrays(snapshots: Sequence[np.ndarray], arrays: Sequence[np.ndarray]) -> bool:
    """Whether each array equals its snapshot (shape and values; NaN equals NaN)."""
    for old, new in zip(snapshots, arrays):
        if old is new:
            continue
        if old.shape != new.shape:
            return False
        if not np.array_equal(old, new):  # NaNs count as equal, checked only when needed
            if old.dtype.kind not in "fc" or not np.array_equal(old, new, equal_nan=True):
                return False
    return True
