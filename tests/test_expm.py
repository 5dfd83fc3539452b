"""lagrad.linalg.expm: scipy's value; closed forms of the derivative (the
trace, commuting and diagonal matrices, the Fréchet derivative by its
series); the gradient and Hessian against central differences; stacks,
vmap and a fixed point; the errors. (The three rules of the primitive agree
in tests/test_toolkit.py.)"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import scipy.linalg
from numpy_checks import fd_derivative as _fd

import lagrad
from lagrad import ProgramError
from lagrad.ir.expm import frechet

RNG = np.random.default_rng(20261207)
A = 0.6 * RNG.normal(size=(4, 4))
G = RNG.normal(size=(4, 4))
STACK = 0.5 * RNG.normal(size=(3, 4, 4))


def test_value_is_scipys_on_traced_values_and_numbers() -> None:
    program = lagrad.trace(lagrad.linalg.expm, A)
    for a in (A, -A.T, STACK[0]):
        np.testing.assert_array_equal(program.solve(a).output, scipy.linalg.expm(a))
    np.testing.assert_array_equal(lagrad.linalg.expm(STACK), scipy.linalg.expm(STACK))


def test_frechet_derivative_is_its_series() -> None:
    """L(A, E) = sum_k 1/k! sum_{j<k} A^j E A^(k-1-j)."""
    series, power = np.zeros((4, 4)), [np.eye(4)]
    for k in range(1, 30):
        power.append(power[-1] @ A)
        series += sum(power[j] @ G @ power[k - 1 - j] for j in range(k)) / math.factorial(k)
    np.testing.assert_allclose(frechet(A, G), series, rtol=1e-12, atol=1e-13)


def test_closed_forms_of_the_gradient() -> None:
    def trace(m: Any) -> Any:
        return np.trace(lagrad.linalg.expm(m))
    np.testing.assert_allclose(lagrad.grad(trace)(A), scipy.linalg.expm(A).T, rtol=1e-13)
    d = np.array([0.3, -1.0, 0.7])  # diagonal: exp entrywise on the diagonal
    jac = lagrad.jacobian(lambda m: lagrad.linalg.expm(m), mode="forward")(np.diag(d))
    np.testing.assert_allclose(np.einsum("iijj->ij", jac), np.diag(np.exp(d)), atol=1e-14)
    # a commuting direction: d/ds exp(A + s A) = A exp(A)
    tangent = lagrad.jvp(lagrad.linalg.expm, (A,), (A,))[1]
    np.testing.assert_allclose(tangent, A @ scipy.linalg.expm(A), rtol=1e-12, atol=1e-13)


def _loss(m: Any) -> Any:
    return np.sum(np.sin(lagrad.linalg.expm(m)) * G)


def _reference_loss(m: np.ndarray) -> float:
    return float(np.sum(np.sin(scipy.linalg.expm(m)) * G))


def test_gradient_and_hessian_match_finite_differences() -> None:
    np.testing.assert_allclose(lagrad.grad(_loss)(A), _fd(_reference_loss, A), rtol=1e-6,
                               atol=1e-8)
    hess = lagrad.hessian(_loss)(A)
    np.testing.assert_allclose(hess, _fd(lagrad.grad(_loss), A), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(hess.reshape(16, 16), hess.reshape(16, 16).T, atol=1e-12)
    for mode in ("reverse", "forward"):
        jac = lagrad.jacobian(lagrad.linalg.expm, mode=mode)(A)
        np.testing.assert_allclose(jac, _fd(scipy.linalg.expm, A), rtol=1e-6, atol=1e-8)


def test_stacks_vmap_and_a_fixed_point() -> None:
    def loss(m: Any) -> Any:
        return np.sum(lagrad.linalg.expm(m) ** 2)
    each = np.stack([lagrad.grad(loss)(m) for m in STACK])
    np.testing.assert_allclose(lagrad.grad(loss)(STACK), each, rtol=1e-13)
    np.testing.assert_allclose(lagrad.vmap(lagrad.grad(loss))(STACK), each, rtol=1e-13)
    np.testing.assert_allclose(lagrad.hessian(loss)(STACK[:1]).reshape(16, 16),
                               lagrad.hessian(loss)(STACK[0]).reshape(16, 16), rtol=1e-12)

    def steady(m: Any) -> Any:  # z = 0.2 exp(0.1 m) z + 1
        z = lagrad.fixed_point(lambda z, m: 0.2 * lagrad.linalg.expm(0.1 * m) @ z + 1.0,
                               np.zeros(4), m, method="newton", tol=1e-14)
        return np.sum(z)

    def reference(m: np.ndarray) -> float:
        return float(np.sum(np.linalg.solve(np.eye(4) - 0.2 * scipy.linalg.expm(0.1 * m),
                                            np.ones(4))))
    np.testing.assert_allclose(lagrad.grad(steady)(A), _fd(reference, A), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("shape", [(3,), (2, 3), (2, 3, 4)])
def test_a_matrix_that_is_not_square_raises(shape: tuple[int, ...]) -> None:
    with pytest.raises(ProgramError, match="give a square matrix"):
        lagrad.trace(lagrad.linalg.expm, np.ones(shape))
