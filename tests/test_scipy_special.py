"""scipy.special's elementwise functions on traced values (``lagrad.ir.special``):
erf, erfc, erfinv, ndtr, log_ndtr, ndtri, gamma, gammaln, digamma, betaln,
logit, log_expit, xlogy, xlog1py, entr.

References: scipy's values; each rule against central differences (partials
of the value, second partials of the partials); the gradient and Hessian of
a function using them against autograd's (which has erf, erfc, erfinv,
gamma, gammaln, digamma, betaln and logit) and against central differences.
"""

from __future__ import annotations

from typing import Any

import autograd
import autograd.numpy as anp
import autograd.scipy.special as asc
import numpy as np
import pytest
import scipy.special as sc

import lagrad
from lagrad import NonFiniteError
from lagrad.ir import special as S

H = 1e-6
DOMAIN = {  # (low, high) of each argument, well inside the function's domain
    "erfinv": [(-0.8, 0.8)], "ndtri": [(0.1, 0.9)], "gamma": [(0.5, 4.0)],
    "gammaln": [(0.5, 4.0)], "digamma": [(0.5, 4.0)], "logit": [(0.1, 0.9)],
    "entr": [(0.2, 3.0)], "betaln": [(0.5, 3.0), (0.5, 3.0)],
    "xlogy": [(-2.0, 2.0), (0.3, 3.0)], "xlog1py": [(-2.0, 2.0), (-0.5, 2.0)],
}


def _args(prim: Any) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(len(prim.name))
    ranges = DOMAIN.get(prim.name, [(-3.0, 3.0)])
    return tuple(rng.uniform(lo, hi, 6) for lo, hi in ranges)


def _moved(args: tuple[np.ndarray, ...], k: int, h: float) -> tuple[np.ndarray, ...]:
    return tuple(a + h if i == k else a for i, a in enumerate(args))


def test_scipys_ufuncs_route_to_the_primitives() -> None:
    assert len(S.UFUNCS) == len(S.ELEMENTWISE)
    for ufunc, prim in S.UFUNCS.items():
        assert isinstance(ufunc, np.ufunc) and getattr(sc, prim.name) is ufunc
    x = np.array([1.5, 2.5])
    np.testing.assert_allclose(lagrad.grad(lambda v: np.sum(sc.psi(v)))(x), sc.polygamma(1, x),
                               rtol=1e-15)


@pytest.mark.parametrize("prim", S.ELEMENTWISE, ids=lambda p: p.name)
def test_partials_and_second_partials_match_finite_differences(prim: Any) -> None:
    args = _args(prim)
    ans = prim.value(*args)
    np.testing.assert_array_equal(ans, getattr(sc, prim.name)(*args))
    for k in range(len(args)):
        fd = (prim.value(*_moved(args, k, H)) - prim.value(*_moved(args, k, -H))) / (2 * H)
        np.testing.assert_allclose(prim.partials(k, ans, *args), fd, rtol=1e-6, atol=1e-8,
                                   err_msg=f"d/d arg {k}")
        for m in range(len(args)):
            def partial_at(moved: tuple[np.ndarray, ...], k: int = k) -> np.ndarray:
                return np.asarray(prim.partials(k, prim.value(*moved), *moved), dtype=float)
            fd2 = (partial_at(_moved(args, m, H)) - partial_at(_moved(args, m, -H))) / (2 * H)
            np.testing.assert_allclose(prim.second(k, m, ans, *args), fd2, rtol=1e-5,
                                       atol=1e-7, err_msg=f"d2/d arg {k} d arg {m}")


def _f(xp: Any, special: Any, x: Any) -> Any:
    y = special.erf(x) * special.erfc(0.5 * x) + special.erfinv(0.3 * x) \
        + special.gamma(x + 2.0) + special.gammaln(x * x + 0.5) + special.digamma(x + 1.5) \
        + special.betaln(x + 1.5, 2.0 - x) + special.logit(0.3 * x + 0.5)
    return xp.sum(y * y)


def test_gradient_and_hessian_match_autograd() -> None:
    x = np.random.default_rng(7).uniform(-0.9, 0.9, 5)
    value, g = lagrad.value_and_grad(lambda v: _f(np, sc, v))(x)
    assert value == pytest.approx(_f(np, sc, x), rel=1e-14)
    np.testing.assert_allclose(g, autograd.grad(lambda v: _f(anp, asc, v))(x), rtol=1e-11)
    np.testing.assert_allclose(lagrad.hessian(lambda v: _f(np, sc, v))(x),
                               autograd.hessian(lambda v: _f(anp, asc, v))(x), rtol=1e-9,
                               atol=1e-11)
    tangent = lagrad.jvp(lambda v: _f(np, sc, v), (x,), (np.ones(5),))[1]
    assert tangent == pytest.approx(g.sum(), rel=1e-12)


def _g(v: Any) -> Any:
    """The functions autograd lacks, through scipy.special on traced values."""
    y = sc.ndtr(v) * sc.log_ndtr(v - 1.0) + sc.ndtri(0.2 * v + 0.5) + sc.log_expit(2.0 * v) \
        + sc.xlogy(v, v * v + 1.0) + sc.xlog1py(v - 0.5, 0.5 * v) + sc.entr(v * v + 0.1)
    return np.sum(y * y)


def test_the_others_gradient_hessian_and_vmap_match_finite_differences() -> None:
    x = np.random.default_rng(8).uniform(-0.9, 0.9, 4)
    eye = np.eye(4)
    fd = np.array([(_g(x + H * e) - _g(x - H * e)) / (2 * H) for e in eye])
    np.testing.assert_allclose(lagrad.grad(_g)(x), fd, rtol=1e-6, atol=1e-8)
    grad = lagrad.grad(_g)
    fd2 = np.array([(grad(x + H * e) - grad(x - H * e)) / (2 * H) for e in eye])
    np.testing.assert_allclose(lagrad.hessian(_g)(x), fd2, rtol=1e-5, atol=1e-7)
    xs = np.stack([x, -0.5 * x, x[::-1]])
    np.testing.assert_allclose(lagrad.vmap(grad)(xs), np.stack([grad(r) for r in xs]),
                               rtol=1e-13)


def test_xlogy_at_x_zero_is_zero_with_no_derivative_in_y() -> None:
    f = lagrad.grad(lambda y: np.sum(sc.xlogy(np.array([0.0, 2.0]), y)
                                     + sc.xlog1py(np.array([0.0, 3.0]), y)))
    np.testing.assert_allclose(f(np.array([0.0, 4.0])), [0.0, 2.0 / 4.0 + 3.0 / 5.0],
                               rtol=1e-15)
    program = lagrad.trace(lambda y: sc.xlogy(0.0, y), 0.0)
    assert program.solve(0.0).output == 0.0


def test_a_value_outside_the_domain_names_the_equation() -> None:
    with pytest.raises(NonFiniteError, match="logit"):
        lagrad.grad(lambda v: np.sum(sc.logit(v)))(np.array([0.5, 2.0]))
    with pytest.raises(NonFiniteError):  # d/dx xlogy(x, y) = log(0)
        lagrad.grad(lambda v: sc.xlogy(v, 0.0))(1.0)
