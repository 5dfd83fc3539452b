"""lagrad.check_grad and lagrad.taylor_test: they pass on right derivatives
and raise GradientCheckError on wrong ones (custom primitives with a wrong
rule: an elementwise partial, and a structural VJP that disagrees with its JVP).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

import lagrad
from lagrad import GradientCheckError, Primitive

# ----------------------------------------------------------- primitives

def _same_shape(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(np.broadcast_shapes(*shapes))


def _make_sin(partial: Any, name: str) -> Primitive:
    return Primitive(name, np.sin, _same_shape, partials=lambda k, ans, x: partial(x))


#: sin with its right derivative, as a user would define it
good_sin = _make_sin(np.cos, "good_sin")
#: sin whose partial is +sin instead of cos: forward and reverse agree (both
#: derive from the partial) but disagree with finite differences
bad_sin = _make_sin(np.sin, "bad_sin")


def _cumsum_jvp(ts: Any, ans: Any, x: Any) -> Any:
    return np.cumsum(ts[0])


def _cumsum_vjp_right(k: int, g: Any, ans: Any, x: Any) -> Any:
    # out_i = sum_{j <= i} x_j  gives  dx_j = sum_{i >= j} g_i
    return np.cumsum(g[::-1])[::-1]


def _cumsum_vjp_wrong(k: int, g: Any, ans: Any, x: Any) -> Any:
    return np.cumsum(g)  # the transpose forgotten


def _cumsum_jacobian(k: int, ans: Any, x: Any) -> Any:
    return np.tril(np.ones((np.size(x), np.size(x))))


def _make_cumsum(vjp: Any, name: str) -> Primitive:
    return Primitive(name, np.cumsum, lambda s: (int(np.prod(s)),), vjp=vjp, jvp=_cumsum_jvp,
                     jacobian=_cumsum_jacobian)


good_cumsum = _make_cumsum(_cumsum_vjp_right, "good_cumsum")
#: structural primitive whose VJP is wrong while its JVP (and Jacobian) are right
bad_cumsum = _make_cumsum(_cumsum_vjp_wrong, "bad_cumsum")

W = np.array([0.3, -1.2, 0.8, 2.0])


def f_sin(sin: Primitive) -> Any:
    return lambda x: (sin(x) * x).sum() + sin(x[0])


def f_cumsum(cumsum: Primitive) -> Any:
    return lambda x: lagrad.sum(lagrad.tanh(cumsum(x)) * W)


X = np.array([0.4, -0.7, 1.1, 0.2])


# ------------------------------------------------------------- check_grad

def test_check_grad_one_argument() -> None:
    err = lagrad.check_grad(lambda x: lagrad.sum(lagrad.tanh(x) * lagrad.exp(x)), X)
    assert isinstance(err, float) and 0.0 <= err < 1e-6


def test_check_grad_scalar_argument() -> None:
    assert lagrad.check_grad(lambda x: lagrad.sin(x) * x ** 3, 0.7) < 1e-6


def test_check_grad_several_arguments() -> None:
    rng = np.random.default_rng(0)
    A, b = rng.standard_normal((4, 3)), rng.standard_normal(3)

    def f(x: Any, A: Any, b: Any) -> Any:
        return lagrad.logsumexp(lagrad.tanh(x @ A + b)) + lagrad.sum(A * A) * 0.1

    assert lagrad.check_grad(f, X, A, b) < 1e-6


@pytest.mark.parametrize("fn, args", [
    (lambda x: lagrad.tanh(x) * 2.0, (X,)),  # vector output
    (lambda x, A: lagrad.sigmoid(x @ A), (X, np.arange(12.0).reshape(4, 3) / 10)),
    (lambda A: lagrad.softmax(A, axis=0), (np.arange(6.0).reshape(2, 3) / 5,)),  # matrix
    (lambda x: lagrad.stack([x, lagrad.sin(x)]), (X,)),
], ids=["vector", "matmul", "softmax-matrix", "stack"])
def test_check_grad_array_outputs(fn: Any, args: tuple[Any, ...]) -> None:
    assert lagrad.check_grad(fn, *args) < 1e-6


def test_check_grad_right_custom_primitives_pass() -> None:
    """The control for the tests below: the same primitives with right rules pass."""
    assert lagrad.check_grad(f_sin(good_sin), X) < 1e-6
    assert lagrad.check_grad(f_cumsum(good_cumsum), X) < 1e-6
    assert lagrad.check_grad(lambda x: good_cumsum(x) * 2.0, X) < 1e-6


def test_check_grad_raises_for_a_wrong_partial() -> None:
    with pytest.raises(GradientCheckError, match="central differences"):
        lagrad.check_grad(f_sin(bad_sin), X)
    with pytest.raises(GradientCheckError):  # array output as well
        lagrad.check_grad(lambda x: bad_sin(x) * 3.0, X)
    with pytest.raises(AssertionError):  # GradientCheckError is an AssertionError
        lagrad.check_grad(lambda x: bad_sin(x), 0.3)


def test_check_grad_raises_when_reverse_and_forward_disagree() -> None:
    with pytest.raises(GradientCheckError, match="forward mode"):
        lagrad.check_grad(f_cumsum(bad_cumsum), X)
    with pytest.raises(GradientCheckError, match="forward mode"):
        lagrad.check_grad(lambda x: bad_cumsum(x) * 2.0, X)


def test_wrong_vjp_is_also_caught_by_solver_agreement() -> None:
    """Back-substitution uses the VJP, the direct solvers the assembled J (from
    the Jacobian rule): a wrong VJP makes them disagree, and the direct
    solvers, which check their solution through the VJP rules, say so."""
    program = lagrad.trace(f_cumsum(bad_cumsum), X)
    sol = program.solve(X)
    for method in ("spsolve", "dense"):
        with pytest.raises(lagrad.ConvergenceError, match="Jacobian rules.*disagrees with "
                                                          "their VJP/JVP rules"):
            sol.grad(method=method)
    assert np.all(np.isfinite(sol.grad(method="backsub")))  # the VJP's (wrong) answer
    good = lagrad.trace(f_cumsum(good_cumsum), X).solve(X)
    np.testing.assert_allclose(good.grad(method="backsub"), good.grad(method="spsolve"),
                               rtol=1e-12)


def test_check_grad_worst_error_reflects_tolerance() -> None:
    """A loose tolerance lets a wrong rule through, and the returned worst
    relative error then says how wrong it is."""
    err = lagrad.check_grad(f_sin(bad_sin), X, rtol=1e3, atol=1e3)
    assert err > 1e-2


# ------------------------------------------------------------- taylor_test

def _table(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines()]


def test_taylor_test_orders_two_for_a_right_gradient(capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(1)
    d = rng.standard_normal(X.shape)
    orders = lagrad.taylor_test(lambda x: lagrad.sum(lagrad.tanh(x) * lagrad.exp(x)), X, d)
    assert orders.size >= 3
    np.testing.assert_allclose(orders, 2.0, atol=0.15)
    assert abs(orders[-1] - 2.0) < 0.05
    rows = _table(capsys.readouterr().out)
    assert rows[0] == ["h", "remainder", "order"]
    assert len(rows) == 1 + 7  # header and h0 / 2^k for k = 0..6
    printed = [float(r[2]) for r in rows[1:] if len(r) == 3]
    np.testing.assert_allclose(printed, orders, atol=1e-3)


def test_taylor_test_custom_primitive(capsys: pytest.CaptureFixture[str]) -> None:
    orders = lagrad.taylor_test(f_sin(good_sin), X, np.ones(4), verbose=False)
    assert abs(orders[-1] - 2.0) < 0.05
    assert capsys.readouterr().out == ""


def test_taylor_test_scalar() -> None:
    orders = lagrad.taylor_test(lambda x: lagrad.sin(x) * x, 0.8, 1.0, verbose=False)
    assert abs(orders[-1] - 2.0) < 0.05


def test_taylor_test_raises_for_a_wrong_gradient(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(GradientCheckError, match="order") as info:
        lagrad.taylor_test(f_sin(bad_sin), X, np.ones(4))
    reported = float(re.search(r"order (\d+\.\d+)", str(info.value)).group(1))  # type: ignore
    assert abs(reported - 1.0) < 0.1
    assert "remainder" in capsys.readouterr().out  # the table is printed before raising
    orders = lagrad.taylor_test(f_sin(bad_sin), X, np.ones(4), min_order=0.0, verbose=False)
    np.testing.assert_allclose(orders, 1.0, atol=0.1)  # a wrong gradient leaves order 1


def test_taylor_test_raises_for_a_wrong_vjp() -> None:
    with pytest.raises(GradientCheckError):
        lagrad.taylor_test(f_cumsum(bad_cumsum), X, np.array([1.0, -0.5, 0.3, 2.0]),
                           verbose=False)
