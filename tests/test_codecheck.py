"""Cheaper finiteness tests of the generated code (lagrad.solve.codecheck):
a weight gradient tested by the bound on its factors, a finite map's output
not tested on its own; gradients still exact, non-finite ones still named."""

from __future__ import annotations

import numpy as np
import pytest

import lagrad
from lagrad.compile.compiler import compile_program
from lagrad.errors import NonFiniteError
from lagrad.ir.constants import frozen
from lagrad.solve.codecheck import (
    finite_map_outputs,
    frozen_squares,
    product_factor,
    spread_by_constants,
)
from lagrad.solve.codegen import SWEEP_AFTER, CompiledSweep
from lagrad.solve.flatplan import flat_plan


def _made(program, args, stepwise):
    """Solve until the generated code is made; its schedule."""
    schedule = compile_program(program)
    flat_plan(schedule).stepwise = stepwise
    for _ in range(SWEEP_AFTER + 2):
        program.solve(*args).grad()
    assert isinstance(schedule.extras["sweep"], CompiledSweep)
    return schedule


def _layer(x):
    """sum(tanh(x @ w + b)) with the data x a constant: dL/dw = x^T g."""
    return lambda w, b: lagrad.tanh(x @ w + b).sum()


@pytest.mark.parametrize("stepwise", [False, True])
def test_a_weight_gradient_is_tested_by_its_factors_and_exact(stepwise, rng):
    x, w, b = rng.standard_normal((4, 50)), rng.standard_normal((50, 60)), rng.standard_normal(60)
    program = lagrad.trace(_layer(x), w, b)
    schedule = _made(program, (w, b), stepwise)
    assert "sqrt(" in schedule.extras["sweep"].source
    gw, gb = program.solve(w, b).grad()
    g = 1.0 - np.tanh(x @ w + b) ** 2
    np.testing.assert_allclose(gw, x.T @ g, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(gb, g.sum(axis=0), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("stepwise", [False, True])
def test_huge_factors_fall_back_to_the_products_own_test(stepwise, rng):
    """Factors whose norms overflow the bound: the product is tested entry by
    entry and, finite, returned."""
    x = rng.standard_normal((4, 50)) * 1e200  # sum of squares: inf
    w, b = np.zeros((50, 60)), rng.standard_normal(60)
    program = lagrad.trace(_layer(x), w, b)
    _made(program, (w, b), stepwise)
    gw, _ = program.solve(w, b).grad()
    g = 1.0 - np.tanh(b) ** 2
    np.testing.assert_allclose(gw, x.T @ np.broadcast_to(g, (4, 60)), rtol=1e-13)
    assert np.isfinite(gw).all()


@pytest.mark.parametrize("stepwise", [False, True])
def test_a_product_that_overflows_from_finite_factors_is_named(stepwise):
    """x^T g = 4e308 (inf) from finite x and g, with every value finite."""
    x, w = np.full((4, 50), 1e308), np.zeros((50, 60))  # x @ w = 0
    program = lagrad.trace(_layer(x), w, np.zeros(60))
    _made(program, (w, np.full(60, 40.0)), stepwise)  # made where tanh' = 0: finite
    assert np.array_equal(program.solve(w, np.full(60, 40.0)).grad()[0], np.zeros((50, 60)))
    with pytest.raises(NonFiniteError):
        program.solve(w, np.zeros(60)).grad()


def test_a_finite_maps_output_is_not_tested_but_its_argument_is_named():
    v = np.full(40000, 2.0)
    program = lagrad.trace(lambda v: lagrad.tanh(lagrad.log(v)).sum(), v)
    schedule = _made(program, (v,), True)
    plan = flat_plan(schedule)
    assert finite_map_outputs(plan.steps) == {(s.start, s.stop) for s in plan.steps
                                              if s.eq.primitive.name == "tanh"}
    v[17] = -1.0
    with pytest.raises(NonFiniteError, match="log"):
        program.solve(v)
    v[17] = np.nan
    with pytest.raises(NonFiniteError, match="input .v. has a non-finite"):
        program.solve(v)


def test_frozen_squares_only_of_constants_that_cannot_change():
    a = np.arange(6.0).reshape(2, 3)
    assert frozen_squares(a) is None  # writeable
    view = a.view()
    view.flags.writeable = False
    assert frozen_squares(view) is None  # its memory can change through a
    assert frozen_squares(frozen(a)) == 55.0
    assert frozen_squares(frozen(a)[1:]) == 50.0
    assert frozen_squares(frozen(a, dtype=np.float32)) is None


def test_product_factor_only_for_matrix_products_without_batch_dimensions(rng):
    m3 = rng.standard_normal((2, 3, 4))
    for fn, args, expected in [
            (lambda w: (np.ones((3, 4)) @ w).sum(), (np.ones((4, 5)),), 0),
            (lambda w: (m3 @ w).sum(), (np.ones((4, 5)),), None),
            (lambda w: (w * 2.0).sum(), (np.ones((4, 5)),), None)]:
        schedule = compile_program(lagrad.trace(fn, *args))
        step = schedule.steps[0]
        pos, _, _, shape = step.vslots[0]
        assert product_factor(step, pos, shape) == expected



def _weights_program(x, w):
    """sum(tanh(x @ w + 1)): the constant x spreads each entry of w over a column."""
    return lagrad.trace(lambda w: lagrad.tanh(x @ w + 1.0).sum(), w)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_weights_spread_by_a_constant_are_not_tested_but_still_named(bad, rng):
    """A weight matrix read only by a product with a constant of nonzero
    entries needs no test of its own (its product's test catches it): a
    non-finite weight is still named, after the code is made."""
    x, w = rng.standard_normal((4, 300)), rng.standard_normal((300, 250))
    program = _weights_program(x, w)
    schedule = compile_program(program)
    plan = flat_plan(schedule)
    assert plan.stepwise
    assert spread_by_constants(plan.steps, plan.inputs) == set(plan.inputs)
    for _ in range(SWEEP_AFTER + 2):
        program.solve(w).grad()
    assert callable(schedule.extras["forward_code"])
    bad_w = w.copy()
    bad_w[123, 45] = bad
    with pytest.raises(NonFiniteError, match="input .w"):
        program.solve(bad_w)
    np.testing.assert_allclose(program.solve(w).grad(),
                               x.T @ (1.0 - np.tanh(x @ w + 1.0) ** 2), rtol=1e-13)


def test_a_constant_with_a_zero_entry_spreads_nothing(rng):
    """One zero in the constant (its product with an inf weight could be
    finite in a BLAS that skips zeros): the weights are tested."""
    x, w = rng.standard_normal((4, 30)), rng.standard_normal((30, 25))
    plan = flat_plan(compile_program(_weights_program(x, w)))
    assert spread_by_constants(plan.steps, plan.inputs) == set(plan.inputs)
    x[2, 7] = 0.0
    plan = flat_plan(compile_program(_weights_program(x, w)))
    assert spread_by_constants(plan.steps, plan.inputs) == set()
    x[2, 7] = np.inf
    plan = flat_plan(compile_program(_weights_program(x, w)))
    assert spread_by_constants(plan.steps, plan.inputs) == set()
