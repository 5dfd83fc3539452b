"""Elementwise primitives: each gives its partial derivatives (and second
partials); the VJP, JVP and local Jacobian are derived from them by
:class:`~lagrad.ir.primitive.Primitive`."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.special
from numpy.typing import NDArray

from lagrad.ir.primitive import Primitive, elementwise_primitive

Array = NDArray[np.float64]
Shape = tuple[int, ...]

__all__ = ["identity", "neg", "add", "sub", "mul", "div", "power", "maximum", "minimum", "where",
           "exp", "log", "sin", "cos", "tanh", "sigmoid", "relu", "sqrt", "absolute",
           "weighted_sum", "ELEMENTWISE", "stop_gradient", "PARTIALS_INTO"]


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

PARTIALS_INTO: dict[int, Any] = {
    id(tanh): lambda o, y, x: np.subtract(1.0, np.multiply(y, y, out=o), out=o),
    id(sigmoid): lambda o, y, x: np.multiply(np.subtract(1.0, y, out=o), y, out=o),
    id(sin): lambda o, y, x: np.cos(x, out=o),
    id(cos): lambda o, y, x: np.negative(np.sin(x, out=o), out=o),
}
"""``write(o, y, x)`` by primitive (its ``id``): the partial of a unary
primitive written into ``o`` from its output ``y`` and argument ``x``, with
the same ufunc calls as its rule, so bit for bit the rule's (a product of two
doubles does not depend on their order). The generated sweeps and the bulk
forward pass make these partials in place instead of in a fresh array."""

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
