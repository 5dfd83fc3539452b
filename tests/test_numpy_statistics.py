"""numpy's stacking helpers (``lagrad.ir.stacking``) and statistics
(``lagrad.ir.statistics``) on traced values.

References: numpy's value; the Jacobian by central differences of it and by
autograd where autograd has the function (not average or cov; its dstack's
Jacobian is zero, wrongly); a program traced at one input and
solved at another whose order differs (the median moves to another entry).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from numpy_checks import fd_jacobian as _fd
from numpy_checks import op_tests

import lagrad
from lagrad import ProgramError

RNG = np.random.default_rng(20261207)
X = RNG.normal(size=(3, 4))
V = RNG.normal(size=5)

OPS: dict[str, tuple[Callable[..., Any], tuple[np.ndarray, ...], bool]] = {
    "hstack": (lambda xp, x: xp.hstack([x, x[:, :1] * 2.0]), (X,), True),
    "hstack_vectors": (lambda xp, x: xp.hstack([x, x[:2]]), (V,), True),
    "vstack": (lambda xp, x: xp.vstack([x[0], x, x[1:] ** 2]), (X,), True),
    "dstack": (lambda xp, x: xp.dstack([x, x * x]), (X,), False),
    "column_stack": (lambda xp, x: xp.column_stack([x[0], x.T]), (X,), True),
    "atleast_2d": (lambda xp, x: xp.atleast_2d(x) * 2.0, (V,), True),
    "atleast_3d": (lambda xp, x: xp.atleast_3d(x) * 2.0, (X,), True),
    "append": (lambda xp, x: xp.append(x, x[0]), (X,), True),
    "append_axis": (lambda xp, x: np.append(x, x[:1] ** 2, axis=0), (X,), False),
    "zeros_like": (lambda xp, x: np.zeros_like(x) + x * np.ones_like(x) + np.full_like(x, 2.0),
                   (X,), False),
    "copy": (lambda xp, x: np.copy(x) * 3.0, (X,), False),
    "median": (lambda xp, x: np.median(x), (X,), False),
    "median_odd": (lambda xp, x: np.median(x, axis=0), (X,), False),
    "median_even_keep": (lambda xp, x: np.median(x, axis=1, keepdims=True), (X,), False),
    "quantile": (lambda xp, x: np.quantile(x, [0.1, 0.5, 0.93], axis=1), (X,), False),
    "quantile_scalar": (lambda xp, x: np.quantile(x, 0.3), (X,), False),
    "quantile_keep": (lambda xp, x: np.quantile(x, [0.2, 0.7], axis=0, keepdims=True), (X,),
                      False),
    "percentile": (lambda xp, x: np.percentile(x, 37, axis=-1), (X,), False),
    "quantile_lower": (lambda xp, x: np.quantile(x, [0.1, 0.5, 0.93], axis=1, method="lower"),
                       (X,), False),
    "quantile_higher": (lambda xp, x: np.quantile(x, 0.3, method="higher"), (X,), False),
    # positions 0.5, 1.5 and 2.5 of four: numpy rounds half to even
    "quantile_nearest": (lambda xp, x: np.quantile(x, [0.0, 1 / 6, 0.5, 5 / 6, 1.0], axis=1,
                                                   method="nearest"), (X,), False),
    "quantile_midpoint": (lambda xp, x: np.quantile(x, [0.25, 0.5, 0.6], axis=0,
                                                    method="midpoint", keepdims=True),
                          (X,), False),
    "percentile_nearest": (lambda xp, x: np.percentile(x, [10, 90], method="nearest"), (X,),
                           False),
    # a solve refuses NaN, so the nan-functions are their plain counterparts
    "nansum": (lambda xp, x: np.nansum(x * x, axis=1) + np.nanprod(x, axis=0)[:3], (X,), False),
    "nanmax": (lambda xp, x: np.nanmax(x, axis=0) - np.nanmin(x, axis=0), (X,), False),
    "nanmean": (lambda xp, x: np.nanmean(x, axis=1) * np.nanstd(x, axis=1)
                + np.nanvar(x, axis=1, ddof=1), (X,), False),
    "nancumsum": (lambda xp, x: np.nancumsum(x, axis=1) + np.nancumprod(x, axis=1), (X,), False),
    "nanmedian": (lambda xp, x: np.nanmedian(x, axis=0) + np.nanquantile(x, 0.3, axis=0)
                  + np.nanpercentile(x, 75, axis=0, method="lower"), (X,), False),
    "average_weights": (lambda xp, x: xp.average(x, axis=1, weights=np.arange(1.0, 5.0)), (X,),
                        False),
    "average_traced_weights": (lambda xp, x: xp.average(x, weights=x * x), (X,), False),
    "average_returned": (lambda xp, x: np.average(x, axis=0, weights=x ** 2,
                                                  returned=True)[1], (X,), False),
    "ptp": (lambda xp, x: np.ptp(x, axis=0), (X,), False),
    "cov": (lambda xp, x: xp.cov(x), (X,), False),
    "cov_columns": (lambda xp, x: xp.cov(x, rowvar=False, ddof=0), (X,), False),
    "cov_two": (lambda xp, x: xp.cov(x[0], x[1]), (X,), False),
    "corrcoef": (lambda xp, x: xp.corrcoef(x), (X,), False),
}


# value and Jacobian, vmap, Hessian of every entry (numpy_checks.op_tests)
(test_value_and_jacobian_match_numpy_fd_and_autograd,
 test_vmap_of_the_value_and_gradient_is_each_instances,
 test_hessian_matches_finite_differences_of_the_gradient) = op_tests(OPS)


def test_the_median_follows_the_values_at_every_solve() -> None:
    program = lagrad.trace(lambda v: np.median(v) + np.quantile(v, 0.25), V)
    for x in (V, V[::-1] * -1.5, V + np.arange(5.0)):
        sol = program.solve(x)
        assert sol.output == pytest.approx(np.median(x) + np.quantile(x, 0.25), rel=1e-14)
        np.testing.assert_allclose(sol.grad(), _fd(lambda v: np.median(v) + np.quantile(v, 0.25),
                                                   (x,), 0)[0], rtol=1e-6, atol=1e-8)


def test_like_functions_give_constants_of_the_shape() -> None:
    seen: dict[str, Any] = {}

    def f(v: Any) -> Any:
        seen["zeros"], seen["full"] = np.zeros_like(v), np.full_like(v, 3, dtype=int)
        seen["shaped"] = np.ones_like(v, shape=(2,))
        return v * 1.0
    lagrad.trace(f, X)
    np.testing.assert_array_equal(seen["zeros"], np.zeros((3, 4)))
    assert seen["full"].dtype == int and (seen["full"] == 3).all()
    np.testing.assert_array_equal(seen["shaped"], np.ones(2))


def test_atleast_with_several_arrays_gives_a_tuple() -> None:
    def f(v: Any) -> Any:
        a, b = np.atleast_2d(v[0, 0], v[0])
        assert (a.shape, b.shape) == ((1, 1), (1, 4))
        return np.sum(a) + np.sum(b)
    g = lagrad.grad(f)(X)
    assert g[0, 0] == 2.0 and g[0, 1:].tolist() == [1.0, 1.0, 1.0] and not g[1:].any()


BAD: dict[str, tuple[Callable[[Any], Any], str]] = {
    "quantile_method": (lambda v: np.quantile(v, 0.5, method="weibull"),
                        "method must be one of"),
    "nanquantile_weights": (lambda v: np.nanquantile(v, 0.5, weights=v), "unsupported arguments"),
    "quantile_range": (lambda v: np.quantile(v, 1.5), r"q must be in \[0, 1\]"),
    "percentile_range": (lambda v: np.percentile(v, -3), r"q must be in \[0, 100\]"),
    "median_empty": (lambda v: np.median(v[:, :0], axis=1), "median of an empty array"),
    "average_weights": (lambda v: np.average(v, weights=np.ones(3)), "do not fit"),
    "cov_dof": (lambda v: np.cov(v[:, :1]), "leave 0 degrees of freedom"),
    "vstack_one": (lambda v: np.vstack(v), "list or tuple of arrays"),
    "full_like_traced": (lambda v: np.full_like(v, v[0, 0]), "fill_value is a traced value"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_arguments_raise_program_errors(name: str) -> None:
    fn, message = BAD[name]
    with pytest.raises(ProgramError, match=message):
        lagrad.trace(fn, X)
