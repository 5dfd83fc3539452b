"""Primitives: each one defined here, once, with its value and derivatives.

A primitive is the f_i of an equation z_i = f_i(z_alpha(i)). Everything the
library does with an equation (forward evaluation, VJP back-substitution,
JVP forward substitution, sparse assembly of J) goes through the methods of
:class:`Primitive`; no other module switches on primitive names.

Two kinds of rules:

* *elementwise* primitives give only ``partials(k, ans, *args)``: the
  elementwise derivative d ans / d arg_k, broadcastable to ``ans``. The VJP,
  JVP and the sparse local Jacobian (a diagonal, or a broadcast selection) are
  derived from it, so it is the single source of truth.
* *structural* primitives (reshape, sums, matmul, ...) give ``vjp``, ``jvp``
  and ``jacobian`` directly, because there they are cheaper than any generic
  derivation; the tests check the three against each other and against finite
  differences.

Second order (:func:`lagrad.hvp`, :func:`lagrad.hessian`) needs one more rule
per primitive, next to its first: elementwise ones give ``second(k, m, ans,
*args)``, the elementwise d^2 ans / d arg_k d arg_m (total: through ``ans``
too); structural ones give ``second_vjp(k, g, ts, ans, *args)``, the derivative
of their ``vjp`` of argument ``k`` along the argument tangents ``ts`` with the
cotangent ``g`` held fixed (``None`` when it is zero, as for every linear map).
A primitive without one raises :class:`~lagrad.errors.MissingDerivativeError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.special
from numpy.typing import NDArray

from lagrad.errors import MissingDerivativeError
from lagrad.ir import batching
from lagrad.ir.accumulate import matmul_vjp_add
from lagrad.ir.batching import BatchRule, align, unalign

Array = NDArray[np.float64]
Shape = tuple[int, ...]

__all__ = ["Primitive", "Tracer", "ELEMENTWISE", "STRUCTURAL", "unbroadcast", "positions",
           "selection", "broadcast_shape", "elementwise_primitive", "reduced_shape",
           "expand_reduced", "reduction_rows", "linear_second_vjp", "bilinear_jvp"]


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
        d ans / d arg_k as a scipy.sparse matrix (ans.size, arg_k.size).
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
            return unbroadcast(np.broadcast_to(g * total, np.shape(ans)), np.shape(args[k]))
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
        if self.partials is not None:
            d = self.partials(k, ans, *args, **params)
            return _broadcast_jacobian(d, np.shape(args[k]), np.shape(ans))
        assert self.jacobian is not None, self.name
        return sp.csr_matrix(self.jacobian(k, ans, *args, **params))

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
        return np.broadcast_to(d * align(t, rank), ans.shape)

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
        return unalign(np.broadcast_to(ct, ans.shape), np.shape(args[k]))


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


def _broadcast_jacobian(d: Array, arg_shape: Shape, out_shape: Shape) -> sp.csr_matrix:
    # out[p] depends on arg[q(p)] only, where q is the broadcast of positions:
    # a diagonal when no broadcasting happens, a selection otherwise.
    n_out, n_arg = math.prod(out_shape), math.prod(arg_shape)
    vals = np.broadcast_to(d, out_shape).ravel()
    cols = np.broadcast_to(positions(arg_shape), out_shape).ravel()
    return sp.csr_matrix((vals, (np.arange(n_out), cols)), shape=(n_out, n_arg))


def selection(rows: NDArray[np.intp], cols: NDArray[np.intp], shape: tuple[int, int],
              vals: Array | None = None) -> sp.csr_matrix:
    """The sparse matrix with ``vals`` (default ones) at (rows, cols)."""
    if vals is None:
        vals = np.ones(len(rows))
    return sp.csr_matrix((vals, (rows, cols)), shape=shape)


def broadcast_shape(*shapes: Shape, **params: Any) -> Shape:
    """The shape rule of elementwise primitives: numpy broadcasting."""
    if "weights" in params and len(params["weights"]) != len(shapes):
        raise ValueError(f"weighted_sum: {len(params['weights'])} weights for {len(shapes)} "
                         "operands")
    if "condition" in params:
        shapes = (np.shape(params["condition"]),) + shapes
    if shapes and all(s == shapes[0] for s in shapes):
        return tuple(shapes[0])  # the common case while tracing; numpy's check costs ~3 us
    return tuple(np.broadcast_shapes(*shapes))


def elementwise_primitive(name: str, value: Callable[..., Any], partials: Callable[..., Any],
                          doc: str = "", constant: tuple[float, ...] | None = None,
                          second: Callable[..., Any] | None = None) -> Primitive:
    """An elementwise primitive: broadcasting shape rule, derivative from
    ``partials`` (and second derivative from ``second``, when given)."""
    return Primitive(name, value, broadcast_shape, partials=partials, doc=doc,
                     constant_partials=constant, second=second)


# ----------------------------------------------------- elementwise rules

def _one(k: int, ans: Array, *args: Array) -> Array:
    return np.ones_like(ans)


def _sub_partials(k: int, ans: Array, x: Array, y: Array) -> Array:
    return np.full_like(ans, 1.0 if k == 0 else -1.0)


def _mul_partials(k: int, ans: Array, x: Array, y: Array) -> Array:
    return np.asarray(y if k == 0 else x, dtype=float)


def _div_partials(k: int, ans: Array, x: Array, y: Array) -> Array:
    return 1.0 / np.asarray(y) if k == 0 else -ans / y


def _pow_partials(k: int, ans: Array, x: Array, y: Array) -> Array:
    if k == 0:
        # d x**y / d x = y x**(y - 1), but x**0 = 1 is constant, even at x = 0 where
        # y x**(y - 1) would be 0 * inf: an exponent of 0 is replaced by 1 in the power
        # (any finite value), so that y * ... is exactly 0 there.
        return y * np.power(x, np.subtract(np.where(y == 0, 1.0, y), 1.0))
    # d x**y / d y = x**y log x; at x == 0 the limit used by JAX and autograd is 0.
    safe = np.where(x == 0, 1.0, x)
    return np.where(x == 0, 0.0, ans * np.log(safe))


def _max_partials(k: int, ans: Array, x: Array, y: Array) -> Array:
    mine, other = (x, y) if k == 0 else (y, x)
    # ties split the derivative evenly, as JAX does
    return np.where(mine > other, 1.0, np.where(mine == other, 0.5, 0.0))


def _min_partials(k: int, ans: Array, x: Array, y: Array) -> Array:
    mine, other = (x, y) if k == 0 else (y, x)
    return np.where(mine < other, 1.0, np.where(mine == other, 0.5, 0.0))


def _where_value(x: Array, y: Array, *, condition: NDArray[np.bool_]) -> Array:
    return np.where(condition, x, y)


def _where_partials(k: int, ans: Array, x: Array, y: Array, *,
                    condition: NDArray[np.bool_]) -> Array:
    chosen = condition if k == 0 else ~condition
    return np.broadcast_to(chosen, np.shape(ans)).astype(float)


# Second partials d^2 f / d arg_k d arg_m (total derivatives: a rule written with
# ``ans`` differentiates ans too), one next to each first.

def _zero_second(k: int, m: int, ans: Array, *args: Array, **params: Any) -> Array:
    return np.zeros_like(ans)


def _mul_second(k: int, m: int, ans: Array, x: Array, y: Array) -> Array:
    return np.full_like(ans, 0.0 if k == m else 1.0)


def _div_second(k: int, m: int, ans: Array, x: Array, y: Array) -> Array:
    # f = x / y:  f_xx = 0,  f_xy = -1 / y^2,  f_yy = 2 x / y^3 = 2 f / y^2
    if k == m == 0:
        return np.zeros_like(ans)
    if k != m:
        return -1.0 / (np.asarray(y) * y)
    return 2.0 * ans / (np.asarray(y) * y)


def _pow_second(k: int, m: int, ans: Array, x: Array, y: Array) -> Array:
    # f = x^y:  f_xx = y (y - 1) x^(y - 2),  f_xy = x^(y - 1) (1 + y log x),
    # f_yy = x^y log(x)^2. Exponents 0 and 1 make f_xx exactly 0 (no 0 * inf at
    # x = 0, as in _pow_partials); at x = 0 the log terms take JAX's limit 0.
    if k == m == 0:
        flat = (y == 0) | (y == 1)
        return np.where(flat, 0.0, y * (y - 1.0) * np.power(x, np.where(flat, 2.0, y) - 2.0))
    safe = np.where(x == 0, 1.0, x)
    if k != m:
        return np.where(x == 0, np.where(y == 1, 1.0, 0.0),
                        np.power(safe, y - 1.0) * (1.0 + y * np.log(safe)))
    return np.where(x == 0, 0.0, ans * np.log(safe) ** 2)


# Named functions, not lambdas: a Program holds its primitives, and pickle
# stores functions by their module-level name.

def _identity_value(x: Array) -> Array:
    return np.array(x, dtype=float)


def _neg_partials(k: int, ans: Array, x: Array) -> Array:
    return np.full_like(ans, -1.0)


def _exp_partials(k: int, ans: Array, x: Array) -> Array:
    return ans


def _exp_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return ans


def _log_partials(k: int, ans: Array, x: Array) -> Array:
    return 1.0 / x


def _log_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return -1.0 / (np.asarray(x) * x)


def _sin_partials(k: int, ans: Array, x: Array) -> Array:
    return np.cos(x)


def _sin_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return -ans


def _cos_partials(k: int, ans: Array, x: Array) -> Array:
    return -np.sin(x)


def _cos_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return -ans


def _tanh_partials(k: int, ans: Array, x: Array) -> Array:
    return 1.0 - ans * ans


def _tanh_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return -2.0 * ans * (1.0 - ans * ans)


def _sigmoid_partials(k: int, ans: Array, x: Array) -> Array:
    return ans * (1.0 - ans)


def _sigmoid_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return ans * (1.0 - ans) * (1.0 - 2.0 * ans)


def _relu_value(x: Array) -> Array:
    return np.maximum(x, 0.0)


def _relu_partials(k: int, ans: Array, x: Array) -> Array:
    return (np.asarray(x) > 0).astype(float)


def _sqrt_partials(k: int, ans: Array, x: Array) -> Array:
    return 0.5 / ans


def _sqrt_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return -0.25 / (ans * ans * ans)


def _abs_partials(k: int, ans: Array, x: Array) -> Array:
    return np.sign(x).astype(float)


identity = elementwise_primitive("identity", _identity_value, _one, constant=(1.0,))
neg = elementwise_primitive("neg", np.negative, _neg_partials, constant=(-1.0,))
add = elementwise_primitive("add", np.add, _one, constant=(1.0, 1.0))
sub = elementwise_primitive("sub", np.subtract, _sub_partials, constant=(1.0, -1.0))
mul = elementwise_primitive("mul", np.multiply, _mul_partials, second=_mul_second)
div = elementwise_primitive("div", np.divide, _div_partials, second=_div_second)
power = elementwise_primitive("pow", np.power, _pow_partials, second=_pow_second)
maximum = elementwise_primitive("maximum", np.maximum, _max_partials, second=_zero_second)
minimum = elementwise_primitive("minimum", np.minimum, _min_partials, second=_zero_second)
where = elementwise_primitive("where", _where_value, _where_partials, second=_zero_second)
exp = elementwise_primitive("exp", np.exp, _exp_partials, second=_exp_second)
log = elementwise_primitive("log", np.log, _log_partials, second=_log_second)
sin = elementwise_primitive("sin", np.sin, _sin_partials, second=_sin_second)
cos = elementwise_primitive("cos", np.cos, _cos_partials, second=_cos_second)
tanh = elementwise_primitive("tanh", np.tanh, _tanh_partials, second=_tanh_second)
sigmoid = elementwise_primitive("sigmoid", scipy.special.expit, _sigmoid_partials,
                                second=_sigmoid_second)
relu = elementwise_primitive("relu", _relu_value, _relu_partials, second=_zero_second)
sqrt = elementwise_primitive("sqrt", np.sqrt, _sqrt_partials, second=_sqrt_second)
absolute = elementwise_primitive("abs", np.abs, _abs_partials, second=_zero_second)

def _weighted_sum_value(*args: Array, weights: Array) -> Array:
    return sum((w * a for w, a in zip(weights, args)), np.zeros(()))


def _weighted_sum_partials(k: int, ans: Array, *args: Array, weights: Array) -> Array:
    return np.full(np.shape(ans), float(weights[k]))


# sum_k w_k a_k over any number of operands: the output readout of bulk programs
weighted_sum = elementwise_primitive("weighted_sum", _weighted_sum_value, _weighted_sum_partials,
                                     second=_zero_second)

ELEMENTWISE: tuple[Primitive, ...] = (
    identity, neg, add, sub, mul, div, power, maximum, minimum, where,
    exp, log, sin, cos, tanh, sigmoid, relu, sqrt, absolute, weighted_sum)


def _zero_partials(k: int, ans: Array, x: Array) -> Array:
    return np.zeros_like(ans)


# The value passes, the derivative is declared zero (JAX's stop_gradient): on
# purpose not the derivative of its value, so it is not in ELEMENTWISE, whose
# rules the tests check against finite differences of the value.
stop_gradient = elementwise_primitive("stop_gradient", _identity_value, _zero_partials,
                                      constant=(0.0,), doc="x, with derivative zero",
                                      second=_zero_second)


# ------------------------------------------------------ structural rules
# Linear structural maps (reshape, transpose, indexing, concatenation) are
# selections: their Jacobian is found by applying the map to the array of flat
# positions, which says where each output element was read from. Being linear,
# their VJP does not move with the arguments: their second_vjp is None.

def linear_second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array,
                      *args: Any, **params: Any) -> None:
    """The second-order rule of a linear map: its VJP is constant, the term is zero."""
    return None


def _reshape_vjp(k: int, g: Array, ans: Array, x: Array, *, shape: Shape) -> Array:
    return np.reshape(g, np.shape(x))


def _reshape_jvp(ts: Sequence[Array | None], ans: Array, x: Array, *, shape: Shape) -> Array:
    return np.reshape(ts[0], shape)  # type: ignore[arg-type]


def _reshape_jacobian(k: int, ans: Array, x: Array, *, shape: Shape) -> sp.csr_matrix:
    return sp.identity(np.size(x), format="csr")


def _reshape_value(x: Array, *, shape: Shape) -> Array:
    return np.reshape(x, shape)


def _reshape_shape(s: Shape, *, shape: Shape) -> Shape:
    return tuple(shape)


reshape = Primitive("reshape", _reshape_value, _reshape_shape, vjp=_reshape_vjp,
                    jvp=_reshape_jvp, jacobian=_reshape_jacobian, batch=batching.RESHAPE,
                     second_vjp=linear_second_vjp)


def _transpose_vjp(k: int, g: Array, ans: Array, x: Array, *, axes: Shape) -> Array:
    return np.transpose(g, np.argsort(axes))


def _transpose_jvp(ts: Sequence[Array | None], ans: Array, x: Array, *, axes: Shape) -> Array:
    return np.transpose(ts[0], axes)


def _transpose_jacobian(k: int, ans: Array, x: Array, *, axes: Shape) -> sp.csr_matrix:
    cols = np.transpose(positions(np.shape(x)), axes).ravel()
    return selection(np.arange(cols.size), cols, (cols.size, np.size(x)))


def _transpose_value(x: Array, *, axes: Shape) -> Array:
    return np.transpose(x, axes)


def _transpose_shape(s: Shape, *, axes: Shape) -> Shape:
    return tuple(s[a] for a in axes)


transpose = Primitive("transpose", _transpose_value, _transpose_shape, vjp=_transpose_vjp,
                      jvp=_transpose_jvp, jacobian=_transpose_jacobian,
                       second_vjp=linear_second_vjp)


def _getitem_shape(s: Shape, *, index: Any) -> Shape:
    return np.broadcast_to(np.empty(()), s)[index].shape


def _getitem_vjp(k: int, g: Array, ans: Array, x: Array, *, index: Any) -> Array:
    if (np.ndim(x) == 1 and isinstance(index, np.ndarray) and index.ndim == 1
            and index.dtype.kind in "iu" and (index.size == 0 or index.min() >= 0)):
        # a gather's adjoint is a scatter-add: bincount is about 2x np.add.at
        return np.bincount(index, weights=np.ravel(g), minlength=np.shape(x)[0])
    out = np.zeros(np.shape(x))
    np.add.at(out, index, g)  # repeated integer indices accumulate
    return out


def _getitem_jvp(ts: Sequence[Array | None], ans: Array, x: Array, *, index: Any) -> Array:
    return np.asarray(ts[0])[index]


def _getitem_jacobian(k: int, ans: Array, x: Array, *, index: Any) -> sp.csr_matrix:
    cols = np.ravel(positions(np.shape(x))[index])
    return selection(np.arange(cols.size), cols, (cols.size, np.size(x)))


def _getitem_value(x: Array, *, index: Any) -> Array:
    return np.asarray(x)[index]


getitem = Primitive("getitem", _getitem_value, _getitem_shape,
                    vjp=_getitem_vjp, jvp=_getitem_jvp, jacobian=_getitem_jacobian,
                    batch=batching.GETITEM,
                     second_vjp=linear_second_vjp)


def reduced_shape(s: Shape, *, axis: Shape | None, keepdims: bool) -> Shape:
    """The shape rule of reductions over ``axis`` (None: all axes)."""
    axes = range(len(s)) if axis is None else axis
    if keepdims:
        return tuple(1 if i in axes else n for i, n in enumerate(s))
    return tuple(n for i, n in enumerate(s) if i not in axes)


def expand_reduced(g: Array, x: Array, axis: Shape | None) -> Array:
    """Reshape a reduced array so that it broadcasts against ``x``."""
    return np.reshape(g, reduced_shape(np.shape(x), axis=axis, keepdims=True))


def _sum_vjp(k: int, g: Array, ans: Array, x: Array, *, axis: Shape | None,
             keepdims: bool) -> Array:
    return np.broadcast_to(expand_reduced(g, x, axis), np.shape(x))


def _sum_jvp(ts: Sequence[Array | None], ans: Array, x: Array, *, axis: Shape | None,
             keepdims: bool) -> Array:
    return np.sum(ts[0], axis=axis, keepdims=keepdims)


def reduction_rows(x: Array, axis: Shape | None) -> NDArray[np.intp]:
    """The row (output position) of each input element of a reduction, flat."""
    out = positions(reduced_shape(np.shape(x), axis=axis, keepdims=True))
    return np.broadcast_to(out, np.shape(x)).ravel()


def _sum_jacobian(k: int, ans: Array, x: Array, *, axis: Shape | None,
                  keepdims: bool) -> sp.csr_matrix:
    rows = reduction_rows(x, axis)
    return selection(rows, np.arange(rows.size), (np.size(ans), rows.size))


def _sum_vjp_set(k: int, out: Array, g: Array, ans: Array, x: Array, *,
                 axis: Shape | None, keepdims: bool) -> bool:
    """The cotangent broadcast straight into ``out`` (no broadcast_to view)."""
    np.copyto(out, g if axis is None or keepdims else expand_reduced(g, x, axis))
    return True


def _sum_vjp_add(k: int, out: Array, g: Array, ans: Array, x: Array, *,
                 axis: Shape | None, keepdims: bool) -> bool:
    np.add(out, g if axis is None or keepdims else expand_reduced(g, x, axis), out=out)
    return True


def _sum_value(x: Array, *, axis: Shape | None, keepdims: bool) -> Array:
    return np.add.reduce(x, axis=axis, keepdims=keepdims)  # np.sum without its dispatch


sum_ = Primitive("sum", _sum_value, reduced_shape, vjp=_sum_vjp, jvp=_sum_jvp,
                 jacobian=_sum_jacobian, batch=batching.SUM,
                 vjp_set=_sum_vjp_set, vjp_add=_sum_vjp_add,
                  second_vjp=linear_second_vjp)


def _softmax_weights(ans: Array, x: Array, axis: Shape | None) -> Array:
    return np.exp(x - expand_reduced(ans, x, axis))


def _lse_vjp(k: int, g: Array, ans: Array, x: Array, *, axis: Shape | None,
             keepdims: bool) -> Array:
    return expand_reduced(g, x, axis) * _softmax_weights(ans, x, axis)


def _lse_jvp(ts: Sequence[Array | None], ans: Array, x: Array, *, axis: Shape | None,
             keepdims: bool) -> Array:
    return np.sum(ts[0] * _softmax_weights(ans, x, axis), axis=axis, keepdims=keepdims)


def _lse_jacobian(k: int, ans: Array, x: Array, *, axis: Shape | None,
                  keepdims: bool) -> sp.csr_matrix:
    rows = reduction_rows(x, axis)
    vals = _softmax_weights(ans, x, axis).ravel()
    return selection(rows, np.arange(rows.size), (np.size(ans), rows.size), vals)


def _lse_value(x: Array, *, axis: Shape | None, keepdims: bool) -> Array:
    # log sum exp(x - m) + m with m the largest entry (no overflow); a slice whose
    # maximum is not finite (all -inf, or an inf or nan) is not shifted, so it gives
    # -inf, inf or nan as it should. Plain numpy: scipy's version costs ~0.3 ms of
    # array-API dispatch per call, more than the arithmetic on a batch of logits.
    x = np.asarray(x, dtype=float)
    m = np.max(x, axis=axis, keepdims=True) if x.size else np.zeros((1,) * x.ndim)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return np.reshape(out, reduced_shape(np.shape(x), axis=axis, keepdims=keepdims))


def _lse_second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array, x: Array, *,
                    axis: Shape | None, keepdims: bool) -> Array | None:
    # vjp = g s with s = softmax(x); along t, ds = s (t - sum(s t)) over the axis
    t = ts[0]
    if t is None:
        return None
    s = _softmax_weights(ans, x, axis)
    mean = np.sum(s * t, axis=axis, keepdims=True)
    return expand_reduced(g, x, axis) * s * (t - mean)


logsumexp = Primitive("logsumexp", _lse_value, reduced_shape, vjp=_lse_vjp, jvp=_lse_jvp,
                      jacobian=_lse_jacobian, second_vjp=_lse_second_vjp)


def _concat_shape(*shapes: Shape, axis: int) -> Shape:
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return tuple(out)


def _concat_part(k: int, arr: Array, args: Sequence[Any], axis: int) -> Array:
    start = sum(np.shape(a)[axis] for a in args[:k])
    stop = start + np.shape(args[k])[axis]
    index = (slice(None),) * axis + (slice(start, stop),)
    return arr[index]


def _concat_vjp(k: int, g: Array, ans: Array, *args: Array, axis: int) -> Array:
    return _concat_part(k, g, args, axis)


def _concat_jvp(ts: Sequence[Array | None], ans: Array, *args: Array, axis: int) -> Array:
    parts = [np.zeros(np.shape(a)) if t is None else t for t, a in zip(ts, args)]
    return np.concatenate(parts, axis=axis)


def _concat_jacobian(k: int, ans: Array, *args: Array, axis: int) -> sp.csr_matrix:
    rows = np.ravel(_concat_part(k, positions(np.shape(ans)), args, axis))
    return selection(rows, np.arange(rows.size), (np.size(ans), rows.size))


def _concat_value(*xs: Array, axis: int) -> Array:
    return np.concatenate(xs, axis=axis)


concatenate = Primitive("concatenate", _concat_value,
                        _concat_shape, vjp=_concat_vjp, jvp=_concat_jvp,
                        jacobian=_concat_jacobian,
                         second_vjp=linear_second_vjp)


def _as_matrices(a: Array, b: Array) -> tuple[Array, Array]:
    # promote vectors as numpy's matmul does: a (k,) -> (1, k), b (k,) -> (k, 1)
    a2 = np.reshape(a, (1, -1)) if np.ndim(a) == 1 else np.asarray(a)
    b2 = np.reshape(b, (-1, 1)) if np.ndim(b) == 1 else np.asarray(b)
    return a2, b2


def _matmul_shape(sa: Shape, sb: Shape) -> Shape:
    if not (1 <= len(sa) <= 2 and 1 <= len(sb) <= 2):
        raise ValueError(f"matmul supports 1-D and 2-D operands, got shapes {sa} and {sb}")
    if sa[-1] != sb[0]:
        raise ValueError(f"matmul: inner dimensions differ, shapes {sa} and {sb}")
    return sa[:-1] + sb[1:]


def _matmul_vjp(k: int, g: Array, ans: Array, a: Array, b: Array) -> Array:
    a2, b2 = _as_matrices(a, b)
    g2 = np.reshape(g, (a2.shape[0], b2.shape[1]))
    # out = a b  gives  da = g b^T  and  db = a^T g; a rank-one product (a
    # matrix-vector layer) is an outer product, several times faster than gemm
    if k == 0:
        grad = np.multiply.outer(g2[:, 0], b2[:, 0]) if g2.shape[1] == 1 else g2 @ b2.T
        return grad.reshape(np.shape(a))
    grad = np.multiply.outer(a2[0], g2[0]) if a2.shape[0] == 1 else a2.T @ g2
    return grad.reshape(np.shape(b))


def bilinear_jvp(ts: Sequence[Array | None], ans: Array, a: Array, b: Array) -> Array:
    """Tangent of a @ b (any matmul, batched too): ta @ b + a @ tb."""
    ta, tb = ts
    out = np.zeros(np.shape(ans))
    if ta is not None:
        out = out + np.matmul(ta, b)
    if tb is not None:
        out = out + np.matmul(a, tb)
    return out


def _matmul_jacobian(k: int, ans: Array, a: Array, b: Array) -> sp.csr_matrix:
    a2, b2 = _as_matrices(a, b)
    m, n = a2.shape[0], b2.shape[1]
    # row-major: d out[i, j] / d a[i, l] = b[l, j];  d out[i, j] / d b[l, j] = a[i, l]
    if k == 0:
        return sp.kron(sp.identity(m), sp.csr_matrix(b2.T), format="csr")
    return sp.kron(sp.csr_matrix(a2), sp.identity(n), format="csr")


def _matmul_vjp_add(k: int, out: Array, g: Array, ans: Array, a: Array, b: Array) -> bool:
    return matmul_vjp_add(k, out, g, a, b)


def _matmul_vjp_set(k: int, out: Array, g: Array, ans: Array, a: Array, b: Array) -> bool:
    return matmul_vjp_add(k, out, g, a, b, beta=0.0)


def _matmul_second_vjp(k: int, g: Array, ts: Sequence[Array | None], ans: Array, a: Array,
                       b: Array) -> Array | None:
    # bilinear: da = g b^T moves only with b (g tb^T), db = a^T g only with a (ta^T g)
    other = ts[1 - k]
    if other is None:
        return None
    return _matmul_vjp(k, g, ans, a, other) if k == 0 else _matmul_vjp(k, g, ans, other, b)


matmul = Primitive("matmul", np.matmul, _matmul_shape, vjp=_matmul_vjp, jvp=bilinear_jvp,
                   jacobian=_matmul_jacobian, vjp_add=_matmul_vjp_add,
                   vjp_set=_matmul_vjp_set, batch=batching.MATMUL,
                   second_vjp=_matmul_second_vjp)

STRUCTURAL: tuple[Primitive, ...] = (
    reshape, transpose, getitem, sum_, logsumexp, concatenate, matmul)


# A constant scipy.sparse matrix times a variable vector or matrix: linear, so
# its Jacobian is the matrix itself (kron'd with I for matrix right-hand sides).

def _spmm_value(x: Array, *, matrix: Any) -> Array:
    return np.asarray(matrix @ x)


def _spmm_shape(s: Shape, *, matrix: Any) -> Shape:
    if not 1 <= len(s) <= 2 or s[0] != matrix.shape[1]:
        raise ValueError(f"sparse matmul: matrix of shape {matrix.shape} cannot multiply "
                         f"an operand of shape {s}")
    return (matrix.shape[0],) + s[1:]


def _spmm_vjp(k: int, g: Array, ans: Array, x: Array, *, matrix: Any) -> Array:
    return np.asarray(matrix.T @ g)


def _spmm_jvp(ts: Sequence[Array | None], ans: Array, x: Array, *, matrix: Any) -> Array:
    return np.asarray(matrix @ ts[0])


def _spmm_jacobian(k: int, ans: Array, x: Array, *, matrix: Any) -> sp.csr_matrix:
    if np.ndim(x) == 1:
        return sp.csr_matrix(matrix)
    return sp.kron(sp.csr_matrix(matrix), sp.identity(np.shape(x)[1]), format="csr")


sparse_matmul = Primitive("sparse_matmul", _spmm_value, _spmm_shape, vjp=_spmm_vjp,
                          jvp=_spmm_jvp, jacobian=_spmm_jacobian,
                           second_vjp=linear_second_vjp)

STRUCTURAL = STRUCTURAL + (sparse_matmul,)
