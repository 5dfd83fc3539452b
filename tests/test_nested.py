"""Nested transforms: grad(grad(f)) and jacobian(grad(f)), to depth 2, by the
Hessian of the inner solve (forward over reverse), checked against closed
forms, lagrad.hessian and finite differences of the gradient."""

from __future__ import annotations

import numpy as np
import pytest

import lagrad


def test_second_derivative_of_a_scalar_function():
    f = lambda x: lagrad.sin(x) * x ** 3  # noqa: E731
    d2 = lagrad.grad(lagrad.grad(f))
    for x in (0.3, -1.1, 2.0):
        want = -np.sin(x) * x ** 3 + 6 * np.cos(x) * x ** 2 + 6 * np.sin(x) * x
        assert d2(x) == pytest.approx(want, rel=1e-10)


def test_jacobian_of_grad_is_the_hessian():
    g = lambda x: lagrad.sum(lagrad.tanh(x) * x ** 2) + lagrad.sum(x) ** 2  # noqa: E731
    x = np.array([0.3, -1.2, 2.0, 0.7])
    h = lagrad.jacobian(lagrad.grad(g))(x)
    np.testing.assert_allclose(h, lagrad.hessian(g)(x), rtol=1e-10)
    np.testing.assert_allclose(h, h.T, rtol=1e-10)
    eps = 1e-6
    fd = np.array([(lagrad.grad(g)(x + eps * e) - lagrad.grad(g)(x - eps * e)) / (2 * eps)
                   for e in np.eye(4)])
    np.testing.assert_allclose(h, fd, rtol=1e-6)


def test_through_a_fixed_point():
    """sqrt(a) by Newton's map z = (z + a/z)/2: d2/da2 sqrt(a) = -1/(4 a^1.5)."""
    def sqrt(a):
        return lagrad.fixed_point(lambda z, a: 0.5 * (z + a / z), 1.0, a)
    for a in (0.5, 4.0, 9.0):
        assert lagrad.grad(lagrad.grad(sqrt))(a) == pytest.approx(-0.25 * a ** -1.5, rel=1e-9)


def test_mixed_partials_and_outer_arithmetic():
    h = lambda x, y: x ** 2 * y ** 3  # noqa: E731
    assert lagrad.grad(lagrad.grad(h, 0), 1)(2.0, 3.0) == pytest.approx(2 * 2 * 3 * 9)
    f = lambda x: lagrad.exp(2.0 * x)  # noqa: E731
    outer = lagrad.grad(lambda x: lagrad.grad(f)(x) * x)  # d/dx (2 e^{2x} x)
    assert outer(0.5) == pytest.approx(2 * np.exp(1.0) + 4 * 0.5 * np.exp(1.0), rel=1e-10)


def test_unsupported_nesting_says_what_to_use():
    with pytest.raises(lagrad.ProgramError, match="hessian"):
        lagrad.grad(lagrad.grad(lambda x, y: x * y, argnums=(0, 1)))(1.0, 2.0)
