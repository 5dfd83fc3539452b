"""np.interp on traced values (``lagrad.ir.interpolate``): numpy's value; the
gradient in x and fp, the Hessian and both modes' Jacobians against central
differences, off the knots; the segment found again at every solve; vmap;
the errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import lagrad
from lagrad import ProgramError

H = 1e-6
XP = np.array([-1.0, 0.0, 0.5, 2.0, 3.0])
FP = np.array([1.0, -0.5, 2.0, 0.3, 1.1])
# below, inside every segment, above; no point within H of a knot
X = np.array([-2.0, -0.7, -0.3, 0.2, 0.45, 0.7, 1.9, 2.5, 2.99, 4.0])
ENDS = [(None, None), (5.0, -3.0), (0.25, None)]


def _loss(left: Any, right: Any) -> Any:
    def loss(x: Any, fp: Any) -> Any:
        y = np.interp(x, XP, fp, left=left, right=right)
        return np.sum(np.sin(y) * x) + np.sum(y * y)
    return loss


def _fd(fn: Any, args: tuple[np.ndarray, ...], k: int) -> np.ndarray:
    """Central differences of fn in argument k (one column per entry)."""
    cols = []
    for e in np.eye(args[k].size):
        plus = [a + H * e.reshape(a.shape) if i == k else a for i, a in enumerate(args)]
        minus = [a - H * e.reshape(a.shape) if i == k else a for i, a in enumerate(args)]
        cols.append((np.asarray(fn(*plus)) - np.asarray(fn(*minus))) / (2 * H))
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize(("left", "right"), ENDS)
def test_value_gradient_and_jacobians_match_numpy_and_differences(left: Any, right: Any) -> None:
    loss = _loss(left, right)
    assert lagrad.trace(loss, X, FP).solve(X, FP).output == pytest.approx(loss(X, FP),
                                                                           rel=1e-15)
    gx, gf = lagrad.grad(loss, argnums=(0, 1))(X, FP)
    np.testing.assert_allclose(gx, _fd(loss, (X, FP), 0), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gf, _fd(loss, (X, FP), 1), rtol=1e-6, atol=1e-8)

    def values(x: Any, fp: Any) -> Any:
        return np.interp(x, XP, fp, left=left, right=right)
    for mode in ("reverse", "forward"):
        jx, jf = lagrad.jacobian(values, argnums=(0, 1), mode=mode)(X, FP)
        np.testing.assert_allclose(jx, _fd(values, (X, FP), 0), rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(jf, _fd(values, (X, FP), 1), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize(("left", "right"), ENDS)
def test_hessian_matches_differences_of_the_gradient(left: Any, right: Any) -> None:
    loss = _loss(left, right)

    def joint(z: Any) -> Any:
        return loss(z[:X.size], z[X.size:])
    z = np.concatenate([X, FP])
    np.testing.assert_allclose(lagrad.hessian(joint)(z), _fd(lagrad.grad(joint), (z,), 0),
                               rtol=1e-5, atol=1e-7)


def test_the_segment_is_found_again_at_every_solve() -> None:
    program = lagrad.trace(lambda x, fp: np.interp(x, XP, fp) @ np.arange(1.0, 11.0), X, FP)
    for x in (X, X[::-1] + 0.13, np.full(10, 2.2)):
        sol = program.solve(x, FP * 1.5)
        assert sol.output == pytest.approx(np.interp(x, XP, FP * 1.5) @ np.arange(1.0, 11.0),
                                           rel=1e-15)
        slope = np.diff(FP * 1.5) / np.diff(XP)
        inside = (x >= XP[0]) & (x <= XP[-1])
        j = np.clip(np.searchsorted(XP, x, side="right") - 1, 0, XP.size - 2)
        np.testing.assert_allclose(sol.grad()[0], np.where(inside, slope[j], 0.0)
                                   * np.arange(1.0, 11.0), rtol=1e-14)


def test_at_a_knot_the_right_segment_and_at_the_end_the_last() -> None:
    def slope(x: float) -> float:
        return float(lagrad.grad(lambda v: np.interp(v, XP, FP))(x))
    assert slope(0.0) == pytest.approx((FP[2] - FP[1]) / (XP[2] - XP[1]), rel=1e-15)
    assert slope(3.0) == pytest.approx((FP[4] - FP[3]) / (XP[4] - XP[3]), rel=1e-15)
    assert lagrad.grad(lambda v: np.interp(v, XP, FP))(-1.5) == 0.0
    np.testing.assert_array_equal(lagrad.grad(lambda f: np.interp(3.5, XP, f))(FP),
                                  [0.0, 0.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(lagrad.grad(lambda f: np.interp(9.0, [1.0], f))(np.ones(1)),
                                  [1.0])


def test_vmap_and_constant_x() -> None:
    xs = np.stack([X, X * 0.5, X[::-1]])

    def loss(x: Any) -> Any:
        return np.sum(np.interp(x, XP, FP) ** 2)
    np.testing.assert_allclose(lagrad.vmap(lagrad.grad(loss))(xs),
                               [lagrad.grad(loss)(x) for x in xs], rtol=1e-14)
    g = lagrad.grad(lambda fp: np.sum(np.interp(X, XP, fp)))(FP)
    np.testing.assert_allclose(g, _fd(lambda fp: np.sum(np.interp(X, XP, fp)), (FP,), 0),
                               rtol=1e-7)


BAD = {
    "xp traced": (lambda v: np.interp(0.5, v, FP), "xp must be a constant"),
    "period": (lambda v: np.interp(v, XP, FP, period=2.0), "period"),
    "decreasing": (lambda v: np.interp(v, XP[::-1], FP), "strictly increasing"),
    "repeated": (lambda v: np.interp(v, [0.0, 0.0, 1.0, 2.0, 3.0], FP), "strictly increasing"),
    "fp shape": (lambda v: np.interp(v, XP, v), "one value per point"),
    "left traced": (lambda v: np.interp(0.5, XP, FP + v, left=v[0]), "left must be a constant"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_arguments_raise_program_errors(name: str) -> None:
    fn, message = BAD[name]
    with pytest.raises(ProgramError, match=message):
        lagrad.trace(fn, np.linspace(0.0, 1.0, 5)[:3] if name == "fp shape" else FP)
