"""numpy 2's array-API names, the linalg aliases and the small compositions
(``lagrad.ir.numpy_api``), the sequence operations (``lagrad.ir.sequences``),
``np.sinc``, ``np.signbit`` and ``np.searchsorted`` on traced values.

References: numpy's value; the Jacobian in both modes by central differences
(autograd has none of these); vmap against the instances one by
one; the Hessian against differences of the gradient; a program traced at
one input and solved at another for the value-dependent ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from numpy_checks import op_tests

import lagrad
from lagrad import ProgramError
from lagrad.ir import ufuncs as U

RNG = np.random.default_rng(20261207)
X = RNG.normal(size=(3, 4))
SQ = RNG.normal(size=(3, 3)) + 2.0 * np.eye(3)
A5, V3 = RNG.normal(size=5), RNG.normal(size=3)

# name -> (function of (xp, *args), args, whether autograd has it)
OPS: dict[str, tuple[Callable[..., Any], tuple[np.ndarray, ...], bool]] = {
    "matrix_transpose": (lambda xp, x: np.matrix_transpose(x) * 2.0, (X,), False),
    "vecdot": (lambda xp, x: np.vecdot(x, x[::-1]), (X,), False),
    "linalg_vecdot": (lambda xp, x: np.linalg.vecdot(x, x ** 2, axis=0), (X,), False),
    "linalg_outer": (lambda xp, x: np.linalg.outer(x[0], x[1]), (X,), False),
    "linalg_trace": (lambda xp, x: np.linalg.trace(x[:, :3] @ x[:, 1:].T), (X,), False),
    "linalg_diagonal": (lambda xp, x: np.linalg.diagonal(x, offset=1) ** 2, (X,), False),
    "linalg_cross": (lambda xp, x: np.linalg.cross(x[:, :3], x[:, 1:]), (X,), False),
    "linalg_tensordot": (lambda xp, x: np.linalg.tensordot(x, x[::-1], axes=1 + 1), (X,),
                         False),
    "linalg_matmul": (lambda xp, x: np.linalg.matmul(x, x.T), (X,), False),
    "unstack": (lambda xp, x: np.unstack(x, axis=1)[2] * np.unstack(x)[0][:3], (X,), False),
    "cumulative_sum": (lambda xp, x: np.cumulative_sum(x, axis=1, include_initial=True),
                       (X,), False),
    "cumulative_prod": (lambda xp, x: np.cumulative_prod(x[0], include_initial=True), (X,),
                        False),
    "cond": (lambda xp, x: np.linalg.cond(x), (SQ,), False),
    "cond_minus_2": (lambda xp, x: np.linalg.cond(x, -2), (SQ,), False),
    "cond_fro": (lambda xp, x: np.linalg.cond(x, "fro"), (SQ,), False),
    "fix": (lambda xp, x: np.fix(3.0 * x) * x, (X,), False),
    "nan_to_num": (lambda xp, x: np.nan_to_num(x) + np.real(x) - np.imag(x) + np.conj(x),
                   (X,), False),
    "sinc": (lambda xp, x: np.sinc(x), (X,), False),
    "sinc_near_zero": (lambda xp, x: np.sinc(1e-4 * x), (X,), False),
    "convolve": (lambda xp, a: np.convolve(a, a[:3] ** 2), (A5,), False),
    "convolve_same": (lambda xp, a: np.convolve(a[:3], a, "same"), (A5,), False),
    "convolve_valid": (lambda xp, a: np.convolve(a, a[1:4], "valid"), (A5,), False),
    "correlate": (lambda xp, a: np.correlate(a, a[:3] * 2.0), (A5,), False),
    "correlate_full": (lambda xp, a: np.correlate(a[:2], a, "full"), (A5,), False),
    "trapezoid": (lambda xp, x: np.trapezoid(x), (X,), False),
    "trapezoid_x": (lambda xp, x: np.trapezoid(x ** 2, x=[0.0, 0.5, 2.0], axis=0), (X,),
                    False),
    "trapezoid_traced_x": (lambda xp, x: np.trapezoid(x, x=np.cumsum(x ** 2, axis=1) + x,
                                                      axis=1), (X,), False),
    "polyval": (lambda xp, x: np.polyval(x[0], x[1:]), (X,), False),
    "polyval_constant_p": (lambda xp, x: np.polyval([1.0, -2.0, 0.5], x), (X,), False),
    "ediff1d": (lambda xp, x: np.ediff1d(x, to_begin=x[0, :2], to_end=[3.0]), (X,), False),
}


# value and Jacobian, vmap, Hessian of every entry (numpy_checks.op_tests)
(test_value_and_jacobian_match_numpy_fd_and_autograd,
 test_vmap_of_the_value_and_gradient_is_each_instances,
 test_hessian_matches_finite_differences_of_the_gradient) = op_tests(OPS)


def test_sinc_rules_match_differences_across_the_series_switch() -> None:
    x = np.array([-2.3, -0.4, -2e-3, -5e-4, 0.0, 3e-4, 1.5e-3, 0.7])
    h = 1e-6
    np.testing.assert_allclose(U.sinc.partials(0, np.sinc(x), x),
                               (np.sinc(x + h) - np.sinc(x - h)) / (2 * h), rtol=1e-6,
                               atol=1e-8)

    def d(v: np.ndarray) -> np.ndarray:
        return U.sinc.partials(0, np.sinc(v), v)
    np.testing.assert_allclose(U.sinc.second(0, 0, np.sinc(x), x), (d(x + h) - d(x - h)) / (2 * h),
                               rtol=1e-5, atol=1e-7)
    assert U.sinc.second(0, 0, 1.0, np.array(0.0)) == pytest.approx(-np.pi ** 2 / 3)


# value-dependent results: 0/1 masks and counts, found again at every solve
COUNTS = {
    "matrix_rank": lambda x: np.linalg.matrix_rank(x),
    "matrix_rank_deficient": lambda x: np.linalg.matrix_rank(np.outer(x[0], x[1])),
    "signbit": lambda x: np.signbit(x),
    "all": lambda x: np.all(x > -1.0, axis=1),
    "any": lambda x: np.any(x > 1.0),
    "count_nonzero": lambda x: np.count_nonzero(x > 0.0, axis=0),
    "searchsorted": lambda x: np.searchsorted(np.sort(x[0]), x[1:], side="right"),
    "searchsorted_constant": lambda x: np.searchsorted([-1.0, 0.0, 1.0], x),
}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_masks_and_counts_are_numpys_at_every_solve_with_no_derivative(name: str) -> None:
    fn = COUNTS[name]
    program = lagrad.trace(fn, X)
    for x in (X, RNG.normal(size=X.shape) * 2.0, -X):
        got = program.solve(x).output
        np.testing.assert_array_equal(got, np.asarray(fn(x), dtype=float))
    assert not lagrad.jacobian(lambda v: fn(v) * 1.0)(X).any()


BAD = {
    "convolve_mode": (lambda x: np.convolve(x[0], x[1], "wrap"), "mode must be"),
    "convolve_2d": (lambda x: np.convolve(x, x[0]), "1-D arrays"),
    "cumulative_axis": (lambda x: np.cumulative_sum(x), "give an axis"),
    "matrix_transpose": (lambda x: np.matrix_transpose(x[0]), "at least 2 dimensions"),
    "searchsorted_2d": (lambda x: np.searchsorted(x, x[0]), "must be 1-D"),
    "all_where": (lambda x: np.all(x, where=x > 0), "where="),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_arguments_raise_program_errors(name: str) -> None:
    fn, message = BAD[name]
    with pytest.raises(ProgramError, match=message):
        lagrad.trace(fn, X)
