"""np.linalg.lstsq on traced values: numpy's four results (their values and
shapes) for tall, wide and square matrices and vector or matrix right-hand
sides; the gradient against central differences and, for a square matrix,
against solve's; a rank-deficient matrix (the minimum-norm solution, the
rank); the errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy_checks import fd_derivative as _fd

import lagrad
from lagrad import ProgramError

RNG = np.random.default_rng(20261207)
CASES = [((5, 3), (5,)), ((5, 3), (5, 2)), ((3, 5), (3,)), ((3, 5), (3, 2)), ((4, 4), (4,))]


@pytest.mark.parametrize(("sa", "sb"), CASES)
def test_the_four_results_are_numpys(sa: tuple[int, int], sb: tuple[int, ...]) -> None:
    a = RNG.normal(size=sa) + np.eye(*sa)
    b = RNG.normal(size=sb)
    for part in range(4):
        program = lagrad.trace(lambda m, v, part=part: np.linalg.lstsq(m, v)[part] * 1.0, a, b)
        for x, y in ((a, b), (a * 1.5 - 0.2, b + 1.0)):
            got, expected = program.solve(x, y).output, np.linalg.lstsq(x, y)[part]
            assert np.shape(got) == np.shape(expected)
            np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("sa", "sb"), CASES)
def test_gradient_matches_differences(sa: tuple[int, int], sb: tuple[int, ...]) -> None:
    a = RNG.normal(size=sa) + 2.0 * np.eye(*sa)
    b = RNG.normal(size=sb)

    def loss(m: Any, v: Any) -> Any:
        x, residuals, _, s = np.linalg.lstsq(m, v)
        return np.sum(np.sin(x)) + np.sum(residuals) + 0.1 * np.sum(s)
    ga, gb = lagrad.grad(loss, argnums=(0, 1))(a, b)
    np.testing.assert_allclose(ga, _fd(lambda m: loss(m, b), a), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gb, _fd(lambda v: loss(a, v), b), rtol=1e-6, atol=1e-8)


def test_a_square_system_is_solves_and_a_deficient_one_the_minimum_norm() -> None:
    a, b = RNG.normal(size=(4, 4)) + 3.0 * np.eye(4), RNG.normal(size=4)
    np.testing.assert_allclose(
        lagrad.grad(lambda m: np.sum(np.linalg.lstsq(m, b)[0] ** 2))(a),
        lagrad.grad(lambda m: np.sum(np.linalg.solve(m, b) ** 2))(a), rtol=1e-10)
    deficient = RNG.normal(size=(5, 2)) @ RNG.normal(size=(2, 3))  # rank 2
    y = RNG.normal(size=5)
    program = lagrad.trace(lambda m: np.linalg.lstsq(m, y)[0], deficient)
    np.testing.assert_allclose(program.solve(deficient).output,
                               np.linalg.lstsq(deficient, y)[0], rtol=1e-10, atol=1e-12)
    rank = lagrad.trace(lambda m: np.linalg.lstsq(m, y)[2] * 1.0, deficient)
    assert rank.solve(deficient).output == 2.0
    assert rank.solve(RNG.normal(size=(5, 3))).output == 3.0


BAD = {
    "rcond": (lambda m: np.linalg.lstsq(m, np.ones(3), rcond=1e-3), "default cutoff"),
    "b": (lambda m: np.linalg.lstsq(m, np.ones(4)), "give a matrix"),
    "a": (lambda m: np.linalg.lstsq(m[0], np.ones(3)), "give a matrix"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_arguments_raise_program_errors(name: str) -> None:
    fn, message = BAD[name]
    with pytest.raises(ProgramError, match=message):
        lagrad.trace(fn, np.ones((3, 2)))
