"""numpy's further elementwise functions on traced values (``lagrad.ir.ufuncs``):
tan, arcsin, arccos, arcsinh, arccosh, arctanh, log2, log10, exp2, cbrt,
reciprocal, floor, ceil, trunc, rint; deg2rad, rad2deg, logaddexp2,
remainder (``%``), fmod, copysign and np.round; the masks isnan, isinf,
isfinite, heaviside, logical_not / and / or / xor; argmax, argmin and
argsort; and fabs, fmax, fmin, float_power routed to the existing
primitives.

References: each rule against central differences (partials of the value,
second partials of the partials), the gradient and Hessian of a function
using them against autograd, and numpy's values.
"""

from __future__ import annotations

from typing import Any

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import lagrad
from lagrad import NonFiniteError
from lagrad.ir import ufuncs as U

H = 1e-6
SMOOTH = [p for p in U.ELEMENTWISE if p.constant_partials is None]
ROUNDINGS = [p for p in U.ELEMENTWISE if p.constant_partials is not None]


def _inside(name: str, rng: np.random.Generator) -> np.ndarray:
    """Points well inside the function's domain (and off the roundings' jumps)."""
    if name in ("arcsin", "arccos", "arctanh"):
        return rng.uniform(-0.8, 0.8, 6)
    if name == "arccosh":
        return rng.uniform(1.2, 3.0, 6)
    if name in ("log2", "log10", "cbrt", "reciprocal"):
        return rng.uniform(0.3, 3.0, 6) * (1 if name.startswith("log") else rng.choice([-1, 1]))
    if name == "tan":
        return rng.uniform(-1.2, 1.2, 6)
    return rng.uniform(-3.0, 3.0, 6) + 0.25  # (0.25: no entry within H of an integer)


def test_the_table_routes_every_new_ufunc() -> None:
    assert set(U.UFUNCS.values()) == set(U.ELEMENTWISE) | set(U.ARITHMETIC) | set(U.MASKS)
    aliases = {np.radians: "deg2rad", np.degrees: "rad2deg"}
    for ufunc, prim in U.UFUNCS.items():
        assert prim.name == aliases.get(ufunc, ufunc.__name__)
        if prim in U.MASKS:  # (as the comparisons: through numpy only)
            assert not hasattr(lagrad, prim.name)
            continue
        assert getattr(lagrad, prim.name) is prim
        assert prim.name in lagrad.__all__


# points off the jumps of remainder and fmod (x / y not within 0.1 of an integer)
TWO = {"x": np.array([1.3, -2.2, 0.7, 3.9, -0.45]), "y": np.array([0.9, 1.7, -0.6, -1.1, 0.8])}


@pytest.mark.parametrize("prim", U.ARITHMETIC, ids=lambda p: p.name)
def test_arithmetic_partials_and_second_partials_match_finite_differences(prim: Any) -> None:
    args = (TWO["x"],) if prim.name in ("deg2rad", "rad2deg") else (TWO["x"], TWO["y"])
    ans = prim.value(*args)
    np.testing.assert_array_equal(ans, getattr(np, prim.name)(*args))

    def moved(k: int, h: float) -> tuple[np.ndarray, ...]:
        return tuple(a + h if i == k else a for i, a in enumerate(args))
    for k in range(len(args)):
        fd = (prim.value(*moved(k, H)) - prim.value(*moved(k, -H))) / (2 * H)
        np.testing.assert_allclose(prim.partials(k, ans, *args), fd, rtol=1e-6, atol=1e-8)
        for m in range(len(args)):
            def partial_at(at: tuple[np.ndarray, ...], k: int = k) -> np.ndarray:
                return np.asarray(prim.partials(k, prim.value(*at), *at), dtype=float)
            fd2 = (partial_at(moved(m, H)) - partial_at(moved(m, -H))) / (2 * H)
            np.testing.assert_allclose(prim.second(k, m, ans, *args), fd2, rtol=1e-5,
                                       atol=1e-7)


def _arith(xp: Any, x: Any) -> Any:
    y = xp.logaddexp2(x, 0.5 * x[::-1]) * xp.deg2rad(x) + xp.rad2deg(xp.sin(x)) \
        + xp.remainder(x * x, 0.7) + (x + 5.0) % 1.3
    return xp.sum(y * y)


def test_arithmetic_gradient_and_hessian_match_autograd() -> None:
    """(autograd has no derivative of fmod and copysign; the rule test covers them.)"""
    x = TWO["x"]
    g = lagrad.grad(lambda v: _arith(np, v))(x)
    np.testing.assert_allclose(g, autograd.grad(lambda v: _arith(anp, v))(x), rtol=1e-12)
    np.testing.assert_allclose(lagrad.hessian(lambda v: _arith(np, v))(x),
                               autograd.hessian(lambda v: _arith(anp, v))(x), rtol=1e-10,
                               atol=1e-12)
    assert lagrad.trace(lambda v: _arith(np, v), x).solve(x).output == \
        pytest.approx(_arith(np, x), rel=1e-14)


def test_round_matches_numpy_with_no_derivative() -> None:
    x = np.array([1.2345, -2.5, 3.5, 0.5, 1234.5678, -0.049])
    for decimals in (0, 1, 2, -1, -2):
        def fn(v: Any, decimals: int = decimals) -> Any:
            return np.round(v, decimals) + np.around(v) + v.round(1)
        program = lagrad.trace(fn, x)
        sol = program.solve(x * 1.1)
        np.testing.assert_array_equal(sol.output, np.round(x * 1.1, decimals)
                                      + np.around(x * 1.1) + np.round(x * 1.1, 1))
        assert not lagrad.jacobian(fn)(x).any()


def test_index_functions_are_numpys_as_floats_with_no_derivative() -> None:
    rng = np.random.default_rng(11)
    x = rng.normal(size=(4, 5))
    cases = {
        "argmax": lambda v: np.argmax(v), "argmax_axis": lambda v: np.argmax(v, axis=1),
        "argmin_keep": lambda v: np.argmin(v, 0, keepdims=True), "method": lambda v: v.argmax(-1),
        "argsort": lambda v: np.argsort(v), "argsort_flat": lambda v: np.argsort(v, axis=None),
        "argsort_stable": lambda v: v.argsort(0, kind="stable"),
    }
    for name, fn in cases.items():
        program = lagrad.trace(fn, x)
        for at in (x, rng.normal(size=(4, 5))):  # the indices follow the values
            got = program.solve(at).output
            np.testing.assert_array_equal(got, fn(at), err_msg=name)
            assert np.asarray(got).dtype == float
    labels = np.array([0.0, 2.0, 4.0, 1.0])

    def loss(w: Any) -> Any:
        logits = x @ w
        return np.sum(np.tanh(logits)), np.mean(np.argmax(logits, 1) == labels)
    w = rng.normal(size=(5, 5))
    (value, accuracy), g = lagrad.value_and_grad(loss, has_aux=True)(w)
    assert accuracy == np.mean(np.argmax(x @ w, 1) == labels)
    np.testing.assert_allclose(g, x.T @ (1.0 - np.tanh(x @ w) ** 2), rtol=1e-13)
    assert not lagrad.grad(lambda v: np.sum(np.argsort(v) * v) - np.sum(np.argsort(v) * v))(
        x[0]).any()
    np.testing.assert_array_equal(lagrad.grad(lambda v: np.sum(np.argsort(v) * v))(x[0]),
                                  np.argsort(x[0]))
    assert isinstance(lagrad.argmax(x), np.integer)  # numbers: numpy's integers


@pytest.mark.parametrize("prim", U.MASKS, ids=lambda p: p.name)
def test_masks_are_numpys_as_0_1_with_no_derivative(prim: Any) -> None:
    x, y = np.array([-1.5, 0.0, 2.0, np.inf, np.nan, -np.inf]), np.array([0.0, 1.0, 0.0, 3.0])
    arity = len(prim.constant_partials)
    args = (x,) if arity == 1 else (x[:4], y)
    ans = prim.value(*args)
    assert ans.dtype == float
    np.testing.assert_array_equal(ans, getattr(np, prim.name)(*args))
    for k in range(arity):
        assert not prim.partials(k, ans, *args).any()


def test_masks_choose_where_branches_found_again_at_every_solve() -> None:
    def f(v: Any) -> Any:
        keep = np.logical_and(np.isfinite(v), np.logical_not(np.isnan(v)))
        big = np.logical_or(v > 1.0, np.isinf(v))
        odd = np.logical_xor(v > 0.0, v < 0.5)
        return np.sum(np.where(keep, v, 0.0) * np.where(big, v, 2.0) + np.where(odd, v ** 3, 0.0))

    def expected(v: np.ndarray) -> tuple[float, np.ndarray]:
        big, odd = v > 1.0, (v > 0.0) ^ (v < 0.5)
        value = np.sum(v * np.where(big, v, 2.0) + np.where(odd, v ** 3, 0.0))
        return value, np.where(big, 2.0 * v, 2.0) + np.where(odd, 3.0 * v ** 2, 0.0)
    program = lagrad.trace(f, np.array([2.0, 0.3, -1.0]))
    for x in (np.array([2.0, 0.3, -1.0]), np.array([0.7, 1.5, 0.2]), np.array([-2.0, 3.0, 0.9])):
        sol = program.solve(x)
        value, grad = expected(x)
        assert sol.output == pytest.approx(value, rel=1e-15)
        np.testing.assert_allclose(sol.grad(), grad, rtol=1e-15)
    hess = lagrad.hessian(f)(np.array([0.7, 1.5, 0.2]))
    np.testing.assert_allclose(hess, np.diag([6.0 * 0.7, 2.0 + 6.0 * 1.5, 0.0]), atol=1e-14)


@pytest.mark.parametrize("prim", U.ELEMENTWISE, ids=lambda p: p.name)
def test_partials_and_second_partials_match_finite_differences(prim: Any) -> None:
    x = _inside(prim.name, np.random.default_rng(len(prim.name)))
    ans = prim.value(x)
    np.testing.assert_array_equal(ans, getattr(np, prim.name)(x))
    fd = (prim.value(x + H) - prim.value(x - H)) / (2 * H)
    d = prim.partials(0, ans, x)
    np.testing.assert_allclose(d, fd, rtol=1e-6, atol=1e-8)

    def partial_at(v: np.ndarray) -> np.ndarray:
        return np.asarray(prim.partials(0, prim.value(v), v), dtype=float)
    fd2 = (partial_at(x + H) - partial_at(x - H)) / (2 * H)
    np.testing.assert_allclose(prim.second(0, 0, ans, x), fd2, rtol=1e-5, atol=1e-7)


def _f(xp: Any, x: Any) -> Any:
    y = xp.tan(0.5 * x) + xp.arcsin(0.4 * x) * xp.arccos(0.3 * x) + xp.arcsinh(x) \
        + xp.arccosh(x * x + 1.5) + xp.arctanh(0.5 * xp.tanh(x)) + xp.log2(x * x + 1.0) \
        + xp.log10(xp.exp(x) + 1.0) + xp.exp2(0.3 * x) \
        + xp.reciprocal(x * x + 2.0)
    return xp.sum(y * y)


def test_gradient_and_hessian_match_autograd() -> None:
    """(autograd has every function here but cbrt, which the rule test covers.)"""
    x = np.random.default_rng(3).uniform(-0.9, 0.9, 5)
    value, g = lagrad.value_and_grad(lambda v: _f(np, v))(x)
    assert value == pytest.approx(_f(np, x), rel=1e-14)
    np.testing.assert_allclose(g, autograd.grad(lambda v: _f(anp, v))(x), rtol=1e-12)
    np.testing.assert_allclose(lagrad.hessian(lambda v: _f(np, v))(x),
                               autograd.hessian(lambda v: _f(anp, v))(x), rtol=1e-10,
                               atol=1e-12)
    tangent = lagrad.jvp(lambda v: _f(np, v), (x,), (np.ones(5),))[1]
    assert tangent == pytest.approx(g.sum(), rel=1e-12)


@pytest.mark.parametrize("prim", ROUNDINGS, ids=lambda p: p.name)
def test_roundings_pass_no_derivative(prim: Any) -> None:
    x = np.array([-1.7, -0.5, 0.5, 2.5, 3.2])
    fn = getattr(np, prim.name)
    p = lagrad.trace(lambda v: np.sum(fn(v) * v), x)
    sol = p.solve(x)
    assert sol.output == pytest.approx(np.sum(fn(x) * x), rel=1e-15)
    np.testing.assert_array_equal(sol.grad(), fn(x))  # d/dv (round(v) v) = round(v) + 0


def test_aliases_route_to_the_existing_primitives() -> None:
    x = np.array([-1.5, 0.5, 2.0])
    def f(v: Any) -> Any:
        return np.sum(np.fabs(v) + np.fmax(v, 0.7) * np.fmin(v, 0.1) + np.float_power(v * v, 1.5))
    g = lagrad.grad(f)(x)
    expected = np.sign(x) + np.where(x > 0.7, np.minimum(x, 0.1), 0.0) + \
        np.where(x < 0.1, np.maximum(x, 0.7), 0.0) + 3.0 * x * np.abs(x)
    np.testing.assert_allclose(g, expected, rtol=1e-13)


def test_the_functions_compute_on_numbers() -> None:
    x = np.array([0.2, 0.7])
    for prim in U.ELEMENTWISE:
        fn = getattr(lagrad, prim.name)
        arg = x + 1.0 if prim.name == "arccosh" else x
        np.testing.assert_array_equal(fn(arg), getattr(np, prim.name)(arg), err_msg=prim.name)


def test_a_value_outside_the_domain_names_the_equation() -> None:
    with pytest.raises(NonFiniteError, match="arcsin"):
        lagrad.grad(lambda v: np.sum(np.arcsin(v)))(np.array([0.5, 2.0]))
