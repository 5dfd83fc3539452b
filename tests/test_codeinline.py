"""Primitives written out in the generated code (lagrad.solve.codeinline):
logsumexp's value and cotangent, a broadcast argument's summed cotangent,
the partials of tanh, sigmoid, sin and cos made in the multiplier.
The generated code must be kept (it equals the flat plan bit for bit when
made) and give the general sweep's gradient and a dense solve's."""

from __future__ import annotations

import numpy as np
import pytest

import lagrad
from lagrad.compile.compiler import compile_program
from lagrad.solve import codegen
from lagrad.solve.codegen import SWEEP_AFTER, CompiledSweep
from lagrad.solve.flatplan import flat_plan


def programs(rng):
    x, m = rng.standard_normal((5, 4)), rng.standard_normal((3, 4))
    b, s = rng.standard_normal(4), rng.standard_normal((5, 1))
    return {
        "lse keepdims": (lambda x: (x - lagrad.logsumexp(x, axis=1, keepdims=True)).sum(),
                         (x,)),
        "lse no keepdims": (lambda x: (lagrad.logsumexp(x, axis=0) * 2.0).sum(), (x,)),
        "lse of all": (lambda x: lagrad.logsumexp(x * 3.0), (x,)),
        "lse of a constant's product": (lambda w: lagrad.logsumexp(m @ w, axis=1).sum(),
                                        (rng.standard_normal((4, 2)),)),
        "bias twice": (lambda x, b: lagrad.tanh(x + b).sum() + (x * 2.0 - b).sum(), (x, b)),
        "column and scalar": (lambda x, s, c: ((x - s) * (x + c)).sum(), (x, s, 0.5)),
        "weight used twice": (lambda w: lagrad.tanh(x @ w).sum() + (lagrad.tanh(x * 2.0 @ w)
                                                                     ** 2).sum(),
                              (rng.standard_normal((4, 3)),)),
        "two variable factors": (lambda a, w: lagrad.sin(a @ w).sum(),
                                 (rng.standard_normal((3, 5)), rng.standard_normal((5, 2)))),
        "sums over axes": (lambda x: (lagrad.sum(x * x, axis=1, keepdims=True) * x).sum()
                           + lagrad.sum(lagrad.tanh(x), axis=(0, 1)), (x,)),
        "integer constant": (lambda w: lagrad.tanh(np.arange(12).reshape(3, 4) @ w).sum(),
                             (rng.standard_normal((4, 2)),)),
        "maps in place": (lambda x, w: (lagrad.tanh(x @ w) * lagrad.sigmoid(x @ w)).sum()
                          + (lagrad.sin(x) * lagrad.cos(x * 2.0)).sum(),
                          (x, rng.standard_normal((4, 3)))),
        "maps of an input, read twice": (lambda x: (lagrad.tanh(x) + lagrad.sigmoid(x)
                                                    + lagrad.cos(x) * lagrad.sin(x)).sum(), (x,)),
    }

MAPS = {lagrad.tanh: "tanh", lagrad.sigmoid: "sigmoid", lagrad.sin: "sin", lagrad.cos: "cos"}


@pytest.mark.parametrize("stepwise", [False, True])
@pytest.mark.parametrize("name", ["lse keepdims", "lse no keepdims", "lse of all",
                                  "lse of a constant's product", "bias twice",
                                  "column and scalar", "weight used twice",
                                  "two variable factors", "integer constant",
                                  "sums over axes", "maps in place",
                                  "maps of an input, read twice"])
def test_written_out_rules_give_the_plans_values_and_gradients(name, stepwise, rng):
    fn, args = programs(rng)[name]
    program = lagrad.trace(fn, *args)
    schedule = compile_program(program)
    flat_plan(schedule).stepwise = stepwise
    sol = program.solve(*args)
    index, inputs = schedule.index, schedule.inputs
    general = index.take(sol.adjoint_system().solve("backsub").x, inputs)
    dense = index.take(sol.adjoint_system().solve("dense").x, inputs)
    value = sol.output
    for _ in range(SWEEP_AFTER + 2):
        sol = program.solve(*args)
        grads = sol.grad()
    grads = grads if isinstance(grads, tuple) else (grads,)
    assert isinstance(schedule.extras["sweep"], CompiledSweep)
    assert callable(schedule.extras["forward_code"])
    assert sol.output == value
    np.testing.assert_array_equal(sol.z, flat_plan(schedule).forward(args))
    for g, a, d in zip(grads, general, dense):
        np.testing.assert_array_equal(g, a)
        np.testing.assert_allclose(g, d, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stepwise", [False, True])
def test_multipliers_reuse_regions_no_longer_read(stepwise, rng):
    """A tanh MLP of three hidden layers: with step-by-step tests, later
    multipliers of a layer's size take the regions of earlier ones (see
    codegen._places); the gradient is still the plan's bit for bit."""
    x = rng.standard_normal((6, 5))
    ws = [rng.standard_normal((5, 8)), rng.standard_normal((8, 8)), rng.standard_normal((8, 8)),
          rng.standard_normal((8, 3))]

    def loss(w1, w2, w3, w4, b):
        h = x
        for w in (w1, w2, w3):
            h = lagrad.tanh(h @ w + b)
        return lagrad.logsumexp(h @ w4, axis=1).sum()

    args = (*ws, rng.standard_normal(8))
    program = lagrad.trace(loss, *args)
    schedule = compile_program(program)
    plan = flat_plan(schedule)
    plan.stepwise = stepwise
    expected = program.solve(*args).grad()  # by the plan (nothing generated yet)
    for _ in range(SWEEP_AFTER + 2):
        grads = program.solve(*args).grad()
    assert isinstance(schedule.extras["sweep"], CompiledSweep)
    for g, e in zip(grads, expected):
        np.testing.assert_array_equal(g, e)
    sweep = codegen._sweep(plan, len(plan.inputs))
    places = codegen._places(plan, sweep, codegen._shared(plan, sweep), dict.fromkeys(plan.inputs))
    moved = [span for span, at in places.items() if at != span[0]]
    assert bool(moved) == stepwise


@pytest.mark.parametrize("stepwise", [False, True])
@pytest.mark.parametrize("fn", list(MAPS), ids=list(MAPS.values()))
def test_map_partials_are_made_in_the_multiplier(fn, stepwise, rng):
    """The cotangent of tanh, sigmoid, sin and cos written first into its
    argument's multiplier calls no partials rule (it would allocate the
    partial): the partial is made in the multiplier, bit for bit the rule's."""
    x, w = rng.standard_normal((6, 5)), rng.standard_normal((5, 4))
    program = lagrad.trace(lambda w: (fn(x @ w) * 3.0).sum(), w)
    schedule = compile_program(program)
    flat_plan(schedule).stepwise = stepwise
    expected = program.solve(w).grad()  # by the flat plan
    for _ in range(SWEEP_AFTER + 2):
        grad = program.solve(w).grad()
    sweep = schedule.extras["sweep"]
    assert isinstance(sweep, CompiledSweep)
    np.testing.assert_array_equal(grad, expected)
    rule = next(eq.primitive.partials for eq in program.equations
                if eq.primitive.name == MAPS[fn])
    bound = sweep._run.__globals__
    assert not [k for k, v in bound.items() if v is rule]
