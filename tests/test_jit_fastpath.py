"""The fast path of a jitted value_and_grad (lagrad.api.fastpath) and the
generated sweeps behind it (lagrad.solve.codegen): the same results as the
general path, bit for bit, and every behaviour of the general path kept."""

from __future__ import annotations

import threading
from unittest import mock

import numpy as np
import pytest

import lagrad
from lagrad.compile.compiler import compile_program
from lagrad.solve.codegen import MAX_STEPS, compile_gradient
from lagrad.solve.flatplan import flat_plan

FUNCTIONS = {
    "sin_times": (lambda v: (lagrad.sin(v) * v).sum(), lambda: (np.array([0.1, 0.2, 0.3]),)),
    "broadcast": (lambda a, b: (a * b + lagrad.exp(b)).sum(),
                  lambda: (np.arange(6.0).reshape(2, 3) / 7, np.array([0.5, -0.2, 0.1]))),
    "matmul_tanh": (lambda w, x: lagrad.mean(lagrad.tanh(x @ w) ** 2),
                    lambda: (np.linspace(-1, 1, 12).reshape(4, 3), np.ones((5, 4)) / 3)),
    "axis_sums": (lambda x: (lagrad.logsumexp(x, axis=1) * x.sum(axis=0)[:2]).sum(),
                  lambda: (np.linspace(0, 1, 6).reshape(2, 3),)),
    "where": (lambda x: lagrad.sum(np.where(x > 0.2, x ** 2, -x)),
              lambda: (np.array([0.1, 0.3, 0.5]),)),
    "scalars": (lambda a, b: a * lagrad.sin(b) + b ** 2, lambda: (1.5, 0.25)),
    "linear": (lambda a, b: lagrad.sum((a - b) * (b - a) + (-a) - 2.0 * b),
               lambda: (np.array([1.0, 2.0]), np.array([0.5, 3.0]))),
}


def _perturbed(args):
    return tuple(a * 1.1 + 0.01 if isinstance(a, np.ndarray) else a * 0.9 for a in args)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_the_fast_path_equals_the_general_path_bit_for_bit(name):
    fn, make = FUNCTIONS[name]
    argnums = tuple(range(len(make())))
    step = lagrad.jit(lagrad.value_and_grad(fn, argnums=argnums))
    args = make()
    for _ in range(4):
        v, g = step(*args)
        v_ref, g_ref = lagrad.value_and_grad(fn, argnums=argnums)(*args)
        assert type(v) is type(v_ref) and v == v_ref
        for a, b in zip(g, g_ref):
            assert type(a) is type(b) and np.shape(a) == np.shape(b)
            np.testing.assert_array_equal(a, b)
        args = _perturbed(args)
    assert step.cache.traces == 1
    # a program of scalars solves by levels, without a flat plan: no fast entry
    assert [e is not None for e in step.cache.fast.values()] == [name != "scalars"]


def test_the_gradient_matches_the_closed_form():
    step = lagrad.jit(lagrad.value_and_grad(lambda v: (lagrad.sin(v) * v).sum()))
    for x in (np.array([0.1, 0.2, 0.3]), np.array([1.0, -2.0, 0.5])):
        v, g = step(x)
        assert v == pytest.approx(float((np.sin(x) * x).sum()), rel=1e-14)
        np.testing.assert_allclose(g, np.cos(x) * x + np.sin(x), rtol=1e-14)


def test_calls_after_the_first_do_not_run_the_general_path():
    step = lagrad.jit(lagrad.value_and_grad(lambda v: (v ** 3).sum()))
    step(np.ones(3))
    step(np.ones(3))  # learnt from this call (the first one traced)
    with mock.patch("lagrad.api.grads._trace_solve", side_effect=AssertionError("general")):
        v, g = step(np.full(3, 2.0))
    assert float(v) == 24.0
    np.testing.assert_array_equal(g, np.full(3, 12.0))


def test_float32_pytrees_argnums_and_grad_keep_their_conventions(rng):
    def loss(params, x, scale):
        w, b = params
        return scale * lagrad.sum(lagrad.tanh(x @ w + b) ** 2)

    x = rng.standard_normal((6, 3))
    params = (rng.standard_normal(3).astype(np.float32), np.float32(0.5) * np.ones(1, np.float32))
    for transform in (lagrad.value_and_grad, lagrad.grad):
        fast = lagrad.jit(transform(loss, argnums=(0, -1)))
        for k in range(3):
            p = tuple(a * np.float32(1 + k / 10) for a in params)
            got, ref = fast(p, x, 2.0), transform(loss, argnums=(0, -1))(p, x, 2.0)
            flat, flat_ref = lagrad.tree.leaves(got), lagrad.tree.leaves(ref)
            assert [a.dtype for a in flat] == [b.dtype for b in flat_ref]
            for a, b in zip(flat, flat_ref):
                np.testing.assert_array_equal(a, b)
        assert isinstance(got, tuple)
        assert fast.cache.traces == 1


def test_data_arrays_are_inputs_and_constants_still_retrace(rng):
    step = lagrad.jit(lagrad.value_and_grad(lambda w, x, s: s * lagrad.sum((x @ w) ** 2)))
    w, x = rng.standard_normal(3), rng.standard_normal((4, 3))
    for _ in range(3):
        step(w, x, 2.0)
    x[0, 0] += 1.0  # data, changed in place: read by the fast path
    v, g = step(w, x, 2.0)
    assert v == pytest.approx(2 * float(((x @ w) ** 2).sum()), rel=1e-13)
    np.testing.assert_allclose(g, 4 * x.T @ (x @ w), rtol=1e-13)
    assert step.cache.traces == 1
    v, g = step(w, rng.standard_normal((4, 3)), 3.0)  # a new constant retraces
    assert step.cache.traces == 2


def test_new_shapes_and_dtypes_retrace():
    step = lagrad.jit(lagrad.value_and_grad(lambda v: (v ** 2).sum()))
    for x in (np.ones(3), np.ones(3), np.ones(4), np.ones(4, np.float32), np.ones(3)):
        v, g = step(x)
        assert g.dtype == x.dtype and g.shape == x.shape
        np.testing.assert_array_equal(g, 2 * x)
    assert step.cache.traces == 3


def test_a_value_that_is_not_finite_raises_as_on_the_general_path():
    f = lambda v: lagrad.sum(lagrad.log(v))  # noqa: E731
    step = lagrad.jit(lagrad.value_and_grad(f))
    for _ in range(3):
        step(np.ones(3))
    with pytest.raises(lagrad.NonFiniteError) as fast:
        step(np.array([1.0, -1.0, 2.0]))
    with pytest.raises(lagrad.NonFiniteError) as general:
        lagrad.value_and_grad(f)(np.array([1.0, -1.0, 2.0]))
    assert str(fast.value) == str(general.value)
    v, g = step(np.array([1.0, 2.0, 4.0]))  # and the next good call is fine
    np.testing.assert_allclose(g, [1.0, 0.5, 0.25])


def test_errors_of_arguments_are_unchanged():
    step = lagrad.jit(lagrad.value_and_grad(lambda v: (v ** 2).sum()))
    step(np.ones(3))
    step(np.ones(3))
    with pytest.raises(lagrad.InputDtypeError):
        step(np.ones(3, dtype=int))


def test_clear_drops_the_fast_entries():
    scale = [2.0]
    step = lagrad.jit(lagrad.value_and_grad(lambda v: scale[0] * (v ** 2).sum()))
    step(np.ones(2))
    step(np.ones(2))
    assert step.cache.fast
    scale[0] = 3.0
    step.cache.clear()
    assert not step.cache.fast
    assert float(step(np.ones(2))[0]) == 6.0


def test_threads_sharing_a_jitted_function_get_their_own_results():
    step = lagrad.jit(lagrad.value_and_grad(lambda v: (lagrad.sin(v) * v).sum()))
    step(np.ones(3))
    step(np.ones(3))
    errors = []

    def work(seed):
        x = np.random.default_rng(seed).standard_normal(3)
        for _ in range(300):
            v, g = step(x)
            if not np.array_equal(g, np.cos(x) * x + np.sin(x)) and \
                    not np.allclose(g, np.cos(x) * x + np.sin(x), rtol=1e-14):
                errors.append(seed)
    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_the_generated_sweep_gives_the_flat_plans_multipliers(rng):
    w1, w2 = rng.standard_normal((4, 5)), rng.standard_normal(5)
    x = rng.standard_normal((7, 4))
    program = lagrad.trace(lambda a, b: lagrad.mean(lagrad.relu(x @ a) @ b), w1, w2)
    schedule = compile_program(program)
    plan = flat_plan(schedule)
    compiled = compile_gradient(plan)
    assert compiled is not None and "def run(x0, x1)" in compiled.source
    value, grads = compiled(w1, w2)
    z = plan.forward((w1, w2))
    lam, _ = plan.multipliers(z)
    ref = schedule.index.take(lam, schedule.inputs)
    assert value == z[schedule.index[schedule.output_variable]][0]
    for a, b in zip(grads, ref):
        np.testing.assert_array_equal(a, b)
    assert compiled(w1 * np.inf, w2) is None  # not finite: the caller takes the general path


def test_long_programs_are_not_compiled():
    def chain(v):
        for _ in range(MAX_STEPS + 1):
            v = v * 1.0
        return v.sum()
    plan = flat_plan(compile_program(lagrad.trace(chain, np.ones(2))))
    assert plan is not None and compile_gradient(plan) is None


def test_dict_parameters_take_the_fast_path(rng):
    def loss(p, x):
        return lagrad.sum(lagrad.tanh(x @ p["w"] + p["b"]) ** 2)

    p = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)}
    step = lagrad.jit(lagrad.value_and_grad(loss))
    for _ in range(3):
        x = rng.standard_normal((4, 3))
        (v, g), (v_ref, g_ref) = step(p, x), lagrad.value_and_grad(loss)(p, x)
        assert v == v_ref and list(g) == ["b", "w"]
        for name in p:
            np.testing.assert_array_equal(g[name], g_ref[name])
        p = {k: a - 0.1 * g[k] for k, a in p.items()}
    assert step.cache.traces == 1
    assert [e is not None for e in step.cache.fast.values()] == [True]
    with mock.patch("lagrad.api.grads._trace_solve", side_effect=AssertionError("general")):
        step(p, x)
