"""The worked example (docs/lagrangian.md) against its analytic derivative, through every path."""

from __future__ import annotations

import numpy as np
import pytest

import lagrad
from lagrad.cli import main
from lagrad.examples import worked_example, worked_example_derivative


@pytest.mark.parametrize("x", [-1.0, 0.0, 0.3, 0.5])
def test_gradient_matches_analytic(x: float) -> None:
    sol = worked_example().solve(x)
    exact = worked_example_derivative(x)
    assert abs(float(sol.grad()) - exact) <= 1e-12 * abs(exact)


@pytest.mark.parametrize("method", ["backsub", "spsolve", "dense"])
def test_every_method_gives_the_multipliers_of_math_md(method: str) -> None:
    x = 0.5
    sol = worked_example().solve(x)
    lam, info = sol.adjoint_system().solve(method=method)
    a = np.exp(x)
    c = a + a * a
    lam_c = np.exp(c) + np.cos(c)
    index = sol.adjoint_system().index
    expected = {"out": 1.0, "d": 1.0, "e": 1.0, "c": lam_c, "b": lam_c,
                "a": lam_c * (1 + 2 * a), "x": lam_c * (1 + 2 * a) * a}
    for name, value in expected.items():
        assert lam[index[name]][0] == pytest.approx(value, rel=1e-12)
    assert info.method == method
    assert info.residual < 1e-12


def test_multipliers_and_kkt() -> None:
    sol = worked_example().solve(0.5)
    lam = sol.multipliers()
    assert float(lam["x"]) == pytest.approx(worked_example_derivative(0.5), rel=1e-12)
    assert sol.lagrangian() == pytest.approx(float(sol.output), rel=1e-15)
    primal, dual = sol.kkt_residuals()
    assert primal <= 1e-12 and dual <= 1e-12
    perturbed = lam.vector + 1e-3
    assert sol.kkt_residuals(perturbed).dL_dz > 1e-6


def test_forward_mode_matches_reverse() -> None:
    sol = worked_example().solve(0.5)
    tangent = sol.tangent(1.0)
    assert float(tangent["out"]) == pytest.approx(float(sol.grad()), rel=1e-13)


def test_functional_api_agrees() -> None:
    def f(x):  # type: ignore[no-untyped-def]
        a = lagrad.exp(x)
        c = a + a ** 2
        return lagrad.exp(c) + lagrad.sin(c)
    assert float(lagrad.grad(f)(0.5)) == pytest.approx(worked_example_derivative(0.5), rel=1e-12)


def test_demo_prints_matrix_and_gradient(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "(I - J)^T lambda = e_n" in out
    assert f"{worked_example_derivative(0.5):.15g}" in out
    assert "KKT residuals" in out
