"""``program.solve(...)`` and ``Solution.grad()`` of acyclic array programs by
generated code (lagrad.solve.codegen: compile_forward, compile_sweep): the
flat plan's values and gradients bit for bit, an independent reference
(autograd), large inputs read in place, and non-finite values and
multipliers still named by the general path."""

from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import lagrad
from lagrad.compile.compiler import compile_program
from lagrad.errors import NonFiniteError
from lagrad.solve.codegen import SWEEP_AFTER, CompiledSweep, compile_sweep
from lagrad.solve.flatplan import flat_plan


def mlp_problem(rng, n_in=4, hidden=5, batch=7):
    x, y = rng.standard_normal((batch, n_in)), np.eye(3)[rng.integers(3, size=batch)]
    params = (rng.standard_normal((n_in, hidden)) / np.sqrt(n_in),
              rng.standard_normal(hidden), rng.standard_normal((hidden, 3)), 0.5)

    def loss(w1, b1, w2, s):
        a = s * (lagrad.tanh(x @ w1 + b1) @ w2)
        return -lagrad.mean(lagrad.sum(y * (a - lagrad.logsumexp(a, axis=1, keepdims=True)),
                                       axis=1))

    def ref(w1, b1, w2, s):
        a = s * (anp.tanh(x @ w1 + b1) @ w2)
        lse = anp.log(anp.sum(anp.exp(a), axis=1, keepdims=True))
        return -anp.mean(anp.sum(y * (a - lse), axis=1))

    return loss, ref, params


@pytest.mark.parametrize("n_in", [4, 300])  # 300 x 120 = 36000 entries: W1 read in place
def test_generated_values_and_gradients_equal_the_plans(n_in, rng):
    loss, ref, params = mlp_problem(rng, n_in=n_in, hidden=120)
    program = lagrad.trace(loss, *params)
    schedule = compile_program(program)
    plan = flat_plan(schedule)
    assert plan is not None and ((0, n_in * 120) in plan.lendable) == (n_in == 300)
    first = program.solve(*params)
    value, grads = first.output, first.grad()  # by the plan (nothing generated yet)
    assert "sweep" not in schedule.extras and "forward_code" not in schedule.extras
    expected = autograd.grad(ref, argnum=(0, 1, 2, 3))(*params)
    for _ in range(SWEEP_AFTER + 3):
        sol = program.solve(*params)
        assert sol.output == value
        again = sol.grad()
        for a, b, c in zip(again, grads, expected):
            assert type(a) is type(b) and np.shape(a) == np.shape(b)
            np.testing.assert_array_equal(a, b)
            np.testing.assert_allclose(a, c, rtol=1e-11, atol=1e-13)
    assert isinstance(schedule.extras["sweep"], CompiledSweep)
    assert callable(schedule.extras["forward_code"])
    assert isinstance(again[3], np.float64)  # a 0-d input: a numpy scalar, as before
    other = program.solve(*params).grad()
    assert all(not np.shares_memory(a, b) for a, b in zip(other[:3], again[:3]))
    # the multipliers are still there on request (the general machinery)
    sol = program.solve(*params)
    sol.grad()
    lam = sol.multipliers()
    for v, g in zip(schedule.inputs, grads):
        np.testing.assert_array_equal(lam[v], g)


def test_the_sweep_reads_inputs_in_place_or_from_z(rng):
    loss, _, params = mlp_problem(rng, n_in=300, hidden=120)
    program = lagrad.trace(loss, *params)
    plan = flat_plan(compile_program(program))
    sweep = compile_sweep(plan)
    assert sweep is not None and "lent.get" in sweep.source
    z = plan.forward(params)  # every input copied into z: nothing lent
    w1 = params[0].reshape(-1)
    from_z = sweep(z, {})
    lent = sweep(z, {(0, w1.size): w1})
    assert from_z is not None and lent is not None
    for a, b in zip(from_z, lent):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("stepwise", [False, True])
def test_a_non_finite_multiplier_is_still_named_after_the_sweep_is_made(stepwise):
    program = lagrad.trace(lambda v: (lagrad.sqrt(v) * 2.0).sum(), np.ones(3))
    schedule = compile_program(program)
    flat_plan(schedule).stepwise = stepwise
    for _ in range(SWEEP_AFTER + 2):
        np.testing.assert_allclose(program.solve(np.ones(3)).grad(), np.ones(3))
    assert isinstance(schedule.extras["sweep"], CompiledSweep)
    with pytest.raises(NonFiniteError, match="sqrt"):
        program.solve(np.array([1.0, 0.0, 2.0])).grad()


@pytest.mark.parametrize("stepwise", [False, True])
@pytest.mark.parametrize("bad", [np.array([1.0, np.inf, 2.0]), np.array([1.0, -1.0, 2.0])])
def test_a_non_finite_value_is_still_named_after_the_code_is_made(stepwise, bad):
    program = lagrad.trace(lambda v: (lagrad.log(v) * 2.0).sum(), np.ones(3))
    schedule = compile_program(program)
    flat_plan(schedule).stepwise = stepwise
    for _ in range(SWEEP_AFTER + 2):
        program.solve(np.ones(3)).grad()
    assert callable(schedule.extras["forward_code"])
    expected = "log" if bad.min() < 0 else "input .v. has a non-finite"
    with pytest.raises(NonFiniteError, match=expected):
        program.solve(bad)
    big = np.ones(40000)  # an input read in place (lent), checked there
    program = lagrad.trace(lambda v: (lagrad.log(v) * 2.0).sum(), big)
    for _ in range(SWEEP_AFTER + 2):
        program.solve(big).grad()
    big[7] = bad[1]
    with pytest.raises(NonFiniteError, match=expected):
        program.solve(big)


def programs(rng):
    v, m, c = rng.standard_normal(4), rng.standard_normal((4, 4)), rng.standard_normal((3, 4))
    return {
        "chain of sums": (lambda v, m: lagrad.tanh((c @ m + v) + v * 2.0).sum(), (v, m)),
        "reused sum": (lambda v, m: ((m @ v + v) * (m @ v + v)).sum() + (v + 1.0).sum(), (v, m)),
        "difference": (lambda v, m: lagrad.sin(m @ v - v).sum() + (v - m @ v).sum(), (v, m)),
        "dead branch": (lambda v, m: (lagrad.exp(m) @ v, (v @ m @ v))[1], (v, m)),
        "unused input": (lambda v, m: (v ** 2).sum(), (v, m)),
    }


@pytest.mark.parametrize("name", ["chain of sums", "reused sum", "difference", "dead branch",
                                  "unused input"])
def test_generated_gradients_equal_the_general_sweep_and_a_dense_solve(name, rng):
    fn, args = programs(rng)[name]
    program = lagrad.trace(fn, *args)
    sol = program.solve(*args)
    index, inputs = sol.schedule.index, sol.schedule.inputs
    general = index.take(sol.adjoint_system().solve("backsub").x, inputs)
    dense = index.take(sol.adjoint_system().solve("dense").x, inputs)
    for _ in range(SWEEP_AFTER + 2):
        grads = program.solve(*args).grad()
    assert isinstance(sol.schedule.extras["sweep"], CompiledSweep)
    for g, a, b in zip(grads, general, dense):
        np.testing.assert_array_equal(g, a)
        np.testing.assert_allclose(g, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stepwise", [False, True])
def test_huge_finite_values_pass_the_finiteness_tests(stepwise):
    """The tests sum squares: entries above 1e154 overflow that sum and are
    then checked one by one, not reported as non-finite."""
    program = lagrad.trace(lambda v: (v * 1e100).sum() - (v * 1e100).sum(), np.ones(3))
    schedule = compile_program(program)
    flat_plan(schedule).stepwise = stepwise
    huge = np.array([1e200, -3e200, 1e160])
    for _ in range(SWEEP_AFTER + 2):
        sol = program.solve(huge)
        assert sol.output == 0.0
        np.testing.assert_array_equal(sol.grad(), np.zeros(3))
    assert isinstance(schedule.extras["sweep"], CompiledSweep)
    assert callable(schedule.extras["forward_code"])


@pytest.mark.parametrize("where", ["log", "input"])
def test_a_value_covered_by_a_sums_test_is_still_named(where):
    """log(v) and b are only tested through the sum log(v) + b (see
    codegen._covered); a NaN in either still names its own source."""
    v, b = np.full(40000, 2.0), np.ones(40000)
    program = lagrad.trace(lambda v, b: lagrad.tanh(lagrad.log(v) + b).sum(), v, b)
    schedule = compile_program(program)
    assert flat_plan(schedule).stepwise
    for _ in range(SWEEP_AFTER + 2):
        program.solve(v, b).grad()
    assert callable(schedule.extras["forward_code"])
    if where == "log":
        v[123] = -1.0
    else:
        b[123] = np.nan
    expected = "log" if where == "log" else "input .b. has a non-finite"
    with pytest.raises(NonFiniteError, match=expected):
        program.solve(v, b)
