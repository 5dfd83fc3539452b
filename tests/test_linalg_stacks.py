"""numpy's stacked linear algebra on traced values: solve, inv, det, slogdet,
cholesky and qr of a stack of matrices (..., n, n), with numpy's
broadcasting of the stacks, one equation per matrix. References: numpy's
values, central differences of them, and the same function of each matrix
alone."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy_checks import fd_derivative as _fd

import lagrad
from lagrad import ProgramError

RNG = np.random.default_rng(20261207)
A = RNG.normal(size=(3, 4, 4)) + 4.0 * np.eye(4)
B = RNG.normal(size=(2, 1, 4, 2))
V = RNG.normal(size=4)
TALL = RNG.normal(size=(2, 3, 4, 3))


def _spd(a: Any) -> Any:
    return a @ np.swapaxes(a, -1, -2)


CASES = {  # name -> (function of the stack, the stack)
    "solve_vector": (lambda a: np.sin(np.linalg.solve(a, V)), A),
    "solve_broadcast": (lambda a: np.linalg.solve(a, B) ** 2, A),
    "solve_rhs_traced": (lambda b: np.linalg.solve(A[:1], b), B),
    "inv": (lambda a: np.linalg.inv(a), A),
    "det": (lambda a: np.linalg.det(a), A),
    "slogdet": (lambda a: np.linalg.slogdet(a).logabsdet * np.linalg.slogdet(a).sign, A),
    "cholesky": (lambda a: np.linalg.cholesky(_spd(a)), A),
    "qr": (lambda a: np.linalg.qr(a).Q[..., :3, :] ** 2 + np.linalg.qr(a)[1], TALL),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_value_and_jacobian_match_numpy_and_differences(name: str) -> None:
    fn, x = CASES[name]
    program = lagrad.trace(fn, x)
    np.testing.assert_allclose(program.solve(x * 1.1).output, fn(x * 1.1), rtol=1e-13,
                               atol=1e-13)
    fd = _fd(fn, x)
    for mode in ("reverse", "forward"):
        np.testing.assert_allclose(lagrad.jacobian(fn, mode=mode)(x), fd, rtol=1e-6,
                                   atol=1e-7, err_msg=mode)


def test_a_stack_is_each_matrix_alone_and_vmap_agrees() -> None:
    def loss(a: Any) -> Any:
        return np.sum(np.linalg.slogdet(a).logabsdet) + np.sum(np.linalg.inv(a) ** 2) \
            + np.sum(np.linalg.solve(a, V) ** 3)
    each = np.stack([lagrad.grad(loss)(m) for m in A])
    np.testing.assert_allclose(lagrad.grad(loss)(A), each, rtol=1e-13)
    np.testing.assert_allclose(lagrad.vmap(lagrad.grad(loss))(A), each, rtol=1e-13)
    hess = lagrad.hessian(lambda a: np.sum(np.linalg.det(a)))(A[:2, :2, :2])
    for k in range(2):
        np.testing.assert_allclose(hess[k, :, :, k], lagrad.hessian(np.linalg.det)(A[k, :2, :2]),
                                   rtol=1e-13)


def test_numbers_take_numpys_own_functions() -> None:
    np.testing.assert_array_equal(lagrad.linalg.det(A), np.linalg.det(A))
    np.testing.assert_array_equal(lagrad.linalg.solve(A, B), np.linalg.solve(A, B))
    sign, logdet = lagrad.linalg.slogdet(A)
    np.testing.assert_array_equal(logdet, np.linalg.slogdet(A).logabsdet)
    assert lagrad.linalg.slogdet(A[0]).logabsdet == pytest.approx(np.linalg.slogdet(A[0])[1])


BAD = {
    "empty": (lambda a: np.linalg.det(a[:0]), "an empty stack of matrices"),
    "rhs": (lambda a: np.linalg.solve(a, np.ones((3, 5, 2))), "b has shape"),
    "not_square": (lambda a: np.linalg.inv(a[..., :3]), r"must be a square matrix \(n, n\) or a "
                   r"stack"),
    "qr_wide": (lambda a: np.linalg.qr(np.swapaxes(a[..., :3], -1, -2)), "tall or square"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_stacks_raise_program_errors(name: str) -> None:
    fn, message = BAD[name]
    with pytest.raises(ProgramError, match=message):
        lagrad.trace(fn, A)
