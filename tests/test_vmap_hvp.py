"""lagrad.vmap over functools.partial(lagrad.hvp, f): a batch of
Hessian-vector products in one trace and one set of solves, checked against
lagrad.hvp one direction at a time and against the analytic Hessian."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import lagrad

RNG = np.random.default_rng(0)
X = np.array([0.3, -0.2, 0.5])
T = RNG.standard_normal((4, 3))


def f(x):  # type: ignore[no-untyped-def]
    return lagrad.sum(lagrad.sin(x) * x[::-1]) + x[0] ** 3


def hessian_of_f(x: np.ndarray) -> np.ndarray:
    """d^2/dx^2 of sum_i sin(x_i) x_{n-1-i} + x_0^3, by hand."""
    n = x.size
    h = np.zeros((n, n))
    for i in range(n):
        j = n - 1 - i
        h[i, i] -= np.sin(x[i]) * x[j]
        h[i, j] += np.cos(x[i])
        h[j, i] += np.cos(x[i])
    h[0, 0] += 6.0 * x[0]
    return h


def test_shared_primal_and_a_batch_of_directions() -> None:
    batched = lagrad.vmap(functools.partial(lagrad.hvp, f), in_axes=(None, 0))
    got = batched((X,), (T,))
    assert got.shape == (4, 3)
    np.testing.assert_allclose(got, T @ hessian_of_f(X).T, rtol=1e-13, atol=1e-14)
    one_by_one = np.stack([lagrad.hvp(f, (X,), (t,)) for t in T])
    np.testing.assert_allclose(got, one_by_one, rtol=1e-13, atol=1e-14)


def test_a_batch_of_primals_each_with_its_direction_and_out_axes() -> None:
    xs = RNG.uniform(-1.0, 1.0, (4, 3))
    got = lagrad.vmap(functools.partial(lagrad.hvp, f), out_axes=1)((xs,), (T,))
    assert got.shape == (3, 4)
    expected = np.stack([hessian_of_f(x) @ t for x, t in zip(xs, T)], axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-14)


def test_two_primals_give_a_tuple_and_a_shared_tangent_is_repeated() -> None:
    def g(x, w):  # type: ignore[no-untyped-def]
        return lagrad.sum(lagrad.tanh(w @ x) ** 2)

    w = RNG.standard_normal((2, 3))
    ws = RNG.standard_normal((4, 2, 3))
    tx = RNG.standard_normal(3)
    hx, hw = lagrad.vmap(functools.partial(lagrad.hvp, g), in_axes=((None, None), (None, 0)))(
        (X, w), (tx, ws))
    assert hx.shape == (4, 3) and hw.shape == (4, 2, 3)
    for b in range(4):
        ex, ew = lagrad.hvp(g, (X, w), (tx, ws[b]))
        np.testing.assert_allclose(hx[b], ex, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(hw[b], ew, rtol=1e-12, atol=1e-14)


def test_through_a_fixed_point() -> None:
    a = np.array([[0.2, -0.1, 0.0], [0.1, 0.3, 0.1], [0.0, 0.2, -0.2]])

    def layer(x):  # type: ignore[no-untyped-def]
        z = lagrad.fixed_point(lambda z, x: lagrad.tanh(a @ z + x), np.zeros(3), x)
        return lagrad.sum(z * z)

    got = lagrad.vmap(functools.partial(lagrad.hvp, layer), in_axes=(None, 0))((X,), (T,))
    expected = np.stack([lagrad.hvp(layer, (X,), (t,)) for t in T])
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    h = lagrad.hessian(layer)(X)
    np.testing.assert_allclose(got, T @ h.T, rtol=1e-10, atol=1e-12)


def test_solve_options_are_passed_through() -> None:
    options = {"adjoint_method": "spsolve"}
    batched = lagrad.vmap(functools.partial(lagrad.hvp, f, solve_options=options),
                          in_axes=(None, 0))
    np.testing.assert_allclose(batched((X,), (T,)), T @ hessian_of_f(X).T, rtol=1e-13,
                               atol=1e-14)
    with pytest.raises(lagrad.OptionError, match="unknown options"):
        lagrad.vmap(functools.partial(lagrad.hvp, f, solve_options={"nonsense": 1}))


def test_bad_calls_raise_lagrad_errors() -> None:
    batched = lagrad.vmap(functools.partial(lagrad.hvp, f), in_axes=(None, 0))
    with pytest.raises(lagrad.ProgramError, match="tangent of shape"):
        batched((X,), (np.ones((4, 2)),))
    with pytest.raises(lagrad.ProgramError, match="scalar output"):
        lagrad.vmap(functools.partial(lagrad.hvp, lambda x: x * 2.0), in_axes=(None, 0))(
            (X,), (T,))
    with pytest.raises(lagrad.OptionError, match="partial"):
        lagrad.vmap(functools.partial(lagrad.hvp, f, (X,)))
    with pytest.raises(lagrad.OptionError, match=r"\(primals, tangents\)"):
        lagrad.vmap(functools.partial(lagrad.hvp, f), in_axes=(None, 0, 0))((X,), (T,), (T,))
