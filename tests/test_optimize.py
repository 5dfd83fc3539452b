"""lagrad.optimize: descent on the exact gradient, the quadratic penalty and the
augmented Lagrangian over (x, z, lambda), checked against closed forms and
finite differences."""

from __future__ import annotations

import numpy as np
import pytest

import lagrad
from lagrad.optimize import Relaxation
from lagrad.optimize.inner import minimize_inner
from lagrad.study.control import make_lqr, riccati

RNG = np.random.default_rng(3)
M = RNG.standard_normal((6, 3))
T = RNG.standard_normal(6)


def _least_squares(w):
    r = lagrad.tanh(M @ w) - 0.5 * np.tanh(T)
    return lagrad.sum(r * r)


def _net(w):
    return lagrad.tanh(M @ w)


def _loss(o):
    return lagrad.sum((o - 0.3) ** 2)


@pytest.fixture(scope="module")
def program():
    return lagrad.trace(_least_squares, np.zeros(3))


@pytest.mark.parametrize("jacobian", ["matvec", "sparse"])
def test_lagrangian_gradient_matches_finite_differences(program, jacobian):
    rel = Relaxation(program, jacobian=jacobian)
    z = program.solve(RNG.standard_normal(3)).z + 0.1 * RNG.standard_normal(rel.free.size)
    z[~rel.free] = 0.0
    lam = np.where(rel.defined, RNG.standard_normal(z.size), 0.0)

    def lagrangian(v):
        return rel.objective(v)[0] - lam @ rel.residual(v)

    g = rel.lagrangian_gradient(z, lam)
    eps = 1e-6
    fd = np.array([(lagrangian(z + eps * e) - lagrangian(z - eps * e)) / (2 * eps)
                   for e in np.eye(z.size)])
    assert np.allclose(g[rel.free], fd[rel.free], atol=1e-6)


def test_the_two_jacobian_modes_agree(program):
    z = program.solve(RNG.standard_normal(3)).z
    v = RNG.standard_normal(z.size)
    a, b = Relaxation(program, jacobian="sparse"), Relaxation(program, jacobian="matvec")
    v[~a.defined] = 0.0
    z[3:] += 0.1 * RNG.standard_normal(z.size - 3)  # a relaxed point
    assert np.allclose(a.rmatvec(z, v), b.rmatvec(z, v), atol=1e-12)


@pytest.mark.parametrize("method", ["lbfgs", "penalty", "augmented_lagrangian"])
def test_methods_reach_the_closed_form_minimum(program, method):
    # tanh(M w) = 0.5 tanh(T) has no exact solution; the reference is a dense
    # Gauss-Newton solve in numpy on the same least-squares problem
    w = np.zeros(3)
    for _ in range(50):
        r = np.tanh(M @ w) - 0.5 * np.tanh(T)
        jac = (1 - np.tanh(M @ w) ** 2)[:, None] * M
        w = w - np.linalg.lstsq(jac, r, rcond=None)[0]
    options = {"tol": 1e-8} if method != "lbfgs" else {"gtol": 1e-10}
    if method == "penalty":
        options = {"tol": 1e-5, "maxiter": 12}
    res = lagrad.optimize.minimize(program, np.zeros(3), method=method, **options)
    assert res.success, res.message
    assert np.allclose(res.x, w, atol=1e-4 if method == "penalty" else 1e-6)
    assert res.history[0].iteration == 0 and len(res.history) == res.nit + 1
    seconds = res.column("seconds")
    assert np.all(np.diff(seconds) >= 0)


def test_augmented_lagrangian_multipliers_solve_the_multiplier_system(program):
    res = lagrad.optimize.augmented_lagrangian(program, np.zeros(3), tol=1e-9)
    rel = Relaxation(program)
    _, _, exact = rel.multipliers(rel.flat_x(res.x))
    assert np.allclose(res.multipliers, exact, atol=1e-5)
    last = res.history[-1]
    assert last.violation <= 1e-9 and last.dL_dz < 1e-5 and last.dL_dx < 1e-5


def test_loss_on_a_non_scalar_output():
    net = lagrad.trace(_net, np.zeros(3))
    ref = lagrad.optimize.lbfgs(lagrad.trace(lambda w: _loss(_net(w)), np.zeros(3)),
                                np.zeros(3), gtol=1e-10)
    for method in ("lbfgs", "augmented_lagrangian"):
        res = lagrad.optimize.minimize(net, np.zeros(3), method=method, loss=_loss)
        assert res.success, res.message
        assert np.allclose(res.x, ref.x, atol=1e-5)
        assert res.fun == pytest.approx(ref.fun, abs=1e-9)


def test_gradient_descent_with_fixed_and_minibatch_inputs():
    rng = np.random.default_rng(0)
    data = rng.standard_normal((64, 3))
    w_true = np.array([1.0, -2.0, 0.5])
    target = data @ w_true
    p = lagrad.trace(lambda w, a, t: lagrad.mean((a @ w - t) ** 2), np.zeros(3),
                     np.zeros((16, 3)), np.zeros(16))
    names = [v.name for v in p.inputs]

    def batch(k):
        rows = slice(16 * (k % 4), 16 * (k % 4) + 16)
        return {names[1]: data[rows], names[2]: target[rows]}

    res = lagrad.optimize.gradient_descent(p, np.zeros(3), fixed=batch, learning_rate=0.2,
                                           momentum=0.5, maxiter=300)
    assert np.allclose(res.x, w_true, atol=1e-6)
    whole = lagrad.optimize.lbfgs(p, {names[0]: np.zeros(3)}, fixed=batch(1))
    assert np.allclose(whole.x, w_true, atol=1e-5)


def test_a_cyclic_program_is_relaxed_too():
    # z = 0.5 sin(z) + a, minimize (z - 1)^2 over a: the optimum is z = 1
    p = lagrad.Program()
    a = p.input("a")
    z = p.unknown("z")
    p.define(z, 0.5 * lagrad.sin(z) + a)
    p.output((z - 1.0) ** 2)
    res = lagrad.optimize.augmented_lagrangian(p, 0.0, tol=1e-10)
    assert res.success
    assert float(res.x) == pytest.approx(1.0 - 0.5 * np.sin(1.0), abs=1e-7)


def test_errors_name_the_problem(program):
    with pytest.raises(lagrad.OptionError, match="method='newton'"):
        lagrad.optimize.minimize(program, np.zeros(3), method="newton")
    with pytest.raises(lagrad.OptionError, match="jacobian"):
        lagrad.optimize.lbfgs(program, np.zeros(3), jacobian="dense")
    with pytest.raises(lagrad.ProgramError, match="pass a loss"):
        lagrad.optimize.lbfgs(lagrad.trace(_net, np.zeros(3)), np.zeros(3))
    with pytest.raises(lagrad.ProgramError, match="loss must return a scalar"):
        lagrad.optimize.lbfgs(lagrad.trace(_net, np.zeros(3)), np.zeros(3), loss=lambda o: o)
    with pytest.raises(lagrad.ProgramError, match="fixed input 'nope'"):
        lagrad.optimize.lbfgs(program, np.zeros(3), fixed={"nope": 1.0})
    with pytest.raises(lagrad.ProgramError, match="shape"):
        lagrad.optimize.lbfgs(program, np.zeros(4))
    with pytest.raises(lagrad.OptionError, match="penalty"):
        lagrad.optimize.quadratic_penalty(program, np.zeros(3), penalty=0.0)
    with pytest.raises(lagrad.OptionError, match="learning_rate"):
        lagrad.optimize.gradient_descent(program, np.zeros(3), learning_rate=-1.0)
    with pytest.raises(lagrad.OptionError, match="multipliers has 2 entries"):
        lagrad.optimize.augmented_lagrangian(program, np.zeros(3), multipliers=np.zeros(2))


def test_history_table_and_plot(tmp_path, program):
    pytest.importorskip("matplotlib")
    runs = [lagrad.optimize.minimize(program, np.zeros(3), method=m, maxiter=3)
            for m in ("gradient_descent", "augmented_lagrangian")]
    text = lagrad.optimize.format_history(runs[1])
    assert "||z-f(z)||" in text and len(text.splitlines()) == len(runs[1].history) + 2
    fig = lagrad.optimize.plot(runs, xaxis="seconds", path=tmp_path / "c.png", title="t")
    assert len(fig.axes) == 4 and (tmp_path / "c.png").stat().st_size > 0
    with pytest.raises(lagrad.OptionError, match="xaxis"):
        lagrad.optimize.plot(runs, xaxis="time")


@pytest.mark.parametrize("method", ["penalty", "augmented_lagrangian"])
def test_a_saturating_tanh_is_not_driven_away(method):
    # with the exact multipliers at x = 0 and a weak mu, the first inner
    # minimization used to push tanh(x) to 1 (x ~ 18) where the gradient vanishes
    prog = lagrad.trace(lambda x: lagrad.sum((lagrad.tanh(x) - 0.5) ** 2), np.zeros(3))
    res = lagrad.optimize.minimize(prog, np.zeros(3), method=method)
    assert res.success, res.message
    assert res.fun < 1e-8
    assert np.allclose(res.x, np.arctanh(0.5), atol=1e-4)


def test_augmented_lagrangian_default_call_reaches_the_riccati_cost():
    # T = 30: a long chain whose relaxed inner problems are badly conditioned over z;
    # the default start (the exact multipliers at u = 0, mu = 1) used to wander off
    p = make_lqr(horizon=30)
    u_star, cost = riccati(p)
    res = lagrad.optimize.augmented_lagrangian(p.program, np.zeros((30, 1)))
    assert res.success, res.message
    assert res.fun == pytest.approx(cost, rel=1e-9)
    assert np.max(np.abs(res.x - u_star)) < 1e-4
    last = res.history[-1]
    assert last.violation <= 1e-6 and last.penalty <= 1e6  # mu stays bounded


def test_preconditioned_inner_minimization_reaches_the_same_point_sooner():
    # both coordinate systems minimize the same L_mu over (x, z); at lambda = 0 its
    # minimizer has a zero gradient in the free positions
    p = make_lqr(horizon=4)
    rel = lagrad.optimize.Relaxation(p.program)
    z = p.program.solve(np.zeros((4, 1))).z
    lam, mu = np.zeros_like(z), 100.0
    points, counts = [], []
    for precondition in (True, False):
        out, evaluations = minimize_inner(rel, z, lam, mu, lagrad.optimize.INNER_OPTIONS,
                                          precondition=precondition)
        c = rel.residual(out)
        g = rel.objective(out)[1] - rel.rmatvec(out, -mu * c, c)
        assert np.max(np.abs(g[rel.free])) < (1e-6 if precondition else 1e-4)
        points.append(out)
        counts.append(evaluations)
    assert np.allclose(points[0], points[1], atol=1e-5)
    assert counts[0] < counts[1]


def test_success_needs_a_kkt_point(program):
    # an inner minimization cut short leaves the violation within tol but the
    # Lagrangian's gradient large: that is not a success
    res = lagrad.optimize.augmented_lagrangian(program, np.zeros(3), maxiter=1, tol=1.0,
                                               inner_options={"maxiter": 1})
    last = res.history[-1]
    assert last.violation <= 1.0 and max(last.dL_dz, last.dL_dx) > 1e-3
    assert not res.success


def test_gradient_descent_that_diverges_is_not_a_success():
    """A learning rate too large for the curvature (here 1.5 on (x - 3)^2,
    whose steps multiply the error by -2) took all its steps with finite
    losses and reported success while the loss reached 2e31."""
    p = lagrad.trace(lambda x: lagrad.sum((x - 3.0) ** 2), np.zeros(2))
    bad = lagrad.optimize.gradient_descent(p, np.zeros(2), learning_rate=1.5, maxiter=50)
    assert not bad.success and "lower learning_rate" in bad.message
    assert bad.fun > bad.history[0].loss
    slow = lagrad.optimize.gradient_descent(p, np.zeros(2), learning_rate=0.01, maxiter=5)
    assert slow.success and slow.fun < slow.history[0].loss  # steps taken, downhill
    good = lagrad.optimize.gradient_descent(p, np.zeros(2), learning_rate=0.25, maxiter=50)
    assert good.success and np.allclose(good.x, 3.0)
