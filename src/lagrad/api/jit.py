"""Trace once, run many: :func:`jit` and the :class:`Jitted` function it makes
(programs cached by :class:`lagrad.ir.cache.TraceCache`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from lagrad.api.common import ArgNums, _Setup, _trace_solve, _unflatten_output
from lagrad.errors import require_callable
from lagrad.ir.cache import TraceCache
from lagrad.ir.trace import normalize_argnums

__all__ = ["jit", "Jitted"]


class Jitted:
    """``fn`` with its traces cached: see :func:`jit`.

    Calling it solves ``fn``'s program at the arguments (their values); the
    transforms (:func:`grad`, :func:`value_and_grad`, :func:`jvp`, ...)
    applied to it share its cache. ``cache.traces`` counts the traces.
    """

    def __init__(self, fn: Callable[..., Any], static_argnums: ArgNums = (),
                 max_traces: int | None = None) -> None:
        self.fn = fn
        self.static_argnums = static_argnums
        self.cache = TraceCache(fn) if max_traces is None else TraceCache(fn, max_traces)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        static = normalize_argnums(self.static_argnums, len(args)) if args else ()
        nums = tuple(k for k in range(len(args)) if k not in static)
        setup = _Setup(cache=self.cache)
        call = _trace_solve(self.fn, setup, args, kwargs, nums, tree_output=True)
        return _unflatten_output(call.traced, call.sol.output, call.dtype(args, kwargs))

    def __repr__(self) -> str:
        return f"<lagrad.jit of {getattr(self.fn, '__name__', self.fn)!r}>"


def _unjit(fn: Callable[..., Any], setup: _Setup) -> tuple[Callable[..., Any], _Setup]:
    """A jitted function's own function, with its cache in the setup."""
    if isinstance(fn, Jitted):
        return fn.fn, _Setup(setup.options, fn.cache, setup.return_info)
    return fn, setup


def jit(fn: Callable[..., Any], *, static_argnums: ArgNums = (),
        max_traces: int | None = None) -> Any:
    """Trace once, run many: ``fn`` with its programs cached (as ``jax.jit``).

    Parameters
    ----------
    fn : callable
        A function of lagrad operations, or a transform of one
        (``lagrad.jit(lagrad.value_and_grad(loss))``).
    static_argnums : int or sequence of int
        For a plain function: positional arguments passed as constants (not
        traced), for Python control flow on them. Transforms already pass the
        arguments outside ``argnums`` as constants.
    max_traces : int, optional
        Programs kept (least recently used dropped first; default 32).

    Returns
    -------
    Jitted or callable
        For a plain function, a :class:`Jitted`: calling it returns ``fn``'s
        value; ``lagrad.grad(jitted)`` and the other transforms share its
        cache. For a transform, the same transform with a cache; its
        ``cache.traces`` counts the traces.

    Notes
    -----
    A call traces ``fn`` when no program was traced for its *key*: the
    structure, shapes and dtypes of the traced (differentiated) arguments,
    the values of the other arguments and keyword arguments (constants baked
    into the program: arrays are compared with a copy taken at trace time,
    other values must be hashable and are compared with ``==``), and the
    transform's ``argnums`` and ``has_aux``. Values of traced arguments never
    retrace: placeholders carry shapes only. An argument that is neither an
    array nor hashable (a scipy.sparse matrix) retraces at every call.

    Under :func:`~lagrad.value_and_grad` and :func:`~lagrad.grad`, a
    floating-point array passed positionally outside ``argnums`` (a batch of
    data) is traced too, as an input without a gradient: keyed by its shape
    and dtype and read at each call, so new batches do not retrace. One whose
    values the function reads in Python (control flow, ``np.asarray``)
    cannot be traced and is baked in as a constant, as above. After the
    first call, such a transform of an acyclic array program (without
    ``has_aux``, options or ``return_info``) runs as one generated function
    (see :mod:`lagrad.api.fastpath`).

    As in JAX, what ``fn`` closes over (arrays in an enclosing scope,
    globals) is baked in at the first trace: a later change is not seen.
    Pass such values as arguments, or call ``cache.clear()``.

    Examples
    --------
    >>> import numpy as np, lagrad
    >>> step = lagrad.jit(lagrad.value_and_grad(lambda w, x: ((x @ w) ** 2).sum()))
    >>> for k in range(3):
    ...     x = np.full((4, 3), k + 1.0)  # a new batch: read, not retraced
    ...     loss, g = step(np.full(3, float(k)), x)
    >>> step.cache.traces, float(loss), g
    (1, 1296.0, array([432., 432., 432.]))
    """
    require_callable(fn, "lagrad.jit")
    rebuild = getattr(fn, "lagrad_with_cache", None)
    if rebuild is not None:
        return rebuild(max_traces)
    return Jitted(fn, static_argnums, max_traces)
