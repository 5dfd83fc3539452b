"""The flat plan of acyclic array programs (lagrad.solve.flatplan): its
multipliers against the general sweep and a dense solve, with recycled
buffers full of NaN (nothing uncleared may be read)."""

from __future__ import annotations

import numpy as np
import pytest

import lagrad
from lagrad.compile.compiler import compile_program
from lagrad.errors import NonFiniteError
from lagrad.solve.buffers import pool_of
from lagrad.solve.flatplan import flat_plan, multiplier_plan
from lagrad.solve.linsolve import solve_system


def mlp(w1, b1, w2, x, y):
    a = lagrad.tanh(x @ w1 + b1) @ w2
    return -lagrad.mean(lagrad.sum(y * (a - lagrad.logsumexp(a, axis=1, keepdims=True)),
                                   axis=1))


def cases(rng):
    x, y = rng.standard_normal((7, 4)), np.eye(3)[rng.integers(3, size=7)]
    w1, b1, w2 = rng.standard_normal((4, 5)), rng.standard_normal(5), rng.standard_normal((5, 3))
    v, m = rng.standard_normal(4), rng.standard_normal((4, 4))
    return {
        "mlp": (lambda w1, b1, w2: mlp(w1, b1, w2, x, y), (w1, b1, w2)),
        "reused": (lambda v: (v * v).sum() + lagrad.sin(v).sum() * v.sum(), (v,)),
        "unused input": (lambda v, m: (v ** 2).sum(), (v, m)),
        "dead branch": (lambda v, m: (lagrad.exp(m) @ v, (v @ m @ v))[1], (v, m)),
        "vector products": (lambda v, m: (v @ m) @ (m @ v) + (m @ v) @ v, (v, m)),
        "outer": (lambda v, m: (v.reshape(4, 1) @ v.reshape(1, 4) * m).sum(), (v, m)),
    }


@pytest.mark.parametrize("stepwise", [False, True])
@pytest.mark.parametrize("name", ["mlp", "reused", "unused input", "dead branch",
                                  "vector products", "outer"])
def test_plan_multipliers_equal_the_general_sweep(name, stepwise, rng):
    fn, args = cases(rng)[name]
    program = lagrad.trace(fn, *args)
    schedule = compile_program(program)
    plan = flat_plan(schedule)
    assert plan is not None
    plan.stepwise = stepwise  # (chosen by size: small programs check in one pass)
    sol = program.solve(*args)
    general = solve_system(sol.adjoint_system(), "backsub").x
    dense = solve_system(sol.adjoint_system(), "dense").x
    del sol
    pool = pool_of(schedule)
    for _ in range(3):  # recycled vectors hold NaN: the plan must write or clear every entry
        pool.poison(np.nan)
        sol = program.solve(*args)
        lam = sol.multipliers().vector.copy()
        del sol
        assert pool.free  # recycled vectors (NaN-filled next round)
        np.testing.assert_array_equal(lam, general)
        np.testing.assert_allclose(lam, dense, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stepwise", [False, True])
def test_a_non_finite_multiplier_takes_the_general_path_and_names_the_equation(stepwise):
    program = lagrad.trace(lambda v: (lagrad.sqrt(v) * 2.0).sum(), np.ones(3))
    flat_plan(compile_program(program)).stepwise = stepwise
    with pytest.raises(NonFiniteError, match="sqrt"):
        program.solve(np.array([1.0, 0.0, 2.0])).grad()
    np.testing.assert_allclose(program.solve(np.ones(3)).grad(), np.ones(3))


@pytest.mark.parametrize("stepwise", [False, True])
@pytest.mark.parametrize("bad", [np.array([1.0, np.inf, 2.0]), np.array([1.0, -1.0, 2.0])])
def test_a_non_finite_value_names_the_equation(stepwise, bad):
    step = lagrad.jit(lagrad.value_and_grad(lambda v: (lagrad.log(v) * 2.0).sum(),
                                            return_info=True))
    _, info = step(np.ones(3))
    flat_plan(compile_program(info.program)).stepwise = stepwise
    expected = "log" if bad.min() < 0 else "input .v. has a non-finite"
    with pytest.raises(NonFiniteError, match=expected):
        step(bad)


def test_jit_through_the_plan_matches_autograd(rng):
    import autograd
    import autograd.numpy as anp

    x, y = rng.standard_normal((7, 4)), np.eye(3)[rng.integers(3, size=7)]
    params = (rng.standard_normal((4, 5)), rng.standard_normal(5), rng.standard_normal((5, 3)))

    def ref(p):
        a = anp.tanh(x @ p[0] + p[1]) @ p[2]
        lse = anp.log(anp.sum(anp.exp(a), axis=1, keepdims=True))
        return -anp.mean(anp.sum(y * (a - lse), axis=1))

    step = lagrad.jit(lagrad.value_and_grad(lambda p, x, y: mlp(*p, x, y)))
    for _ in range(3):
        v, g = step(params, x, y)
        assert v == pytest.approx(ref(params), rel=1e-13)
        for a, b in zip(g, autograd.grad(ref)(params)):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
        params = tuple(p - 0.1 * d for p, d in zip(params, g))
    assert step.cache.traces == 1


def test_jit_value_and_grad_recycles_values_and_multipliers(rng):
    """A training step drops its Solution: z and lambda go back to the pool
    (a fresh program-sized lambda per call page-faults through its memory)."""
    step = lagrad.jit(lagrad.value_and_grad(lambda w, x: lagrad.tanh(x @ w).sum(),
                                            return_info=True))
    w, x = rng.standard_normal(3), rng.standard_normal((50, 3))
    _, info = step(w, x)
    pool = pool_of(compile_program(info.program))
    before = None
    for _ in range(3):
        step(w, x)
        assert len(pool.free) == 2
        now = {id(m.raw) for m in pool.free}
        assert before is None or now == before  # the same two vectors, round after round
        before = now


def deq_program(n, d, rng, extra=False):
    """z = tanh(W z + U x + b) (W an input, read only inside the block), output
    sum(z^2) (+ a second use of W and of z outside the block with ``extra``)."""
    w = rng.standard_normal((n, n))
    w *= 0.5 / np.linalg.norm(w, 2)
    u, b = rng.standard_normal((n, d)), rng.standard_normal(n)
    p = lagrad.Program("deq")
    x_in, w_in = p.input("x", (d,)), p.input("W", (n, n))
    z = p.unknown("z", (n,))
    p.define(z, lagrad.tanh(w_in @ z + u @ x_in + b))
    out = lagrad.sum(z * z)
    if extra:
        out = out + lagrad.sum(lagrad.sin(w_in)) + lagrad.sum(w_in @ z)
    p.output(out)
    return p, (rng.standard_normal(d), w)


@pytest.mark.parametrize("stepwise", [False, True])
@pytest.mark.parametrize("extra", [False, True])
def test_cyclic_plan_multipliers_equal_the_general_sweep(stepwise, extra, rng):
    """A program with a cyclic block: its multipliers by the plan (each block
    solved in place, W's multipliers written once by the block's outer
    product, or added to after ``extra`` uses) equal the general sweep's, with
    recycled vectors full of NaN."""
    program, args = deq_program(300 if stepwise else 6, 3, rng, extra)
    schedule = compile_program(program)
    assert flat_plan(schedule) is None
    plan = multiplier_plan(schedule)
    assert plan is not None and plan.cyclic
    plan.stepwise = stepwise
    sol = program.solve(*args)
    general, general_info = solve_system(sol.adjoint_system(), "auto")
    direct = solve_system(sol.adjoint_system(), "spsolve").x
    del sol
    pool = pool_of(schedule)
    for _ in range(3):
        pool.poison(np.nan)
        sol = program.solve(*args)
        lam = sol.multipliers().vector.copy()
        info = sol.adjoint_info
        del sol
        assert [b.method for b in info.blocks] == [b.method for b in general_info.blocks]
        assert info.notes == general_info.notes
        np.testing.assert_allclose(lam, general, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(lam, direct, rtol=1e-9, atol=1e-9)


def test_cyclic_plan_is_not_used_with_a_backward_mode(rng):
    program, args = deq_program(5, 2, rng)
    sol = program.solve(*args, backward="phantom")
    info = sol.adjoint_info
    assert [b.status.name for b in info.blocks] == ["TRUNCATED"]


def scaled_layer(n, scale, weight):
    """z = scale * tanh(W z + b) with W = 0 (an input), output weight * sum(z):
    dL/dW = outer(g, z) with g = weight * scale * tanh'(b), z = scale * tanh(b)."""
    p = lagrad.Program("scaled")
    w_in = p.input("W", (n, n))
    z = p.unknown("z", (n,))
    b = np.linspace(0.1, 1.0, n)
    p.define(z, scale * lagrad.tanh(w_in @ z + b))
    p.output(weight * lagrad.sum(z))
    t = np.tanh(b)
    with np.errstate(over="ignore"):
        return p, np.zeros((n, n)), np.outer(weight * scale * (1.0 - t * t), scale * t)


def test_a_parameters_outer_product_is_tested_by_its_factors(rng):
    """In a stepwise plan, W's multipliers (one outer product of N and N
    entries) are not tested entry by entry at the end but by the norms of
    the two factors, and the gradient is the general sweep's."""
    program, args = deq_program(300, 3, rng)
    schedule = compile_program(program)
    plan = multiplier_plan(schedule)
    assert plan.stepwise
    w = schedule.index.slice(program.variable("W").index)
    span = (w.start, w.stop)
    bounded = [r.bounded for rev in plan.reverse for r in getattr(rev, "outer", (rev,))
               if r.bounded]
    assert [(a, b) for a, b, _ in sum(bounded, ())] == [span]
    assert not any(a <= span[0] < b for a, b in plan.last)
    sol = program.solve(*args)
    general = solve_system(sol.adjoint_system(), "backsub").x
    np.testing.assert_allclose(sol.grad()[1], general[w].reshape(300, 300),
                               rtol=1e-13, atol=1e-13)


def test_huge_factors_of_a_parameters_gradient_fall_back_to_its_entries():
    """Factors whose norms pass the bound's limit, with a finite product: the
    product is tested entry by entry and returned."""
    program, w, expected = scaled_layer(300, 1e-3, 1e305)
    grad = program.solve(w).grad()
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad, expected, rtol=1e-12)


def test_a_parameters_gradient_that_overflows_from_finite_factors_is_named():
    program, w, _ = scaled_layer(300, 1e300, 1.0)  # g_i z_j about 1e600
    assert multiplier_plan(compile_program(program)).stepwise
    with pytest.raises(NonFiniteError):
        program.solve(w).grad()
    small, w, expected = scaled_layer(300, 2.0, 1.0)
    np.testing.assert_allclose(small.solve(w).grad(), expected, rtol=1e-12)
