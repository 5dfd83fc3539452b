"""scipy.special's elementwise functions on traced values: erf, erfc, erfinv,
ndtr, log_ndtr, ndtri, gamma, gammaln, digamma (psi), betaln, logit,
log_expit, xlogy, xlog1py and entr.

scipy.special's functions are numpy ufuncs, so ``scipy.special.erf(x)`` on a
traced ``x`` reaches ``Tracer.__array_ufunc__`` and records one of these
primitives, as ``np.sin(x)`` does (``expit`` was routed already). Each has
its first and second partials, written with ``ans`` where that is cheaper
(erfinv' = sqrt(pi)/2 exp(ans^2)). Outside a function's domain (logit of 2,
gammaln at a pole) the value or a derivative is not finite and the solve
raises :class:`lagrad.NonFiniteError` naming the equation. ``xlogy(0, y)``
and ``xlog1py(0, y)`` are 0 for every y, so their derivative in y is 0
there.

>>> import numpy as np, scipy.special, lagrad
>>> float(lagrad.grad(lambda x: scipy.special.gammaln(x))(3.0))  # digamma(3)
0.9227843350984671
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.special as sc
from numpy.typing import NDArray

from lagrad.ir.primitive import Primitive, elementwise_primitive

__all__ = ["erf", "erfc", "erfinv", "ndtr", "log_ndtr", "ndtri", "gamma", "gammaln", "digamma",
           "betaln", "logit", "log_expit", "xlogy", "xlog1py", "entr", "ELEMENTWISE",
           "UFUNCS"]

Array = NDArray[np.float64]
Rule = Callable[..., Any]
TWO_OVER_ROOT_PI = 2.0 / math.sqrt(math.pi)
ROOT_TWO_PI = math.sqrt(2.0 * math.pi)


def _f(x: Any) -> Array:
    return np.asarray(x, dtype=float)


# ------------------------------------------------------------ one argument
# partials(k, ans, x) = f'(x); second(k, m, ans, x) = f''(x)

def _erf_partials(k: int, ans: Array, x: Array) -> Array:
    return TWO_OVER_ROOT_PI * np.exp(-np.square(x))


def _erf_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return -2.0 * _f(x) * _erf_partials(0, ans, x)


def _erfc_partials(k: int, ans: Array, x: Array) -> Array:
    return -_erf_partials(0, ans, x)


def _erfc_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return -_erf_second(0, 0, ans, x)


def _erfinv_partials(k: int, ans: Array, x: Array) -> Array:
    return np.exp(np.square(ans)) / TWO_OVER_ROOT_PI  # 1 / erf'(ans)


def _erfinv_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return 2.0 * ans * np.square(_erfinv_partials(0, ans, x))


def _ndtr_partials(k: int, ans: Array, x: Array) -> Array:
    return np.exp(-0.5 * np.square(x)) / ROOT_TWO_PI  # the normal density


def _ndtr_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return -_f(x) * _ndtr_partials(0, ans, x)


def _log_ndtr_partials(k: int, ans: Array, x: Array) -> Array:
    # phi / Phi as exp(log phi - log Phi): finite far into the left tail
    return np.exp(-0.5 * np.square(x) - ans) / ROOT_TWO_PI


def _log_ndtr_second(k: int, m: int, ans: Array, x: Array) -> Array:
    d = _log_ndtr_partials(0, ans, x)
    return -d * (_f(x) + d)


def _ndtri_partials(k: int, ans: Array, x: Array) -> Array:
    return ROOT_TWO_PI * np.exp(0.5 * np.square(ans))  # 1 / phi(ans)


def _ndtri_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return ans * np.square(_ndtri_partials(0, ans, x))


def _gamma_partials(k: int, ans: Array, x: Array) -> Array:
    return ans * sc.digamma(x)


def _gamma_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return ans * (np.square(sc.digamma(x)) + sc.polygamma(1, x))


def _gammaln_partials(k: int, ans: Array, x: Array) -> Array:
    return _f(sc.digamma(x))


def _gammaln_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return _f(sc.polygamma(1, x))


def _digamma_partials(k: int, ans: Array, x: Array) -> Array:
    return _f(sc.polygamma(1, x))


def _digamma_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return _f(sc.polygamma(2, x))


def _logit_partials(k: int, ans: Array, x: Array) -> Array:
    x = _f(x)
    return 1.0 / (x * (1.0 - x))


def _logit_second(k: int, m: int, ans: Array, x: Array) -> Array:
    x = _f(x)
    return (2.0 * x - 1.0) / np.square(x * (1.0 - x))


def _log_expit_partials(k: int, ans: Array, x: Array) -> Array:
    return _f(sc.expit(-_f(x)))


def _log_expit_second(k: int, m: int, ans: Array, x: Array) -> Array:
    x = _f(x)
    return -sc.expit(x) * sc.expit(-x)


def _entr_partials(k: int, ans: Array, x: Array) -> Array:
    return -(np.log(x) + 1.0)


def _entr_second(k: int, m: int, ans: Array, x: Array) -> Array:
    return -1.0 / _f(x)


# ----------------------------------------------------------- two arguments

def _betaln_partials(k: int, ans: Array, a: Array, b: Array) -> Array:
    return sc.digamma(a if k == 0 else b) - sc.digamma(_f(a) + b)


def _betaln_second(k: int, m: int, ans: Array, a: Array, b: Array) -> Array:
    both = -sc.polygamma(1, _f(a) + b)
    if k != m:
        return np.broadcast_to(both, np.shape(ans)).astype(float)
    return sc.polygamma(1, a if k == 0 else b) + both


def _xlog_partials(log: Rule, shift: float) -> Rule:
    def partials(k: int, ans: Array, x: Array, y: Array) -> Array:
        if k == 0:
            return np.broadcast_to(log(y), np.shape(ans)).astype(float)
        x, y = np.broadcast_arrays(_f(x), _f(y))
        return np.divide(x, y + shift, out=np.zeros(np.shape(ans)), where=x != 0)
    return partials


def _xlog_second(shift: float) -> Rule:
    def second(k: int, m: int, ans: Array, x: Array, y: Array) -> Array:
        x, y = np.broadcast_arrays(_f(x), _f(y) + shift)
        if k == 0 and m == 0:
            return np.zeros(np.shape(ans))
        if k != m:
            return np.broadcast_to(1.0 / y, np.shape(ans)).astype(float)
        return np.divide(-x, np.square(y), out=np.zeros(np.shape(ans)), where=x != 0)
    return second


def _smooth(name: str, value: Rule, partials: Rule, second: Rule, doc: str = "") -> Primitive:
    return elementwise_primitive(name, value, partials, second=second, doc=doc)


erf = _smooth("erf", sc.erf, _erf_partials, _erf_second)
erfc = _smooth("erfc", sc.erfc, _erfc_partials, _erfc_second)
erfinv = _smooth("erfinv", sc.erfinv, _erfinv_partials, _erfinv_second)
ndtr = _smooth("ndtr", sc.ndtr, _ndtr_partials, _ndtr_second, "the standard normal CDF")
log_ndtr = _smooth("log_ndtr", sc.log_ndtr, _log_ndtr_partials, _log_ndtr_second)
ndtri = _smooth("ndtri", sc.ndtri, _ndtri_partials, _ndtri_second, "the inverse of ndtr")
gamma = _smooth("gamma", sc.gamma, _gamma_partials, _gamma_second)
gammaln = _smooth("gammaln", sc.gammaln, _gammaln_partials, _gammaln_second,
                  "log |gamma(x)|")
digamma = _smooth("digamma", sc.digamma, _digamma_partials, _digamma_second)
betaln = _smooth("betaln", sc.betaln, _betaln_partials, _betaln_second, "log |B(a, b)|")
logit = _smooth("logit", sc.logit, _logit_partials, _logit_second)
log_expit = _smooth("log_expit", sc.log_expit, _log_expit_partials, _log_expit_second)
xlogy = _smooth("xlogy", sc.xlogy, _xlog_partials(np.log, 0.0), _xlog_second(0.0),
                "x log(y), 0 where x = 0")
xlog1py = _smooth("xlog1py", sc.xlog1py, _xlog_partials(np.log1p, 1.0), _xlog_second(1.0),
                  "x log(1 + y), 0 where x = 0")
entr = _smooth("entr", sc.entr, _entr_partials, _entr_second, "-x log(x)")

ELEMENTWISE: tuple[Primitive, ...] = (
    erf, erfc, erfinv, ndtr, log_ndtr, ndtri, gamma, gammaln, digamma, betaln, logit,
    log_expit, xlogy, xlog1py, entr)

UFUNCS: dict[np.ufunc, Primitive] = {getattr(sc, p.name): p for p in ELEMENTWISE}
"""scipy.special's ufunc -> its primitive (scipy.special.psi is digamma)."""
