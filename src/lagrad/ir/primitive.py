"""The primitive type: a function of the IR with its value, shape rule and
derivative rules (first and second order), and the helpers those rules share.

The primitives themselves are in :mod:`lagrad.ir.elementwise` and
:mod:`lagrad.ir.structural`; :mod:`lagrad.ir.primitives` is their catalogue.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from lagrad.errors import MissingDerivativeError
from lagrad.ir.batching import BatchRule, align, unalign
from lagrad.numeric import broadcast

Array = NDArray[np.float64]
Ints = NDArray[np.intp]
Shape = tuple[int, ...]

__all__ = ["Tracer", "Primitive", "Entries", "unbroadcast", "positions", "selection",
           "broadcast_shape", "elementwise_primitive"]


class Tracer:
    """What a primitive records into instead of computing: the base of
    :class:`lagrad.Variable`. A traced value has a shape and a name, but no
    value; applying a primitive to it asks it to :meth:`record` the equation
    (autograd's boxes work the same way)."""

    __slots__ = ()
    shape: tuple[int, ...]
    name: str
    program: Any
    priority = 0  # among a primitive's traced arguments, the highest records it

    def record(self, prim: Primitive, args: Sequence[Any], params: Mapping[str, Any]) -> Any:
        """Record ``prim(*args, **params)`` and return its traced result."""
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class Primitive:
    """One kind of equation f: its value, shape rule and derivative rules.

    Parameters
    ----------
    name : str
        Printed in equations (``c = add(a, b)``).
    value : callable
        ``value(*args, **params) -> ndarray``.
    shape : callable
        ``shape(*arg_shapes, **params) -> tuple``: the output shape, used while
        tracing so that no value is computed.
    partials : callable, optional
        Elementwise primitives only: ``partials(k, ans, *args, **params)``, the
        elementwise derivative of the output with respect to argument ``k``.
    vjp, jvp, jacobian : callable, optional
        Structural primitives: ``vjp(k, g, ans, *args, **params)`` is the
        cotangent of argument ``k``; ``jvp(ts, ans, *args, **params)`` the
        output tangent for argument tangents ``ts`` (``None`` for none);
        ``jacobian(k, ans, *args, **params)`` the local Jacobian
        d ans / d arg_k (ans.size, arg_k.size): its :class:`Entries`, a
        scipy.sparse matrix or a dense array.
    vjp_add : callable, optional
        ``vjp_add(k, out, g, ans, *args, **params) -> bool``: add the cotangent
        of argument ``k`` into ``out`` in place (no temporary); returns False
        when it cannot, and the cotangent is then computed and added.
    vjp_set : callable, optional
        The same, writing the cotangent over ``out`` (whose contents, even
        NaN, must not be read).
    batch : BatchRule, optional
        Structural primitives that can run over a batch of equations at once
        (see :mod:`lagrad.ir.batching`); elementwise ones always can.
    second : callable, optional
        Elementwise primitives: ``second(k, m, ans, *args, **params)``, the
        elementwise d^2 ans / d arg_k d arg_m (for :meth:`pullback_jvp`).
    second_vjp : callable, optional
        Structural primitives: ``second_vjp(k, g, ts, ans, *args, **params)``,
        the derivative of ``vjp(k, g, ...)`` along the argument tangents ``ts``
        (``None`` where zero) with ``g`` fixed; it may return ``None`` for zero.
    """

    name: str
    value: Callable[..., Any]
    shape: Callable[..., Shape]
    partials: Callable[..., Any] | None = None
    vjp: Callable[..., Any] | None = None
    jvp: Callable[..., Any] | None = None
    jacobian: Callable[..., Any] | None = None
    doc: str = field(default="", repr=False)
    constant_partials: tuple[float, ...] | None = None  # add, sub, neg: skip the products
    vjp_add: Callable[..., bool] | None = None
    batch: BatchRule | None = None
    second: Callable[..., Any] | None = None
    second_vjp: Callable[..., Any] | None = None
    vjp_set: Callable[..., bool] | None = None

    @property
    def elementwise(self) -> bool:
        return self.partials is not None

    def __call__(self, *args: Any, **params: Any) -> Any:
        """Apply to numbers (returns the value) or to traced variables (the
        first :class:`Tracer` argument of highest ``priority`` records an
        equation in its program and returns the new variable)."""
        chosen: Tracer | None = None
        for a in args:
            if isinstance(a, Tracer) and (chosen is None or a.priority > chosen.priority):
                chosen = a
        if chosen is not None:
            return chosen.record(self, args, params)
        return self.value(*(np.asarray(a, dtype=float) for a in args), **params)

    def pullback(self, k: int, g: Array, ans: Array, args: Sequence[Any],
                 params: Mapping[str, Any]) -> Array:
        """Cotangent of argument ``k`` (its shape) given the output cotangent g."""
        if self.constant_partials is not None:
            c = self.constant_partials[k]
            return unbroadcast(g if c == 1.0 else c * g, np.shape(args[k]))
        if self.partials is not None:
            return unbroadcast(g * self.partials(k, ans, *args, **params), np.shape(args[k]))
        assert self.vjp is not None, self.name
        return self.vjp(k, g, ans, *args, **params)

    def pullback_jvp(self, k: int, g: Array, ts: Sequence[Array | None], ans: Array,
                     args: Sequence[Any], params: Mapping[str, Any]) -> Array | None:
        """The derivative of :meth:`pullback` (argument ``k``, cotangent ``g``
        fixed) along the argument tangents ``ts``: sum_m g . d^2 f / d arg_k
        d arg_m . ts_m, in argument ``k``'s shape; ``None`` when it is zero."""
        if self.constant_partials is not None:
            return None  # add, sub, neg, identity: linear
        if self.partials is not None:
            total: Array | None = None
            for m, t in enumerate(ts):
                if t is not None:
                    term = self.second_partials(k, m, ans, args, params) * t
                    total = term if total is None else total + term
            if total is None:
                return None
            return unbroadcast(broadcast(g * total, np.shape(ans)), np.shape(args[k]))
        if self.second_vjp is None:
            raise self._missing_second()
        out = self.second_vjp(k, g, ts, ans, *args, **params)
        return None if out is None else np.reshape(out, np.shape(args[k]))

    def second_partials(self, k: int, m: int, ans: Array, args: Sequence[Any],
                        params: Mapping[str, Any]) -> Array:
        """Elementwise primitives: d^2 ans / d arg_k d arg_m, broadcastable to ans."""
        if self.second is None:
            raise self._missing_second()
        return self.second(k, m, ans, *args, **params)

    def _missing_second(self) -> MissingDerivativeError:
        return MissingDerivativeError(
            f"primitive {self.name!r} has no second-order rule, so hessian and hvp cannot "
            "differentiate through it; give it `second` (elementwise) or `second_vjp` "
            "(structural) next to its first derivative")

    def pullback_add(self, k: int, out: Array, g: Array, ans: Array, args: Sequence[Any],
                     params: Mapping[str, Any]) -> None:
        """``out += `` the cotangent of argument ``k`` (``out`` has its shape)."""
        if self.vjp_add is not None and self.vjp_add(k, out, g, ans, *args, **params):
            return
        if self.constant_partials is not None and self.constant_partials[k] == 1.0 \
                and out.shape == np.shape(g):  # add, identity: nothing to sum or scale
            out += g
            return
        out += self.pullback(k, g, ans, args, params)

    def pullback_set(self, k: int, out: Array, g: Array, ans: Array, args: Sequence[Any],
                     params: Mapping[str, Any]) -> None:
        """``out[...] = `` the cotangent of argument ``k``: :meth:`pullback_add`
        into an ``out`` that was not cleared (nothing of it is read)."""
        if self.vjp_set is not None and self.vjp_set(k, out, g, ans, *args, **params):
            return
        if self.constant_partials is None and self.partials is not None \
                and out.shape == np.shape(g) == np.shape(ans):  # no temporary
            np.multiply(g, self.partials(k, ans, *args, **params), out=out)
            return
        np.copyto(out, self.pullback(k, g, ans, args, params))

    def pushforward_add(self, out: Array, ts: Sequence[tuple[int, Array]], ans: Array,
                        args: Sequence[Any]) -> None:
        """``out += `` the output tangent for the tangents ``ts`` of some arguments
        ((position, tangent) pairs), for an elementwise primitive without
        params: each term partial_k * t_k added in place, where
        :meth:`pushforward` makes their sum apart (five temporaries, twice the
        time on small arrays). No tangent may be a view of ``out``."""
        constant, partials = self.constant_partials, self.partials
        assert partials is not None, self.name
        for k, t in ts:
            if constant is None:
                out += partials(k, ans, *args) * t
            elif constant[k] == 1.0:
                out += t
            else:
                out += constant[k] * t

    def pushforward(self, ts: Sequence[Array | None], ans: Array, args: Sequence[Any],
                    params: Mapping[str, Any]) -> Array:
        """Output tangent for argument tangents ``ts`` (``None`` where zero)."""
        if self.partials is not None:
            out = np.zeros(np.shape(ans))
            for k, t in enumerate(ts):
                if t is not None:
                    out = out + self.partials(k, ans, *args, **params) * t
            return out
        assert self.jvp is not None, self.name
        if all(t is None for t in ts):
            return np.zeros(np.shape(ans))
        return np.asarray(self.jvp(ts, ans, *args, **params), dtype=float).reshape(np.shape(ans))

    def local_jacobian(self, k: int, ans: Array, args: Sequence[Any],
                       params: Mapping[str, Any]) -> sp.csr_matrix:
        """d ans / d arg_k as a sparse (ans.size, arg_k.size) matrix."""
        found = self._local(k, ans, args, params)
        return found.tocsr() if isinstance(found, Entries) else sp.csr_matrix(found)

    def local_entries(self, k: int, ans: Array, args: Sequence[Any],
                      params: Mapping[str, Any], at: tuple[int, int] = (0, 0)
                      ) -> tuple[Ints, Ints, Array]:
        """The entries (rows, cols, values) of :meth:`local_jacobian`, entries at
        one position adding up, without making the sparse matrix (J's assembly
        asks one per equation, and making a scipy.sparse matrix costs far more
        than a small equation's entries). ``at``: (first row, first column)
        added to the positions, as J's assembly places them. The values may be
        views of ``args`` (the partial of x * y by x is y): read them before
        changing those."""
        if self.partials is not None:  # a diagonal or a broadcast selection, placed
            d = self.partials(k, ans, *args, **params)
            return _broadcast_parts(d, np.shape(args[k]), np.shape(ans), at)
        assert self.jacobian is not None, self.name
        rows, cols, vals = _entries(self.jacobian(k, ans, *args, **params))
        return rows + at[0], cols + at[1], vals

    def _local(self, k: int, ans: Array, args: Sequence[Any], params: Mapping[str, Any]) -> Any:
        if self.partials is not None:
            d = self.partials(k, ans, *args, **params)
            return _broadcast_entries(d, np.shape(args[k]), np.shape(ans))
        assert self.jacobian is not None, self.name
        return self.jacobian(k, ans, *args, **params)

    # Batched forms: every argument has a leading batch axis (B, *shape) and the
    # params are shared (lagrad.ir.batching; used by groups of cyclic blocks).
    def batchable(self, params: Mapping[str, Any]) -> bool:
        """Whether this primitive, with these params, runs over a batch."""
        if self.partials is not None:
            return True
        rule = self.batch
        return rule is not None and (rule.accepts is None or rule.accepts(**params))

    def batched_value(self, args: Sequence[Array], params: Mapping[str, Any]) -> Array:
        if self.batch is not None:
            return self.batch.value(*args, **params)
        rank = max(np.ndim(a) for a in args) - 1
        return np.asarray(self.value(*(align(a, rank) for a in args), **params), dtype=float)

    def batched_jvp(self, k: int, t: Array, ans: Array, args: Sequence[Array],
                    params: Mapping[str, Any]) -> Array:
        """Output tangent (B, *out) for the tangent ``t`` of argument ``k`` alone."""
        if self.batch is not None:
            return self.batch.jvp(k, t, ans, *args, **params)
        assert self.partials is not None, self.name
        rank = ans.ndim - 1
        d = self.partials(k, ans, *(align(a, rank) for a in args), **params)
        return broadcast(d * align(t, rank), ans.shape)

    def batched_vjp(self, k: int, g: Array, ans: Array, args: Sequence[Array],
                    params: Mapping[str, Any]) -> Array:
        """Cotangent (B, *shape_k) of argument ``k`` for the output cotangent ``g``."""
        if self.batch is not None:
            return self.batch.vjp(k, g, ans, *args, **params)
        if self.constant_partials is not None:
            c = self.constant_partials[k]
            ct = g if c == 1.0 else c * g
        else:
            assert self.partials is not None, self.name
            rank = ans.ndim - 1
            ct = g * self.partials(k, ans, *(align(a, rank) for a in args), **params)
        return unalign(broadcast(ct, ans.shape), np.shape(args[k]))


# ---------------------------------------------------------------- helpers

def unbroadcast(g: Array, shape: Shape) -> Array:
    """Sum ``g`` over the axes that numpy broadcasting added to reach ``shape``."""
    g = np.asarray(g)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1)
    return np.sum(g, axis=axes).reshape(shape)


def positions(shape: Shape) -> NDArray[np.intp]:
    """Flat positions of an array of ``shape``, laid out in that shape."""
    return np.arange(math.prod(shape)).reshape(shape)


@dataclass(frozen=True)
class Entries:
    """A local Jacobian (``shape``) as its entries: ``vals`` at (``rows``,
    ``cols``), entries at one position adding up. A ``jacobian`` rule may
    return one instead of a scipy.sparse matrix, which costs far more to make
    than a small equation's entries: J's assembly takes one per equation."""

    rows: Ints
    cols: Ints
    vals: Array
    shape: tuple[int, int]

    def tocsr(self) -> sp.csr_matrix:
        return sp.csr_matrix((self.vals, (self.rows, self.cols)), shape=self.shape)


def _broadcast_entries(d: Array, arg_shape: Shape, out_shape: Shape) -> Entries:
    return Entries(*_broadcast_parts(d, arg_shape, out_shape),
                   (math.prod(out_shape), math.prod(arg_shape)))


def _broadcast_parts(d: Array, arg_shape: Shape, out_shape: Shape,
                     at: tuple[int, int] = (0, 0)) -> tuple[Ints, Ints, Array]:
    """An elementwise partial's entries: out[p] depends on arg[q(p)] only, q
    the broadcast of positions (a diagonal when nothing is broadcast, a
    selection otherwise); rows from ``at[0]``, columns from ``at[1]``."""
    if np.shape(d) == out_shape:  # most partials: no broadcast to make
        vals = np.ravel(d)
    else:
        vals = np.empty(out_shape)
        vals[...] = d
        vals = vals.ravel()
    rows = np.arange(at[0], at[0] + vals.size)
    cols = np.arange(at[1], at[1] + vals.size) if arg_shape == out_shape else \
        np.broadcast_to(positions(arg_shape), out_shape).ravel() + at[1]
    return rows, cols, vals


def _entries(found: Any) -> tuple[Ints, Ints, Array]:
    """A ``jacobian`` rule's result (Entries, scipy.sparse or dense) as its entries."""
    if isinstance(found, Entries):
        return found.rows, found.cols, found.vals
    if sp.issparse(found):
        coo = found.tocoo()
        return coo.row, coo.col, coo.data
    dense = np.atleast_2d(np.asarray(found))
    rows, cols = np.nonzero(dense)  # as scipy.sparse keeps a dense matrix
    return rows, cols, dense[rows, cols]


def selection(rows: NDArray[np.intp], cols: NDArray[np.intp], shape: tuple[int, int],
              vals: Array | None = None) -> Entries:
    """The matrix with ``vals`` (default ones) at (rows, cols), as its entries."""
    return Entries(rows, cols, np.ones(len(rows)) if vals is None else vals, shape)


def broadcast_shape(*shapes: Shape, **params: Any) -> Shape:
    """The shape rule of elementwise primitives: numpy broadcasting."""
    if "weights" in params and len(params["weights"]) != len(shapes):
        raise ValueError(f"weighted_sum: {len(params['weights'])} weights for {len(shapes)} "
                         "operands")
    if "condition" in params:
        shapes = (np.shape(params["condition"]),) + shapes
    if shapes and all(s == shapes[0] for s in shapes):
        return tuple(shapes[0])  # the common case while tracing; numpy's check costs ~3 us
    arrays = [s for s in shapes if s]  # a scalar broadcasts to any shape: x * 0.5
    if arrays and len(arrays) < len(shapes) and all(s == arrays[0] for s in arrays):
        return tuple(arrays[0])
    return tuple(np.broadcast_shapes(*shapes))


def elementwise_primitive(name: str, value: Callable[..., Any], partials: Callable[..., Any],
                          doc: str = "", constant: tuple[float, ...] | None = None,
                          second: Callable[..., Any] | None = None) -> Primitive:
    """An elementwise primitive: broadcasting shape rule, derivative from
    ``partials`` (and second derivative from ``second``, when given)."""
    return Primitive(name, value, broadcast_shape, partials=partials, doc=doc,
                     constant_partials=constant, second=second)
