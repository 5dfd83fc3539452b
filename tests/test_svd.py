"""np.linalg.svd with the singular vectors (``lagrad.ir.svd``): numpy's
values; the gradient of functions that do not see the vectors' signs
(U diag(s) Vh, rank-one terms u_i v_i^T, squares) against central
differences for tall, wide, square and stacked matrices; both modes'
Jacobians; the Hessian against differences of the gradient; vmap; the
three rules of each primitive agree (test_toolkit); the errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy_checks import fd_derivative as _fd

import lagrad
from lagrad import ProgramError

RNG = np.random.default_rng(20261207)
SHAPES = [(4, 3), (3, 4), (3, 3), (2, 4, 3)]


def _sign_free(a: Any) -> Any:
    """U diag(s) Vh (a itself), the first rank-one term, and squares."""
    u, s, vh = np.linalg.svd(a, full_matrices=False)
    recon = (u * s[..., None, :]) @ vh
    return np.concatenate([np.ravel(np.sin(recon)), np.ravel(u[..., :, :1] * vh[..., :1, :]),
                           np.ravel(u ** 2), np.ravel(vh ** 2)])


@pytest.mark.parametrize("shape", SHAPES)
def test_values_and_jacobians_match_numpy_and_differences(shape: tuple[int, ...]) -> None:
    a = RNG.normal(size=shape)
    program = lagrad.trace(lambda m: _sign_free(m), a)
    for x in (a, RNG.normal(size=shape)):
        np.testing.assert_allclose(program.solve(x).output, _sign_free(x), rtol=1e-12,
                                   atol=1e-13)
    fd = _fd(_sign_free, a)
    for mode in ("reverse", "forward"):
        np.testing.assert_allclose(lagrad.jacobian(_sign_free, mode=mode)(a), fd, rtol=1e-6,
                                   atol=1e-7, err_msg=mode)


def test_the_reconstruction_has_the_identity_as_derivative() -> None:
    a, w = RNG.normal(size=(5, 3)), RNG.normal(size=(5, 3))

    def loss(m: Any) -> Any:
        u, s, vh = np.linalg.svd(m, full_matrices=False)
        return np.sum(((u * s) @ vh) * w)
    np.testing.assert_allclose(lagrad.grad(loss)(a), w, rtol=1e-10, atol=1e-12)


def test_vmap_and_a_square_matrix_with_full_matrices() -> None:
    stack = RNG.normal(size=(3, 3, 3))

    def loss(m: Any) -> Any:
        u, _, vh = np.linalg.svd(m)  # square: full and reduced agree
        return np.sum(u[:, :1] * vh[:1, :] * np.arange(9.0).reshape(3, 3))
    each = np.stack([lagrad.grad(loss)(m) for m in stack])
    np.testing.assert_allclose(lagrad.vmap(lagrad.grad(loss))(stack), each, rtol=1e-12,
                               atol=1e-14)


@pytest.mark.parametrize("shape", SHAPES)
def test_hessian_matches_differences_of_the_gradient(shape: tuple[int, ...]) -> None:
    a = RNG.normal(size=shape)
    weights = RNG.normal(size=_sign_free(a).shape)

    def loss(m: Any) -> Any:
        return np.sum(np.sin(_sign_free(m) * weights))
    hess = lagrad.hessian(loss)(a).reshape(a.size, a.size)
    np.testing.assert_allclose(hess, _fd(lagrad.grad(loss), a).reshape(a.size, a.size),
                               rtol=1e-5, atol=1e-7)


def test_errors() -> None:
    with pytest.raises(ProgramError, match="give full_matrices=False"):
        lagrad.trace(lambda m: np.linalg.svd(m).U, RNG.normal(size=(4, 3)))
    with pytest.raises(ProgramError, match="hermitian=True"):
        lagrad.trace(lambda m: np.linalg.svd(m, hermitian=True).U, np.eye(3))
    with pytest.raises(ProgramError, match="non-empty matrix"):
        lagrad.trace(lambda m: np.linalg.svd(m, full_matrices=False).U, RNG.normal(size=4))
