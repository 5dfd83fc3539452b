"""Backward modes of cyclic blocks (issue 13, item 4): "implicit" (exact),
"unrolled" / "neumann" (K terms of the Neumann series), "phantom" / "jfb"
(one term), each with an a-posteriori error estimate, checked against the
exact implicit gradient, finite differences and the unrolled program."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import lagrad
from lagrad import OptionError
from lagrad.examples import deq, pagerank
from lagrad.options import BackwardOptions
from lagrad.solve.results import Status

EXAMPLES = {"deq": deq, "pagerank": pagerank}
KS = (1, 2, 3, 5, 10, 20)  # deq reaches rounding error near K = 40


def _unknown(example):
    return next(v for v in example.program.variables if v.kind == "unknown")


@pytest.fixture(scope="module", params=sorted(EXAMPLES))
def case(request):
    example = EXAMPLES[request.param]()
    sol = example.solve()
    u = _unknown(example)
    exact = np.ravel(sol.multipliers()[u])
    rate = max(abs(np.linalg.eigvals(_reduced_matrix(example, sol))))
    return example, u, exact, rate


def _reduced_matrix(example, sol):
    """dG/dz_U of the example's block, dense, from the exact Jacobian J_UU + J_UI
    (I - J_II)^-1 J_IU (assembled from the whole-system matrix)."""
    system = sol.adjoint_system()
    j = system.jacobian.toarray()
    block = next(b for b in example.program.blocks if b.cyclic)
    pos = system.block_positions(block)
    u = _unknown(example)
    upos = np.arange(system.index[u].start, system.index[u].stop)
    is_u = np.isin(pos, upos)
    uu, ii = pos[is_u], pos[~is_u]
    solve_i = np.linalg.solve(np.eye(ii.size) - j[np.ix_(ii, ii)], j[np.ix_(ii, uu)])
    return j[np.ix_(uu, uu)] + j[np.ix_(uu, ii)] @ solve_i


def _truncated(example, mode):
    sol = example.solve(backward=mode)
    lam = np.ravel(sol.multipliers()[_unknown(example)])
    (result,) = sol.adjoint_diagnostics
    return sol, lam, result


@pytest.mark.parametrize("k", KS)
def test_error_estimate_bounds_the_true_error(case, k):
    example, _, exact, _ = case
    _, lam, result = _truncated(example, ("unrolled", k))
    error = np.linalg.norm(lam - exact)
    assert result.status is Status.TRUNCATED and result.method == "unrolled"
    assert result.extra["steps"] == k
    assert error <= result.extra["error_estimate"]
    assert result.extra["error_estimate"] <= 20 * error  # an estimate, not a blanket bound


def test_error_decreases_like_rho_to_the_k(case):
    example, _, exact, rho = case
    errors = [np.linalg.norm(_truncated(example, ("neumann", k))[1] - exact)
              for k in (5, 10, 20)]
    observed = (errors[2] / errors[1]) ** (1 / 10)
    assert abs(observed - rho) < 0.03 * rho
    assert errors[0] > errors[1] > errors[2]


def test_unrolled_and_neumann_agree_and_neumann_stops_when_converged(case):
    example, _, exact, _ = case
    _, a, _ = _truncated(example, ("unrolled", 7))
    _, b, _ = _truncated(example, ("neumann", 7))
    np.testing.assert_allclose(a, b, rtol=1e-13, atol=0)
    sol, lam, result = _truncated(example, ("neumann", 5000))
    assert result.status is Status.CONVERGED and result.extra["steps"] < 5000
    np.testing.assert_allclose(lam, exact, rtol=1e-10, atol=1e-12)
    assert example.gradient_error(sol) < 1e-9


@pytest.mark.parametrize("mode", ["phantom", "jfb"])
def test_phantom_is_one_term_and_cheap(case, mode):
    example, _, exact, _ = case
    sol, lam, result = _truncated(example, mode)
    _, one, _ = _truncated(example, ("unrolled", 1))
    np.testing.assert_array_equal(lam, one)
    assert result.extra["steps"] == 1
    gradient_products = result.extra["products"] - result.extra["estimate_products"]
    assert gradient_products == 1  # the reduced right-hand side c (the interior is
    # recovered by back-substitution through it, without a product)
    exact_products = example.solve().adjoint_diagnostics[0].extra["products"]
    assert result.extra["products"] < exact_products
    assert np.linalg.norm(lam - exact) <= result.extra["error_estimate"]


def test_implicit_is_the_default_and_exact(case):
    example, _, exact, _ = case
    sol, lam, result = _truncated(example, "implicit")
    np.testing.assert_array_equal(lam, exact)
    assert result.status is Status.CONVERGED and "error_estimate" not in result.extra
    assert example.gradient_error(sol) < 1e-8


def test_gradient_error_follows_the_multiplier_error():
    example = deq()
    errors = [example.gradient_error(example.solve(backward=("unrolled", k))) for k in KS]
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert errors[0] > 0.1 and errors[-1] < 1e-6  # K = 20 at rate 0.47


# --------------------------------------------- unrolled = the unrolled program

def _scalar_program(init=None, backward=None):
    p = lagrad.Program()
    a = p.input("a")
    z = p.unknown("z", init=init, backward=backward)
    p.define(z, 0.5 * lagrad.cos(z) + a * z * 0.3 + a)
    p.output(z * z + a)
    return p


@pytest.mark.parametrize("k", [1, 2, 5])
def test_unrolled_equals_backprop_through_k_steps_from_the_fixed_point(k):
    a = 0.7
    zstar = float(_scalar_program().solve(a)["z"])
    got = float(_scalar_program(backward=("unrolled", k)).solve(a).grad())
    # the acyclic program of K steps started at the fixed point (a constant)
    reference = float(lagrad.unroll(_scalar_program(init=zstar), k).solve(a).grad())
    assert got == pytest.approx(reference, rel=1e-13)


def test_exact_mode_matches_finite_differences():
    p = _scalar_program()
    a, h = 0.7, 1e-6
    fd = (float(p.solve(a + h).output) - float(p.solve(a - h).output)) / (2 * h)
    assert float(p.solve(a, backward="implicit").grad()) == pytest.approx(fd, rel=1e-8)
    assert float(p.solve(a, backward=("neumann", 3)).grad()) != pytest.approx(fd, rel=1e-3)


# ------------------------------------------------------ where modes are chosen

def test_declared_mode_under_the_functional_api():
    def f(x, mode):
        z = lagrad.fixed_point(lambda z, x: 0.5 * lagrad.tanh(z) + x, 0.0, x, backward=mode)
        return z * z

    exact = lagrad.grad(lambda x: f(x, None))(0.3)
    approx = lagrad.grad(lambda x: f(x, "phantom"))(0.3)
    series = lagrad.grad(lambda x: f(x, ("neumann", 60)))(0.3)
    assert abs(approx - exact) > 1e-3
    assert series == pytest.approx(exact, rel=1e-12)


def test_root_takes_a_backward_mode():
    def cube_root(a, mode):  # z <- z - g(z) contracts near the root: dg/dz = 3 z^2 / 3 = 1.33
        return lagrad.root(lambda z, a: (z ** 3 - a) / 3.0, 1.0, a, backward=mode)

    exact = lagrad.grad(lambda a: cube_root(a, None))(1.0)
    series = lagrad.grad(lambda a: cube_root(a, ("neumann", 200)))(1.0)
    assert exact == pytest.approx(1 / 3, rel=1e-12)
    assert series == pytest.approx(exact, rel=1e-10)


def test_solve_option_overrides_the_declared_mode_and_leaves_tangents_exact():
    p = _scalar_program(backward="phantom")
    exact = float(_scalar_program().solve(0.7).grad())
    assert float(p.solve(0.7).grad()) != pytest.approx(exact, rel=1e-3)
    assert float(p.solve(0.7, backward="implicit").grad()) == pytest.approx(exact, rel=1e-13)
    tangent = p.solve(0.7).tangent(1.0)  # a backward mode changes the adjoint only
    assert float(tangent[p.output_variable]) == pytest.approx(exact, rel=1e-12)


def test_named_block_methods_take_k_as_maxiter():
    example = deq()
    sol = example.solve()
    system = sol.adjoint_system()
    x, info = system.solve("unrolled", maxiter=4)
    (result,) = info.blocks
    assert result.method == "unrolled" and result.extra["steps"] == 4
    y = example.solve(backward=("unrolled", 4)).multipliers().vector
    np.testing.assert_array_equal(x, y)


def test_groups_of_same_structure_blocks_take_the_mode_block_by_block():
    def f(x, mode):
        total = 0.0
        for k in range(5):
            total = total + lagrad.fixed_point(lambda z, x: 0.4 * lagrad.sin(z) + x, 0.0,
                                               x * (k + 1.0), backward=mode)
        return total

    exact = lagrad.grad(lambda x: f(x, None))(0.2)
    program = lagrad.trace(lambda x: f(x, "phantom"), 0.2)
    sol = program.solve(0.2)
    assert len(sol.adjoint_diagnostics) == 5
    assert {r.status for r in sol.adjoint_diagnostics} == {Status.TRUNCATED}
    assert abs(float(sol.grad()) - exact) > 1e-3
    series = lagrad.grad(lambda x: f(x, ("neumann", 100)))(0.2)
    assert series == pytest.approx(exact, rel=1e-12)


def test_a_diverging_series_raises_naming_the_block():
    p = lagrad.Program()
    a = p.input("a")
    z = p.unknown("z", backward=("unrolled", 2000))
    p.root(z, 3.0 * z - a)  # z <- z - g(z) = -2 z + a: the series doubles each term
    p.output(z)
    with pytest.raises(lagrad.ConvergenceError, match="overflowed.*implicit"):
        p.solve(1.0).grad()


@pytest.mark.parametrize("bad, match", [
    ("newton", "unknown backward mode"),
    (("unrolled", 0), "at least 1"),
    (("phantom", 3), "one step"),
    (("implicit", 5), "takes no steps"),
    (3, "backward must be"),
    (("neumann", 2.5), "integer"),
])
def test_bad_modes_raise_option_error_at_the_call(bad, match):
    with pytest.raises(OptionError, match=match):
        lagrad.Program().unknown("z", backward=bad)
    with pytest.raises(OptionError, match=match):
        _scalar_program().solve(0.7, backward=bad)
    with pytest.raises(OptionError, match=match):
        lagrad.fixed_point(lambda z, x: 0.5 * z + x, 0.0, 1.0, backward=bad)


def test_backward_options_defaults():
    assert BackwardOptions("neumann").terms == 10
    assert BackwardOptions("jfb").terms == 1
    assert not BackwardOptions().truncated
    assert BackwardOptions.resolve(("unrolled", 3), "here") == BackwardOptions("unrolled", 3)


def test_study_table_has_every_mode_and_error_falls_with_cost():
    from lagrad.study.examples import compare_backward

    lines: list[str] = []
    rows = compare_backward(deq().solve(), (2, 10, 20), lines.append)
    assert not lines  # no mode failed
    assert [r.mode for r in rows] == (["implicit", "phantom", "jfb"] + ["unrolled"] * 3
                                      + ["neumann"] * 3)
    assert rows[0].error == 0 and rows[1].products == rows[2].products == 1
    assert rows[1].error == rows[2].error > 0  # two names of one mode
    unrolled = [r for r in rows if r.mode == "unrolled"]
    assert [r.products for r in unrolled] == [2, 10, 20]  # K sweeps
    assert unrolled[0].error > unrolled[1].error > unrolled[2].error


def test_the_functional_api_takes_a_backward_mode():
    """grad(f, solve_options={"backward": ...}) chooses the mode for every block
    of each call; a bad mode raises OptionError when the transform is made."""
    def layer(x):
        return lagrad.fixed_point(lambda z, x: 0.5 * lagrad.tanh(z) + x, 0.0, x) ** 2
    exact = lagrad.grad(layer)(0.3)
    phantom = lagrad.grad(layer, solve_options={"backward": "phantom"})(0.3)
    unrolled = lagrad.grad(layer, solve_options={"backward": ("unrolled", 20)})(0.3)
    assert abs(phantom - exact) > 0.1 * abs(exact)  # one term: far off
    assert unrolled == pytest.approx(exact, rel=1e-7)  # rho^20 ~ 2e-9
    with pytest.raises(lagrad.OptionError, match="backward"):
        lagrad.grad(layer, solve_options={"backward": ("neumann", 0)})


def _truncated_layer() -> tuple[Any, np.ndarray]:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 3))
    w *= 0.6 / np.linalg.norm(w, 2)

    def fn(x: Any) -> Any:
        z = lagrad.fixed_point(lambda z, x: lagrad.tanh(w @ z + x), np.zeros(3), x,
                               backward=("unrolled", 2))
        return z * z
    return fn, rng.standard_normal(3)


def test_a_block_of_seeds_takes_the_declared_mode_like_one_seed():
    """A system with several cotangents, and vmap of a pullback (one solve
    with k right-hand sides), gave the exact multipliers where each single
    cotangent gave the declared truncated ones (off by ~4e-2 here)."""
    fn, x = _truncated_layer()
    sol = lagrad.trace(fn, x).solve(x)
    many, _ = sol.adjoint_system(np.eye(3)).solve()
    for i in range(3):
        one, _ = sol.adjoint_system(np.eye(3)[i]).solve()
        np.testing.assert_array_equal(many[:, i], one)
    _, pullback = lagrad.vjp(fn, x)
    rows = lagrad.vmap(pullback)(np.eye(3))[0]
    for i in range(3):
        np.testing.assert_allclose(rows[i], pullback(np.eye(3)[i])[0], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(rows, lagrad.jacrev(fn)(x), rtol=1e-14, atol=1e-15)
    assert not np.allclose(rows, lagrad.jacfwd(fn)(x), atol=1e-3)  # tangents stay exact


def test_a_sparse_jacobian_refuses_a_truncated_adjoint():
    """The coloured sparse adjoint solves do not apply backward modes: they
    would give the exact rows where the dense reverse Jacobian gives the
    truncated ones; forward mode (exact tangents, as documented) is allowed."""
    fn, x = _truncated_layer()
    for mode in ("auto", "reverse"):
        with pytest.raises(lagrad.OptionError, match="unknown 'z0' has the truncated backward "
                                                     "mode 'unrolled'.*mode='forward'"):
            lagrad.jacobian(fn, mode=mode, sparse=True)(x)
    forward = lagrad.jacobian(fn, mode="forward", sparse=True)(x)
    np.testing.assert_allclose(forward.toarray(), lagrad.jacfwd(fn)(x), rtol=1e-13, atol=1e-15)
    plain = lambda x: lagrad.fixed_point(  # noqa: E731
        lambda z, x: lagrad.tanh(z * 0.5 + x), np.zeros(3), x)
    with pytest.raises(lagrad.OptionError, match="the solve has the truncated backward mode"):
        lagrad.jacobian(plain, sparse=True, solve_options={"backward": "phantom"})(x)


def test_second_derivatives_refuse_a_truncated_adjoint():
    """hessian and hvp differentiate the exact multiplier equations; with a
    truncated block they mixed the truncated multipliers in and gave numbers
    that were neither the exact Hessian nor the derivative of the truncated
    gradient (0.07 off both here). They raise; 'implicit' gives the exact one."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 3))
    w *= 0.6 / np.linalg.norm(w, 2)

    def f(x: Any, mode: Any = ("unrolled", 2)) -> Any:
        z = lagrad.fixed_point(lambda z, x: lagrad.tanh(w @ z + x), np.zeros(3), x,
                               backward=mode)
        return lagrad.sum(z * z * z)
    x = rng.standard_normal(3)
    with pytest.raises(OptionError, match="second derivatives.*unknown 'z0' has the truncated"):
        lagrad.hessian(f)(x)
    with pytest.raises(OptionError, match="backward='implicit'"):
        lagrad.hvp(f, (x,), (np.ones(3),))
    with pytest.raises(OptionError, match="the solve has the truncated backward mode 'phantom'"):
        lagrad.hessian(lambda x: f(x, None), solve_options={"backward": "phantom"})(x)
    exact = lagrad.hessian(lambda x: f(x, None))(x)
    implicit = lagrad.hessian(f, solve_options={"backward": "implicit"})(x)
    np.testing.assert_allclose(implicit, exact, rtol=1e-13, atol=1e-14)
    g = lagrad.grad(lambda x: f(x, None))
    fd = np.array([(g(x + 1e-6 * e) - g(x - 1e-6 * e)) / 2e-6 for e in np.eye(3)])
    np.testing.assert_allclose(exact, fd, rtol=1e-6, atol=1e-7)
