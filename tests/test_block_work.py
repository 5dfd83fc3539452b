"""How much work a large contracting block costs: the default forward and
adjoint solves of a DEQ layer make no evaluation or product beyond the
iterations themselves, and the gradient still matches a dense reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import lagrad
from lagrad.compile.schedule import CyclicBlock
from lagrad.examples import deq
from lagrad.solve import neumann, nonlinear
from lagrad.solve.bound import bind_pullbacks, bind_runs, run_all
from lagrad.solve.linsolve import Substitution


def test_deq_adjoint_makes_one_product_per_iteration() -> None:
    ex = deq(n=300, d=7, seed=3)
    sol = ex.solve()
    assert ex.gradient_error(sol) < 1e-10
    (block,) = sol.adjoint_diagnostics
    assert block.method == "fixed_point"
    # the series' iterations only: no product for an interior rhs that is zero,
    # none to recover the interior, none for the residual check
    assert block.extra["products"] == block.iterations + 1
    assert block.residual <= 1e-13


def test_deq_forward_skips_the_final_evaluation(monkeypatch) -> None:
    ex = deq(n=300, d=7, seed=3)
    calls = [0]
    original = nonlinear.BlockMap.bind

    def count(first):
        def call():
            calls[0] += 1
            first()
        return call

    def counted(self):  # every evaluation of G runs the bound calls, the first one once
        fresh = self.calls is None
        z = original(self)
        if fresh:
            self.calls[0] = count(self.calls[0])
        return z
    monkeypatch.setattr(nonlinear.BlockMap, "bind", counted)
    sol = ex.solve()
    (forward,) = sol.diagnostics.values()
    assert forward.method == "fixed_point"
    # one product W @ z per iteration, but the first: from z = 0 it is zero
    assert calls[0] == forward.iterations - 1
    assert ex.gradient_error(sol) < 1e-10
    assert sol.kkt_residuals().dL_dlambda < 1e-12  # the interior kept at u: within tol


def test_small_blocks_stay_consistent_to_rounding() -> None:
    ex = deq(n=20, d=5, seed=0)
    sol = ex.solve()
    z = sol["z"]
    x, w = ex.inputs["x"], ex.inputs["W"]
    # z was evaluated again at the converged iterate: z_U and the interior agree
    pre = [v for v in sol.program.variables if v.kind != "input" and v.shape == (20,)]
    assert any(np.array_equal(sol[v], w @ z) for v in pre)
    assert x.shape == (5,)


def test_bound_steps_do_what_the_steps_do(rng: np.random.Generator) -> None:
    ex = deq(n=30, d=4, seed=1)
    sol = ex.solve()
    unit = next(s for s in sol.schedule.steps if isinstance(s, CyclicBlock))
    z = sol.z + 0.1 * rng.standard_normal(sol.z.size)
    z_steps, z_bound = z.copy(), z.copy()
    for step in unit.steps:
        step.run(z_steps)
    run_all(bind_runs(unit.steps, z_bound))
    np.testing.assert_array_equal(z_bound, z_steps)
    lam = rng.standard_normal(z.size)
    into_steps, into_bound = np.zeros(z.size), np.zeros(z.size)
    for step in unit.steps:
        step.pullback(z, lam, into_steps)
    run_all(bind_pullbacks(unit.steps, z, lam, into_bound))
    np.testing.assert_allclose(into_bound, into_steps, rtol=1e-14, atol=1e-14)
    assert np.abs(into_bound).max() > 0


def _mixed(x, s, z):
    return 0.4 * lagrad.sigmoid(x * z - s * z) + 0.3 * lagrad.sin(z) * x


def _reused(x, s, z):
    a = lagrad.tanh(z)  # read twice: its multiplier has two contributions, the
    c = 0.3 * lagrad.sin(a)  # first a copy (from the sum, the last to read it)
    return 0.5 * (a + x) * c + s * 0.1


@pytest.mark.parametrize("define", [_mixed, _reused])
def test_bound_pullbacks_of_elementwise_and_broadcast_steps(define, rng) -> None:
    # partials that read two arguments (mul), a scalar broadcast into a vector (no
    # fixed-partial call: its cotangent is a sum), constant partials other than 1
    # (sub), multipliers passed on unchanged (add, identity) and one added twice
    n = 12
    p = lagrad.Program("mixed")
    x, s = p.input("x", (n,)), p.input("s", ())
    z = p.unknown("z", (n,))
    p.define(z, define(x, s, z))
    p.output(lagrad.sum(z * z))
    xv, sv = rng.standard_normal(n), np.float64(0.7)
    sol = p.solve(xv, sv)
    unit = next(st for st in sol.schedule.steps if isinstance(st, CyclicBlock))
    zz = sol.z
    lam = rng.standard_normal(zz.size)
    into_steps, into_bound = np.zeros(zz.size), np.zeros(zz.size)
    for step in unit.steps:
        step.pullback(zz, lam, into_steps)
    run_all(bind_pullbacks(unit.steps, zz, lam, into_bound))
    np.testing.assert_allclose(into_bound, into_steps, rtol=1e-14, atol=1e-14)
    dense = sol.grad(method=Substitution("dense", "dense"))
    # the default (a reduced LU here: generic products) and the Neumann series
    # (products in place, first contributions written rather than added)
    for method in ("auto", "fixed_point"):
        for got, want in zip(sol.grad(method=method), dense):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", range(20))
def test_fast_rate_tests_agree_with_the_logarithms(seed: int) -> None:
    rng = np.random.default_rng(seed)
    residuals = list(np.cumprod(rng.uniform(0.5, 1.05, size=8)) * 10.0 ** rng.uniform(-8, 2))
    for target in (1e-13, 1e-9, 1e-4):
        if residuals[-1] <= target:
            continue
        with np.errstate(all="ignore"):
            slow = nonlinear._too_slow(residuals, target, 1.0)
        assert nonlinear._too_slow_fast(residuals, target) == slow
        k, budget = len(residuals), 40
        rate = (residuals[-1] / residuals[-4]) ** (1 / 3)
        with np.errstate(all="ignore"):
            expect = bool(rate >= 1 or k + np.log(target / residuals[-1]) / np.log(rate) > budget)
        assert neumann.series_too_slow(residuals, k, target, budget) == expect


def test_unknown_spans_and_sole_contributions_of_a_two_unknown_block(rng) -> None:
    # two unknowns of different sizes, coupled; an interior value read twice
    p = lagrad.Program("two")
    x = p.input("x", (3,))
    a, b = p.unknown("a", (3,)), p.unknown("b", (2, 2))
    t = lagrad.tanh(a)  # read by both closing equations: two contributions
    p.define(a, 0.3 * t * x + 0.1 * lagrad.sum(b))
    p.define(b, 0.2 * lagrad.sin(b) + 0.1 * lagrad.sum(t))
    p.output(lagrad.sum(a * a) + lagrad.sum(b))
    sol = p.solve(rng.standard_normal(3))
    unit = next(st for st in sol.schedule.steps if isinstance(st, CyclicBlock))
    index = sol.schedule.index
    want = {(index.slice(v.index).start, index.slice(v.index).stop) for v in unit.unknowns}
    assert unit.unknown_spans == frozenset(want)
    assert {v.name for v in unit.unknowns} == {"a", "b"}
    assert isinstance(unit.u_at, slice)  # the unknowns are one run of z
    spans = unit.sole_contributions
    assert spans and not any(unit.u_at.start <= s < unit.u_at.stop for s, _ in spans)
    t_var = next(v for v in p.variables if v.kind not in ("input", "unknown")
                 and v.shape == (3,) and np.array_equal(sol[v], np.tanh(sol["a"])))
    t_span = (index.slice(t_var.index).start, index.slice(t_var.index).stop)
    assert t_span not in spans  # read by both closing equations: not shared
    assert unit.sole_contributions is spans  # found once per block


def test_a_reduced_lu_block_reports_its_residual_without_a_matrix_free_sweep(
        monkeypatch) -> None:
    """A small block's adjoint by the dense LU of its reduced matrix, with no
    interior right-hand side, reports the reduced system's residual measured
    with that matrix (no sweep through the equations' derivative rules), and
    it is the whole system's: checked against System.residual."""
    from lagrad.solve.blockop import BlockOperator

    def no_sweep(*_: object) -> float:
        raise AssertionError("the matrix-free residual ran")
    monkeypatch.setattr(BlockOperator, "residual", no_sweep)
    rng = np.random.default_rng(4)
    a = rng.standard_normal((3, 3))
    a *= 0.5 / np.linalg.norm(a, 2)
    b = 0.1 * rng.standard_normal(3)

    def f(x: Any) -> Any:
        z = lagrad.fixed_point(lambda z, x: lagrad.tanh(a @ z + x), np.zeros(3), x)
        return lagrad.sum(z * z)
    sol = lagrad.trace(f, b).solve(b)
    system = sol.adjoint_system()
    lam, info = system.solve()
    [block] = info.extra["blocks"]
    assert block.method == "reduced_lu"
    assert 0.0 <= block.residual <= 1e-14
    assert system.residual(lam) <= 1e-14
