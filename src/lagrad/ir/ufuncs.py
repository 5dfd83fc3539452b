"""More of numpy's elementwise functions on traced values: tan, the inverse
trigonometric and hyperbolic functions, log2, log10, exp2, cbrt,
reciprocal, deg2rad, rad2deg, logaddexp2, remainder (``%``), fmod,
copysign, the roundings floor, ceil, trunc and rint, and the masks isnan,
isinf, isfinite, heaviside, logical_not, logical_and, logical_or and
logical_xor.

Each is an elementwise primitive with its first and second partials, written
with ``ans`` where that is cheaper (tan' = 1 + tan^2). The roundings are
piecewise constant: derivative zero everywhere, also at the jumps, as JAX's.
The masks are 0/1 constants of the current values, found again at every
solve, as the comparisons are (``np.where(np.isfinite(x), x, 0)``); a solve
refuses non-finite values, so ``isnan`` of a traced value is all zeros.
Outside a function's domain (arcsin of 2, log10 of -1) the value is NaN and
the solve raises :class:`lagrad.NonFiniteError` naming the equation.

>>> import numpy as np, lagrad
>>> float(lagrad.grad(lambda x: np.arcsin(x))(0.6))
1.25
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lagrad.errors import ProgramError
from lagrad.ir.primitive import Primitive, elementwise_primitive

__all__ = ["tan", "arcsin", "arccos", "arcsinh", "arccosh", "arctanh", "log2", "log10",
           "exp2", "cbrt", "reciprocal", "deg2rad", "rad2deg", "logaddexp2", "remainder",
           "fmod", "copysign", "floor", "ceil", "trunc", "rint", "isnan", "isinf", "isfinite",
           "heaviside", "signbit", "sinc", "round_", "logical_not", "logical_and", "logical_or",
           "logical_xor",
           "ELEMENTWISE", "ARITHMETIC", "MASKS", "UFUNCS"]

Array = NDArray[np.float64]
Rule = Callable[..., Any]
LN2, LN10 = math.log(2.0), math.log(10.0)


def _f(x: Array) -> Array:
    return np.asarray(x, dtype=float)


def _tan_partials(k: int, ans: Array, x: Array) -> Array:
    return 1.0 + np.square(ans)


def _tan_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return 2.0 * ans * (1.0 + np.square(ans))


def _arcsin_partials(k: int, ans: Array, x: Array) -> Array:
    return 1.0 / np.sqrt(1.0 - np.square(x))


def _arcsin_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return _f(x) / (1.0 - np.square(x)) ** 1.5


def _arccos_partials(k: int, ans: Array, x: Array) -> Array:
    return -1.0 / np.sqrt(1.0 - np.square(x))


def _arccos_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return -_f(x) / (1.0 - np.square(x)) ** 1.5


def _arcsinh_partials(k: int, ans: Array, x: Array) -> Array:
    return 1.0 / np.sqrt(1.0 + np.square(x))


def _arcsinh_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return -_f(x) / (1.0 + np.square(x)) ** 1.5


def _arccosh_partials(k: int, ans: Array, x: Array) -> Array:
    return 1.0 / np.sqrt(np.square(x) - 1.0)


def _arccosh_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return -_f(x) / (np.square(x) - 1.0) ** 1.5


def _arctanh_partials(k: int, ans: Array, x: Array) -> Array:
    return 1.0 / (1.0 - np.square(x))


def _arctanh_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return 2.0 * _f(x) / np.square(1.0 - np.square(x))


def _log2_partials(k: int, ans: Array, x: Array) -> Array:
    return 1.0 / (_f(x) * LN2)


def _log2_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return -1.0 / (np.square(x) * LN2)


def _log10_partials(k: int, ans: Array, x: Array) -> Array:
    return 1.0 / (_f(x) * LN10)


def _log10_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return -1.0 / (np.square(x) * LN10)


def _exp2_partials(k: int, ans: Array, x: Array) -> Array:
    return ans * LN2


def _exp2_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return ans * (LN2 * LN2)


def _cbrt_partials(k: int, ans: Array, x: Array) -> Array:
    return 1.0 / (3.0 * np.square(ans))


def _cbrt_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return -2.0 / (9.0 * ans ** 5)


def _reciprocal_value(x: Array) -> Array:
    return 1.0 / _f(x)


def _reciprocal_partials(k: int, ans: Array, x: Array) -> Array:
    return -np.square(ans)


def _reciprocal_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return 2.0 * ans ** 3


def _zero(k: int, ans: Array, *xs: Array) -> Array:
    return np.zeros_like(ans)


def _zero_second(k: int, m: int, ans: Array, *xs: Array) -> Array:
    return np.zeros_like(ans)


def _scale_partials(factor: float) -> Rule:
    def partials(k: int, ans: Array, x: Array) -> Array:
        return np.full(np.shape(ans), factor)
    return partials


def _logaddexp2_partials(k: int, ans: Array, x: Array, y: Array) -> Array:
    # d log2(2^x + 2^y) / dx = 2^x / (2^x + 2^y) = 2^(x - ans)
    return np.exp2((x if k == 0 else y) - ans)


def _logaddexp2_second(k: int, m: int, ans: Array, x: Array, y: Array) -> Array:
    # with p = 2^(x - ans): dp = ln 2 p (1 - p) (dx - dy)
    p = np.exp2(x - ans)
    return LN2 * p * (1.0 - p) * (1.0 if k == m else -1.0)


def _quotient_partials(whole: Rule) -> Rule:
    """x - whole(x / y) y (remainder: floor; fmod: trunc): 1 in x, -whole(x / y)
    in y, and piecewise linear, so no second derivative."""
    def partials(k: int, ans: Array, x: Array, y: Array) -> Array:
        if k == 0:
            return np.ones(np.shape(ans))
        return np.broadcast_to(-whole(_f(x) / y), np.shape(ans)).astype(float)
    return partials


def _copysign_partials(k: int, ans: Array, x: Array, y: Array) -> Array:
    # |x| with y's sign: sign(x) sign(y) in x (0 at x = 0, as abs), 0 in y
    if k == 1:
        return np.zeros(np.shape(ans))
    return np.broadcast_to(np.sign(x) * np.copysign(1.0, y), np.shape(ans)).astype(float)


def _smooth(name: str, value: Rule, partials: Rule, second: Rule) -> Primitive:
    return elementwise_primitive(name, value, partials, second=second)


def _rounding(name: str, value: Rule) -> Primitive:
    return elementwise_primitive(name, value, _zero, constant=(0.0,), second=_zero_second,
                                 doc="piecewise constant: derivative 0")


tan = _smooth("tan", np.tan, _tan_partials, _tan_second)
arcsin = _smooth("arcsin", np.arcsin, _arcsin_partials, _arcsin_second)
arccos = _smooth("arccos", np.arccos, _arccos_partials, _arccos_second)
arcsinh = _smooth("arcsinh", np.arcsinh, _arcsinh_partials, _arcsinh_second)
arccosh = _smooth("arccosh", np.arccosh, _arccosh_partials, _arccosh_second)
arctanh = _smooth("arctanh", np.arctanh, _arctanh_partials, _arctanh_second)
log2 = _smooth("log2", np.log2, _log2_partials, _log2_second)
log10 = _smooth("log10", np.log10, _log10_partials, _log10_second)
exp2 = _smooth("exp2", np.exp2, _exp2_partials, _exp2_second)
cbrt = _smooth("cbrt", np.cbrt, _cbrt_partials, _cbrt_second)
reciprocal = _smooth("reciprocal", _reciprocal_value, _reciprocal_partials, _reciprocal_second)
floor = _rounding("floor", np.floor)
ceil = _rounding("ceil", np.ceil)
trunc = _rounding("trunc", np.trunc)
rint = _rounding("rint", np.rint)
deg2rad = elementwise_primitive("deg2rad", np.deg2rad, _scale_partials(math.pi / 180.0),
                                constant=(math.pi / 180.0,), second=_zero_second)
rad2deg = elementwise_primitive("rad2deg", np.rad2deg, _scale_partials(180.0 / math.pi),
                                constant=(180.0 / math.pi,), second=_zero_second)
logaddexp2 = elementwise_primitive("logaddexp2", np.logaddexp2, _logaddexp2_partials,
                                   second=_logaddexp2_second)
remainder = elementwise_primitive("remainder", np.remainder, _quotient_partials(np.floor),
                                  second=_zero_second, doc="x - floor(x / y) y, as x % y")
fmod = elementwise_primitive("fmod", np.fmod, _quotient_partials(np.trunc),
                             second=_zero_second, doc="x - trunc(x / y) y")
copysign = elementwise_primitive("copysign", np.copysign, _copysign_partials,
                                 second=_zero_second, doc="|x| with the sign of y")


def _sinc_partials(k: int, ans: Array, x: Array) -> Array:
    # (cos(pi x) - sinc(x)) / x, by its series near 0 (-pi^2 x / 3 + pi^4 x^3 / 30)
    x = _f(x)
    small = np.abs(x) < 1e-3
    safe = np.where(small, 1.0, x)
    series = -math.pi ** 2 * x / 3.0 + math.pi ** 4 * x ** 3 / 30.0
    return np.where(small, series, (np.cos(math.pi * safe) - np.sinc(safe)) / safe)


def _sinc_second(k: int, m: int, ans: Array, x: Array) -> Array:
    # -pi^2 sinc(x) - 2 sinc'(x) / x, by its series near 0 (-pi^2 / 3 + pi^4 x^2 / 10)
    x = _f(x)
    small = np.abs(x) < 1e-3
    safe = np.where(small, 1.0, x)
    exact = -math.pi ** 2 * np.sinc(safe) - 2.0 * _sinc_partials(0, ans, safe) / safe
    return np.where(small, -math.pi ** 2 / 3.0 + math.pi ** 4 * x ** 2 / 10.0, exact)


sinc = elementwise_primitive("sinc", np.sinc, _sinc_partials, second=_sinc_second,
                             doc="sin(pi x) / (pi x), 1 at 0")


def round_(a: Any, decimals: int = 0, out: Any = None) -> Any:
    """``a`` rounded to ``decimals`` decimals (half to even), as
    :func:`numpy.round`, which scales by a power of ten, rounds and scales
    back the same way; derivative zero."""
    if out is not None:
        raise ProgramError("round: out= cannot hold a traced value")
    if not isinstance(decimals, (int, np.integer)) or isinstance(decimals, bool):
        raise ProgramError(f"round: decimals must be an int, got {decimals!r}")
    if decimals == 0:
        return rint(a)
    factor = 10.0 ** abs(int(decimals))
    if decimals > 0:
        return rint(a * factor) / factor
    return rint(a / factor) * factor


def _mask(name: str, test: Callable[..., Array], arity: int) -> Primitive:
    def value(*xs: Array) -> Array:
        return test(*xs).astype(float)
    value.__name__ = f"_{name}_value"
    return elementwise_primitive(name, value, _zero, constant=(0.0,) * arity,
                                 second=_zero_second,
                                 doc="a 0/1 mask of the current values, derivative 0")


def _logical_and(x: Array, y: Array) -> Array:
    return np.logical_and(x != 0, y != 0)


def _logical_or(x: Array, y: Array) -> Array:
    return np.logical_or(x != 0, y != 0)


def _logical_xor(x: Array, y: Array) -> Array:
    return np.logical_xor(x != 0, y != 0)


isnan = _mask("isnan", np.isnan, 1)
isinf = _mask("isinf", np.isinf, 1)
isfinite = _mask("isfinite", np.isfinite, 1)
logical_not = _mask("logical_not", np.logical_not, 1)
logical_and = _mask("logical_and", _logical_and, 2)
logical_or = _mask("logical_or", _logical_or, 2)
logical_xor = _mask("logical_xor", _logical_xor, 2)
heaviside = _mask("heaviside", np.heaviside, 2)
signbit = _mask("signbit", np.signbit, 1)

ELEMENTWISE: tuple[Primitive, ...] = (
    tan, arcsin, arccos, arcsinh, arccosh, arctanh, log2, log10, exp2, cbrt, reciprocal,
    floor, ceil, trunc, rint)

ARITHMETIC: tuple[Primitive, ...] = (deg2rad, rad2deg, logaddexp2, remainder, fmod, copysign)
"""Linear or two-argument ones (``lagrad.<name>`` too)."""

MASKS: tuple[Primitive, ...] = (
    isnan, isinf, isfinite, heaviside, signbit, logical_not, logical_and, logical_or,
    logical_xor)
"""Routed from numpy's ufuncs only, as the comparisons are (no ``lagrad.isnan``)."""

UFUNCS: dict[np.ufunc, Primitive] = {
    np.tan: tan, np.arcsin: arcsin, np.arccos: arccos, np.arcsinh: arcsinh,
    np.arccosh: arccosh, np.arctanh: arctanh, np.log2: log2, np.log10: log10,
    np.exp2: exp2, np.cbrt: cbrt, np.reciprocal: reciprocal, np.floor: floor,
    np.ceil: ceil, np.trunc: trunc, np.rint: rint, np.isnan: isnan, np.isinf: isinf,
    np.isfinite: isfinite, np.logical_not: logical_not, np.logical_and: logical_and,
    np.logical_or: logical_or, np.logical_xor: logical_xor, np.heaviside: heaviside,
    np.deg2rad: deg2rad, np.radians: deg2rad, np.rad2deg: rad2deg, np.degrees: rad2deg,
    np.logaddexp2: logaddexp2, np.remainder: remainder, np.fmod: fmod, np.copysign: copysign,
    np.signbit: signbit,
}
"""numpy's ufunc -> its primitive (the routing table of :mod:`lagrad.ir.ops` adds these)."""
