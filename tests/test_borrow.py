"""Large inputs read only inside cyclic blocks are borrowed, not copied into z
(lagrad.solve.borrow): derivatives against a dense reference, the slice of z
left unwritten until something reads z, every reader of z served."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.linalg

import lagrad
from lagrad.compile.compiler import compile_program
from lagrad.errors import ConvergenceError, NonFiniteError
from lagrad.options import ForwardOptions
from lagrad.solve import borrow as borrow_module
from lagrad.solve.buffers import pool_of
from lagrad.solve.flatplan import flat_plan
from lagrad.solve.forward import evaluate

N, D = 40, 3


@pytest.fixture(autouse=True)
def small_threshold(monkeypatch):
    monkeypatch.setattr(borrow_module, "BORROW_MIN", N * N)


def deq(rng):
    w = rng.standard_normal((N, N))
    w *= 0.6 / np.linalg.norm(w, 2)
    u, b, x = rng.standard_normal((N, D)), rng.standard_normal(N), rng.standard_normal(D)
    p = lagrad.Program("deq")
    x_in, w_in = p.input("x", (D,)), p.input("W", (N, N))
    z = p.unknown("z", (N,))
    p.define(z, lagrad.tanh(w_in @ z + u @ x_in + b))
    p.output(lagrad.sum(z * z))
    return p, x, w, u, b


def reference(x, w, u, b):
    """Iterate to rounding, then the adjoint by a dense LU of (I - D W)."""
    z = np.zeros(N)
    for _ in range(2000):
        z = np.tanh(w @ z + u @ x + b)
    d = 1 - z * z
    lam = scipy.linalg.solve((np.eye(N) - d[:, None] * w).T, 2 * z)
    return u.T @ (d * lam), np.outer(d * lam, z)


def test_w_is_borrowed_and_z_is_filled_only_when_read(rng):
    p, x, w, *_ = deq(rng)
    schedule = compile_program(p)
    assert len(borrow_module.borrowable(schedule)) == 1
    pool = pool_of(schedule)
    pool.free.clear()
    pool.poison(np.nan)  # one block of NaN: what the solve does not write stays NaN
    z, _, borrowed = evaluate(schedule, [x, w], ForwardOptions(), {})
    span = schedule.index["W"]
    assert borrowed is not None and list(borrowed.arrays) == [(span.start, span.stop)]
    assert np.isnan(z[span]).all()  # never written
    assert np.isfinite(np.delete(z, np.arange(span.start, span.stop))).all()
    borrowed.fill(z)
    np.testing.assert_array_equal(z[span], w.ravel())


@pytest.mark.parametrize("method", ["auto", "newton", "anderson"])
def test_gradient_with_a_borrowed_input_matches_the_dense_reference(method, rng):
    p, x, w, u, b = deq(rng)
    ref = reference(x, w, u, b)
    for _ in range(2):  # the second time from recycled vectors
        gx, gw = p.solve(x, w, method=method).grad()
        np.testing.assert_allclose(gx, ref[0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(gw, ref[1], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("adjoint", ["splu", "gmres", "bicgstab", "fixed_point", "dense"])
def test_every_reader_of_z_sees_the_borrowed_input(adjoint, rng):
    p, x, w, u, b = deq(rng)
    ref = reference(x, w, u, b)
    sol = p.solve(x, w)
    np.testing.assert_allclose(sol.grad(method=adjoint)[1], ref[1], rtol=1e-8, atol=1e-11)
    np.testing.assert_array_equal(sol["W"], w)
    np.testing.assert_allclose(sol.kkt_residuals(), 0.0, atol=1e-10)
    again = pickle.loads(pickle.dumps(p.solve(x, w)))
    np.testing.assert_allclose(again.grad()[1], ref[1], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(again["W"], w)


def test_a_tangent_reads_the_borrowed_input(rng):
    p, x, w, *_ = deq(rng)
    dw = rng.standard_normal((N, N))
    sol = p.solve(x, w)
    tangent = sol.tangent((np.zeros(D), dw))["z"]
    h = 1e-6
    fd = (p.solve(x, w + h * dw)["z"] - p.solve(x, w - h * dw)["z"]) / (2 * h)
    np.testing.assert_allclose(tangent, fd, rtol=1e-6, atol=1e-8)


def test_a_non_finite_borrowed_input_is_named(rng):
    p, x, w, *_ = deq(rng)
    bad = w.copy()
    bad[3, 5] = np.nan
    with pytest.raises((NonFiniteError, ConvergenceError), match="'W'"):
        p.solve(x, bad)


def test_a_non_contiguous_input_is_copied(rng):
    p, x, w, u, b = deq(rng)
    wt = np.asfortranarray(w)
    assert not wt.flags.c_contiguous
    ref = reference(x, w, u, b)
    np.testing.assert_allclose(p.solve(x, wt).grad()[1], ref[1], rtol=1e-9, atol=1e-12)


def test_an_input_read_outside_a_block_is_copied(rng):
    p = lagrad.Program("outside")
    w_in = p.input("W", (N, N))
    z = p.unknown("z", (N,))
    p.define(z, 0.5 * lagrad.tanh(w_in @ z + 1.0))
    p.output(lagrad.sum(z * z) + lagrad.sum(w_in))
    assert not borrow_module.borrowable(compile_program(p))


def mlp_program(rng):
    data, labels = rng.standard_normal((8, N)), np.eye(3)[rng.integers(3, size=8)]

    def loss(w1, b1, w2):
        a = lagrad.tanh(data @ w1 + b1) @ w2
        return -lagrad.mean(lagrad.sum(labels * (a - lagrad.logsumexp(a, axis=1,
                                                                        keepdims=True)), axis=1))
    params = (rng.standard_normal((N, N)) / N, rng.standard_normal(N),
              rng.standard_normal((N, 3)))
    return lagrad.trace(loss, *params), params


def test_an_acyclic_program_borrows_its_large_inputs_in_the_flat_plan(rng):
    """W1 (N x N entries) is read from the caller's array by the flat plan's
    forward pass and sweep: same values, multipliers and gradients as with
    every input copied (a Fortran-ordered W1 is copied)."""
    program, params = mlp_program(rng)
    schedule = compile_program(program)
    pool = pool_of(schedule)
    copied = (np.asfortranarray(params[0]),) + params[1:]
    reference = program.solve(*copied)
    ref_grad, ref_z = reference.grad(), reference.z.copy()
    del reference
    for _ in range(2):
        pool.poison(np.nan)
        sol = program.solve(*params)
        grads = sol.grad()
        for got, want in zip(grads, ref_grad):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(sol.z, ref_z)
        del sol
    bad = params[0].copy()
    bad[1, 2] = np.inf
    with pytest.raises(NonFiniteError, match="input 'w1'|'w1'"):
        program.solve(bad, *params[1:])


def test_the_flat_plan_leaves_a_borrowed_slice_of_z_unwritten(rng):
    program, params = mlp_program(rng)
    schedule = compile_program(program)
    plan = flat_plan(schedule)
    pool = pool_of(schedule)
    pool.free.clear()
    pool.poison(np.nan)  # one block of NaN: what the solve does not write stays NaN
    z, borrowed = plan.run(params)
    span = schedule.index.slice(schedule.inputs[0].index)
    assert borrowed is not None and list(borrowed.arrays) == [(span.start, span.stop)]
    assert np.isnan(z[span]).all()
    borrowed.fill(z)
    np.testing.assert_array_equal(z[span], params[0].ravel())


def test_a_gradient_handed_over_is_the_callers_own(rng):
    """A DEQ's inputs are nearly all of lambda: the first grad() hands the
    vector over (its slices are the gradient). Changing the arrays it returned
    changes nothing this Solution computes later."""
    p, x, w, u, b = deq(rng)
    ref = reference(x, w, u, b)
    sol = p.solve(x, w)
    gx, gw = sol.grad()
    np.testing.assert_allclose(gw, ref[1], rtol=1e-9, atol=1e-12)
    assert sol.adjoint_info.blocks
    gx[:] = np.nan
    gw *= 0.0
    again = sol.grad()
    np.testing.assert_allclose(again[0], ref[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sol.multipliers()["W"], ref[1], rtol=1e-9, atol=1e-12)
    assert not np.shares_memory(again[1], gw)


def _deq_from(w, u, b, init):
    p = lagrad.Program("deq")
    x_in, w_in = p.input("x", (D,)), p.input("W", (N, N))
    z = p.unknown("z", (N,), init=init)
    p.define(z, lagrad.tanh(w_in @ z + u @ x_in + b))
    p.output(lagrad.sum(z * z))
    return p


def test_the_block_products_show_a_borrowed_matrix_finite(rng):
    """A converged fixed-point iteration whose last product W @ z is finite,
    with every z_j finite and nonzero, shows W finite: the solve's final check
    skips it (no second pass over W)."""
    p, x, w, *_ = deq(rng)
    schedule = compile_program(p)
    z, results, borrowed = evaluate(schedule, [x, w], ForwardOptions(), {})
    span = schedule.index["W"]
    assert borrowed is not None and borrowed.finite == {(span.start, span.stop)}


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_a_non_finite_entry_shows_no_certificate(bad, rng, monkeypatch):
    """W_ij = +-inf in a row whose tanh saturates: from a start with every
    entry nonzero, every iterate is finite (tanh(+-inf) = +-1) and the
    iteration converges, but its last product is not: W is not taken as
    shown finite, and the solve names it. (A NaN poisons the iterate.)"""
    from lagrad.solve import forward
    seen = []

    def spy(z, borrowed, finite):
        seen.append(set() if borrowed is None else set(borrowed.finite))
        return borrow_module.finite_outside(z, borrowed, finite)
    monkeypatch.setattr(forward, "finite_outside", spy)
    _, x, w, u, b = deq(rng)
    w = w.copy()
    w[3, 7] = bad
    p = _deq_from(w, u, b, init=np.full(N, 0.5))
    with pytest.raises((NonFiniteError, ConvergenceError), match="'W'"):
        p.solve(x, w)
    assert all(not s for s in seen)


def test_a_zero_factor_shows_nothing(rng):
    """With an entry of z exactly 0 the column of W it multiplies is not
    seen by the product: no certificate, the final check reads W."""
    _, x, w, u, b = deq(rng)
    w = w.copy()
    w[:, 0] = 0.0
    b = b.copy()
    b[0] = 0.0
    w[0, :] = 0.0  # z_0 = tanh(0) = 0 exactly at the fixed point
    p = _deq_from(w, u * (np.arange(N) != 0)[:, None], b, init=None)
    schedule = compile_program(p)
    z, _, borrowed = evaluate(schedule, [x, w], ForwardOptions(), {})
    assert borrowed is not None and not borrowed.finite
    assert z[schedule.index["z"]][0] == 0.0


def _replaced(monkeypatch):
    """Record, per solve, how many of the block's calls the zero start replaced."""
    from lagrad.solve import nonlinear
    seen: list[int] = []
    original = nonlinear.BlockMap.zero_start_calls

    def spy(self):
        calls = original(self)
        seen.append(sum(a is not b for a, b in zip(calls, self.calls)))
        return calls
    monkeypatch.setattr(nonlinear.BlockMap, "zero_start_calls", spy)
    return seen


def test_the_zero_start_skips_the_product_with_an_outside_operand(rng, monkeypatch):
    """From the default start z = 0, W @ z is zero: the first evaluation
    writes zeros instead of reading W; the gradient is the reference's."""
    seen = _replaced(monkeypatch)
    p, x, w, u, b = deq(rng)
    gx, gw = p.solve(x, w).grad()
    assert seen == [1]
    ref = reference(x, w, u, b)
    np.testing.assert_allclose(gx, ref[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gw, ref[1], rtol=1e-9, atol=1e-12)


def test_the_zero_start_keeps_a_product_with_an_operand_of_the_block(rng, monkeypatch):
    """M = W (1 + sum(z) / 100) is computed inside the block (from z): its
    product with z = 0 is made, so a non-finite M would show at once."""
    seen = _replaced(monkeypatch)
    _, x, w, u, b = deq(rng)
    p = lagrad.Program("deq")
    x_in, w_in = p.input("x", (D,)), p.input("W", (N, N))
    z = p.unknown("z", (N,))
    p.define(z, lagrad.tanh((w_in * (1.0 + lagrad.sum(z) / 100.0)) @ z + u @ x_in + b))
    p.output(lagrad.sum(z * z))
    p.solve(x, w)
    assert seen == [0]


@pytest.mark.parametrize("order", ["C", "F"])
def test_a_warm_gradient_allocates_nothing_the_size_of_w(order):
    """The rule for a DEQ layer: the iterations neither copy W into a new
    array nor zero its multipliers apart from dL/dW, whose slice is written
    once, and every z-sized vector (z, the scratch of the block solves, the
    block operator's workspace, lambda, whose W slice is the dL/dW handed
    over) is a recycled one. So once the pool is warm and the last gradient
    dropped, a solve + gradient allocates nothing near W's size at its peak
    (a W-sized temporary anywhere would show as 1.0). A Fortran-ordered W is
    not borrowed: it is copied into z's slice, which is recycled too."""
    import tracemalloc

    from lagrad.bench.deq import make_deq

    prob = make_deq(400)  # W (1.28 MB) dwarfs everything else a solve allocates
    p, (x, w) = prob.program, prob.inputs
    w = np.asarray(w, order=order)
    for _ in range(3):
        p.solve(x, w).grad()
    tracemalloc.start()
    try:
        peaks = []
        for _ in range(3):
            tracemalloc.reset_peak()
            start = tracemalloc.get_traced_memory()[0]
            grads = p.solve(x, w).grad()
            peaks.append(tracemalloc.get_traced_memory()[1] - start)
            del grads
    finally:
        tracemalloc.stop()
    assert min(peaks) < 0.25 * w.nbytes
