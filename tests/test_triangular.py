"""lagrad.linalg.solve_triangular, cho_factor and cho_solve against scipy's
values, central differences (gradient, Hessian, both modes' Jacobians) for
every combination of lower / trans / unit_diagonal, and a Gaussian-process
log marginal likelihood against its closed-form gradient."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import scipy.linalg as sla
from numpy_checks import fd_derivative as _fd

import lagrad
from lagrad import ProgramError, SingularSystemError

RNG = np.random.default_rng(20261207)
N = 4
A = RNG.normal(size=(N, N)) + 3.0 * np.eye(N)
RHS = {"vector": RNG.normal(size=N), "matrix": RNG.normal(size=(N, 2))}


COMBOS = list(itertools.product([True, False], [0, 1, "T"], [False, True], sorted(RHS)))


@pytest.mark.parametrize(("lower", "trans", "unit", "rhs"), COMBOS)
def test_solve_triangular_matches_scipy_and_differences(lower: bool, trans: Any, unit: bool,
                                                        rhs: str) -> None:
    b = RHS[rhs]
    flags = {"trans": trans, "lower": lower, "unit_diagonal": unit}

    def ours(a: Any, bb: Any) -> Any:
        return lagrad.linalg.solve_triangular(a, bb, **flags)

    def theirs(a: np.ndarray, bb: np.ndarray) -> np.ndarray:
        return sla.solve_triangular(a, bb, **flags)
    np.testing.assert_allclose(lagrad.trace(ours, A, b).solve(A, b).output, theirs(A, b),
                               rtol=1e-14)
    for mode in ("reverse", "forward"):
        ja, jb = lagrad.jacobian(ours, argnums=(0, 1), mode=mode)(A, b)
        np.testing.assert_allclose(ja, _fd(lambda a: theirs(a, b), A), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(jb, _fd(lambda bb: theirs(A, bb), b), rtol=1e-6, atol=1e-8)

    def joint(z: Any) -> Any:
        return np.sum(np.sin(ours(z[:N * N].reshape(N, N), z[N * N:].reshape(b.shape))))
    z = np.concatenate([A.ravel(), b.ravel()])
    np.testing.assert_allclose(lagrad.hessian(joint)(z), _fd(lagrad.grad(joint), z),
                               rtol=1e-5, atol=1e-7)


def test_cho_solve_and_a_gaussian_process_likelihood() -> None:
    x = np.linspace(0.0, 1.0, 6)
    y = np.sin(3.0 * x)

    def kernel(log_scale: Any) -> Any:
        return np.exp(-(x[:, None] - x[None, :]) ** 2 / (2.0 * np.exp(log_scale) ** 2)) \
            + 0.1 * np.eye(6)

    def neg_log_likelihood(log_scale: Any) -> Any:
        factor = lagrad.linalg.cho_factor(kernel(log_scale), lower=True)
        alpha = lagrad.linalg.cho_solve(factor, y)
        return 0.5 * y @ alpha + np.sum(np.log(np.diagonal(factor[0])))
    theta = np.log(0.3)
    k = np.asarray(lagrad.trace(kernel, theta).solve(theta).output)
    alpha = np.linalg.solve(k, y)
    expected_value = 0.5 * y @ alpha + 0.5 * np.linalg.slogdet(k)[1]
    # d/dtheta = -1/2 alpha^T dK alpha + 1/2 tr(K^-1 dK)
    dk = _fd(kernel, np.array(theta))
    expected_grad = -0.5 * alpha @ dk @ alpha + 0.5 * np.trace(np.linalg.solve(k, dk))
    value, grad = lagrad.value_and_grad(neg_log_likelihood)(theta)
    assert value == pytest.approx(expected_value, rel=1e-13)
    assert grad == pytest.approx(expected_grad, rel=1e-6)
    upper = lagrad.linalg.cho_factor(k)
    assert upper[1] is False
    np.testing.assert_allclose(lagrad.linalg.cho_solve(upper, y), alpha, rtol=1e-12)
    np.testing.assert_allclose(upper[0], sla.cho_factor(k)[0] * np.triu(np.ones((6, 6))),
                               rtol=1e-13)


BAD = {
    "shape": (lambda a: lagrad.linalg.solve_triangular(a[:, :3], np.ones(4)), "square matrix"),
    "rhs": (lambda a: lagrad.linalg.solve_triangular(a, np.ones(3)), "b has shape"),
    "trans": (lambda a: lagrad.linalg.solve_triangular(a, np.ones(4), trans="X"),
              "trans must be"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_arguments_raise_program_errors(name: str) -> None:
    fn, message = BAD[name]
    with pytest.raises(ProgramError, match=message):
        lagrad.trace(fn, A)


def test_a_zero_on_the_diagonal_is_singular() -> None:
    singular = np.triu(A)
    singular[2, 2] = 0.0
    with pytest.raises(SingularSystemError, match="zero on its diagonal"):
        lagrad.grad(lambda a: np.sum(lagrad.linalg.solve_triangular(a, np.ones(4))))(singular)
    # with unit_diagonal the diagonal is not read
    g = lagrad.grad(lambda a: np.sum(lagrad.linalg.solve_triangular(
        a, np.ones(4), unit_diagonal=True)))(singular)
    assert not np.diag(g).any() and not np.tril(g, -1).any()
